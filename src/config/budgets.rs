//! Phase one for `budgets:`: per-tenant spending limits over a window.

use super::defaults as d;
use super::policy::{BudgetRule, BudgetSpec, BudgetWindow};
use super::prices::usd;
use super::section::Section;
use super::values::parse_duration;

pub fn budgets(s: &mut Section<'_>, pipeline: &str) -> BudgetSpec {
    let default_window = window(s, "window", BudgetWindow::Day);
    let ledger_topic = s.or("ledger_topic", d::budget_ledger_topic(pipeline));
    let lease_micro_usd = s.peek("lease").is_some().then(|| usd(s, "lease", true));
    let route_to = s.opt("route_to");
    let tenants = s
        .entries("tenants", |_, t| {
            let limit_micro_usd = usd(t, "limit", true);
            if limit_micro_usd == 0 {
                t.error("limit", "a budget of zero would defer every record: remove the tenant's model stages instead");
            }
            let window = window(t, "window", default_window);
            let per_stage = t.or("per_stage", false);
            Some(BudgetRule { limit_micro_usd, window, per_stage })
        })
        .into_iter()
        .collect();
    BudgetSpec { ledger_topic, tenants, lease_micro_usd, route_to }
}

/// `day`, `month`, or a duration (`30s`, `1h`).
fn window(s: &mut Section<'_>, key: &str, default: BudgetWindow) -> BudgetWindow {
    let Some(text) = s.opt::<String>(key) else { return default };
    match text.as_str() {
        "day" => BudgetWindow::Day,
        "month" => BudgetWindow::Month,
        other => match parse_duration(other) {
            Ok(d) => BudgetWindow::Every(d),
            Err(e) => {
                s.error(key, format!("expected day, month or a duration: {e}"));
                default
            }
        },
    }
}
