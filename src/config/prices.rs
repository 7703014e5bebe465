//! Phase one for `prices:`: exact micro-dollar prices per logical model.

use std::collections::BTreeMap;

use super::policy::{Price, PriceTable};
use super::section::Section;

/// `prices:`: `set_on` and, per logical model, USD per million tokens (`input`, `output`,
/// `cached_input`, defaulting to `input`) and USD `per_request`, kept as exact micro-dollars.
pub fn prices(s: &mut Section<'_>) -> PriceTable {
    let set_on: String = s.or("set_on", String::new());
    let models = s
        .entries("models", |_, m| {
            let input = usd(m, "input", true);
            let output = usd(m, "output", true);
            let cached_input =
                if m.peek("cached_input").is_some() { usd(m, "cached_input", true) } else { input };
            let per_request = usd(m, "per_request", false);
            Some(Price { input, output, cached_input, per_request })
        })
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    if !models.is_empty() && set_on.is_empty() {
        s.error("set_on", "say when the prices were set (e.g. 2026-11-01): prices change");
    }
    PriceTable { set_on, models }
}

/// A dollar amount as micro-dollars; more than six decimals is an error, not a rounding.
pub fn usd(s: &mut Section<'_>, key: &str, required: bool) -> u64 {
    let value: Option<f64> = if required { s.req(key) } else { s.opt(key) };
    let Some(v) = value else { return 0 };
    let micro = (v * 1e6).round();
    if !(0.0..=1e15).contains(&v) || (v * 1e6 - micro).abs() > 1e-6 {
        s.error(key, format!("{v} is not a dollar amount with at most six decimals"));
        return 0;
    }
    micro as u64
}
