//! What only the stage processes know — records in flight and circuit-breaker states — read
//! from their Prometheus endpoints (`sluice run --metrics-addr`), which the console is given
//! with `--metrics URL` (repeatable). In-flight records are summed per stage over the
//! endpoints; a breaker shows its worst state over them (each process has its own breakers).

use std::collections::BTreeMap;
use std::time::Duration;

const IN_FLIGHT: &str = "sluice_in_flight_records";
const BREAKER: &str = "sluice_breaker_state";

/// The stage processes' view at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// Per stage.
    pub in_flight: BTreeMap<String, i64>,
    /// Per provider: 0 closed, 1 half-open, 2 open (the worst over the processes).
    pub breakers: BTreeMap<String, i64>,
    /// Endpoints that did not answer, with why.
    pub errors: Vec<String>,
}

impl Scraped {
    /// Adds one endpoint's exposition.
    pub fn add(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let value = value as i64;
            match name {
                IN_FLIGHT => {
                    if let Some(stage) = label(labels, "stage") {
                        *self.in_flight.entry(stage).or_insert(0) += value;
                    }
                }
                BREAKER => {
                    if let Some(provider) = label(labels, "provider") {
                        let worst = self.breakers.entry(provider).or_insert(0);
                        *worst = (*worst).max(value);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The value of label `key` in `a="x",b="y"}`.
fn label(labels: &str, key: &str) -> Option<String> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// The name of a breaker state.
pub fn breaker_name(state: i64) -> &'static str {
    match state {
        0 => "closed",
        1 => "half-open",
        _ => "open",
    }
}

/// An endpoint as a page may show it: without the user and password an URL may carry.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(an endpoint that is not a URL)".into(),
    }
}

/// Reads every endpoint (2 s each at most).
pub async fn scrape(urls: &[String]) -> Scraped {
    let mut out = Scraped::default();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(2)).build() {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(e.to_string());
            return out;
        }
    };
    for url in urls {
        let text = match client.get(url).send().await.and_then(|r| r.error_for_status()) {
            Ok(r) => r.text().await,
            Err(e) => Err(e),
        };
        match text {
            Ok(t) => out.add(&t),
            Err(e) => out.errors.push(format!("{}: {}", shown(url), e.without_url())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_sums_over_processes_and_a_breaker_shows_its_worst_state() {
        let mut s = Scraped::default();
        s.add(
            "# HELP sluice_in_flight_records x\nsluice_in_flight_records{stage=\"gen\"} 3\n\
             sluice_breaker_state{provider=\"m\"} 0\nsluice_records_total{stage=\"gen\"} 99\n",
        );
        s.add(
            "sluice_in_flight_records{stage=\"gen\"} 4\nsluice_breaker_state{provider=\"m\"} 2\n",
        );
        s.add("sluice_in_flight_records{stage=\"a\\\"b\"} 1\nbroken line\n");
        assert_eq!(s.in_flight.get("gen"), Some(&7));
        assert_eq!(s.in_flight.get("a\"b"), Some(&1), "escaped quotes in label values");
        assert_eq!(s.breakers.get("m").copied().map(breaker_name), Some("open"));
        assert_eq!(s.in_flight.len(), 2, "other series are ignored");
        assert_eq!(shown("http://ops:s3cret@w1:9464/metrics"), "http://w1:9464/metrics");
    }
}
