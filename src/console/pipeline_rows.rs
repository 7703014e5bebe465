//! The pipeline page's stages table: one row per stage with its figures, a plot of the last
//! hour under the ones that move (throughput, lag, dead letters, spend), and — on a row with
//! trouble — the reasons, the row highlighted. On a phone each row becomes a card (the
//! stylesheet's `#stages` rules read each cell's `data-label`).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::html::{age, esc, url};
use super::pipeline_history::{History, Point, GROWING_SAMPLES};
use super::pipeline_spark::spark;
use super::scrape::{breaker_name, Scraped};
use crate::config::{StageSpec, Topology};
use crate::metering::report::usd;
use crate::ops::status::{Report, StageStatus};

/// What the table needs besides the report.
pub struct Context<'a> {
    pub topology: &'a Topology,
    pub history: &'a History,
    pub scraped: &'a Scraped,
    /// Whether the console was given metrics endpoints to scrape.
    pub scraping: bool,
    /// Items waiting in a review stage's queue, by stage.
    pub queue_depth: &'a dyn Fn(&str) -> Option<usize>,
    pub now_ms: i64,
}

/// Spend in dollars at a precision that says something: cents from a cent up, two significant
/// digits below (a cheap model's spend is fractions of a cent), the exact amount in the title.
pub fn money(micro_usd: u64) -> String {
    let shown = match micro_usd {
        0 => "$0.00".to_owned(),
        1..10_000 => {
            let decimals = (7 - micro_usd.ilog10() as usize).min(6);
            format!("${:.*}", decimals, micro_usd as f64 / 1e6)
        }
        _ => {
            let cents = (micro_usd + 5_000) / 10_000;
            format!("${}.{:02}", cents / 100, cents % 100)
        }
    };
    format!(r#"<span class="money" title="{} USD">{shown}</span>"#, usd(micro_usd))
}

/// The providers a stage's models (and their fallbacks) call.
fn providers(t: &Topology, spec: &StageSpec) -> BTreeSet<String> {
    let mut names: Vec<&str> = spec
        .model
        .iter()
        .flat_map(|m| {
            std::iter::once(m.default.as_str()).chain(m.routes.iter().map(|r| r.model.as_str()))
        })
        .collect();
    let (mut seen, mut out) = (BTreeSet::new(), BTreeSet::new());
    while let Some(name) = names.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(m) = t.models.get(name) {
            out.insert(m.provider.clone());
            names.extend(m.fallbacks.iter().map(String::as_str));
        }
    }
    out
}

/// Why a row is highlighted; empty when nothing is wrong.
pub fn troubles(s: &StageStatus, cx: &Context<'_>) -> Vec<String> {
    let mut out: Vec<String> =
        s.missing_topics.iter().map(|t| format!("topic {t} does not exist")).collect();
    out.extend(s.errors.iter().map(|e| format!("could not read: {e}")));
    if s.members_known && s.members.is_empty() {
        out.push("no members: nothing is processing its input".into());
    }
    if cx.history.lag_growing(&s.stage) {
        out.push(format!("lag grew on the last {GROWING_SAMPLES} samples (now {})", s.lag));
    }
    if s.dead_letters_last_hour > 0 {
        out.push(format!("{} dead letter(s) in the last hour", s.dead_letters_last_hour));
    }
    if let Some(spec) = cx.topology.stage(&s.stage) {
        for p in providers(cx.topology, spec) {
            if let Some(state) = cx.scraped.breakers.get(&p).filter(|s| **s > 0) {
                out.push(format!("breaker of provider {p} is {}", breaker_name(*state)));
            }
        }
    }
    out
}

/// The stages table.
pub fn table(report: &Report, cx: &Context<'_>) -> String {
    let mut out = String::from(
        r#"<table id="stages"><thead><tr><th>Stage</th><th>Members</th><th>Lag</th><th>Throughput</th><th>In flight</th><th>Oldest waiting</th><th>Retry / deferred</th><th>Dead letters outstanding 1h / 24h</th><th>Spend today (USD)</th><th>Review queue</th></tr></thead><tbody>"#,
    );
    for s in &report.stages {
        out.push_str(&row(s, cx));
    }
    out.push_str("</tbody></table>");
    out
}

fn row(s: &StageStatus, cx: &Context<'_>) -> String {
    let points = cx.history.points(&s.stage);
    let plot = |label: &str, value: fn(&Point) -> Option<f64>, latest: &str| {
        let series: Vec<(i64, f64)> =
            points.iter().filter_map(|p| value(p).map(|v| (p.taken_ms, v))).collect();
        spark(label, &series, cx.now_ms, latest)
    };
    let missing = |topic: &str| s.missing_topics.iter().any(|m| m == topic);
    let troubles = troubles(s, cx);
    let reasons = if troubles.is_empty() {
        String::new()
    } else {
        let items: String = troubles.iter().map(|t| format!("<li>{}</li>", esc(t))).collect();
        format!(r#"<ul class="trouble-reasons">{items}</ul>"#)
    };
    let members = if s.members_known { s.members.len().to_string() } else { "?".into() };
    let lag = if missing(&s.input) {
        r#"<span class="missing">input missing</span>"#.to_owned()
    } else {
        format!("{}{}", s.lag, plot("lag", |p| Some(p.lag as f64), &s.lag.to_string()))
    };
    let rate =
        points.last().and_then(|p| p.throughput).map_or("—".into(), |r| format!("{r:.1}/s"));
    let throughput = format!("{rate}{}", plot("throughput", |p| p.throughput, &rate));
    let in_flight = match cx.scraped.in_flight.get(&s.stage) {
        Some(n) => n.to_string(),
        None if cx.scraping && cx.scraped.errors.is_empty() => "0".into(),
        None if cx.scraping => "?".into(),
        None => "—".into(),
    };
    let backlog: i64 = s.retry_backlog.iter().map(|b| b.records).sum::<i64>()
        + s.deferred_backlog.as_ref().map_or(0, |b| b.records);
    let dead = if missing(&s.dead_letter_topic) {
        r#"<span class="missing">topic missing</span>"#.to_owned()
    } else {
        let counts = format!("{} / {}", s.dead_letters_last_hour, s.dead_letters_last_day);
        format!(
            r#"<a href="/dead-letters?stage={}">{counts}</a>{}"#,
            url(&s.stage),
            plot("dead letters in the hour before", |p| Some(p.dead_letters as f64), &counts)
        )
    };
    let mut spend = format!(
        "{}{}",
        money(s.spend_today_micro_usd),
        plot(
            "spend today",
            |p| Some(p.spend_micro_usd as f64 / 1e6),
            &usd(s.spend_today_micro_usd)
        )
    );
    for (tenant, micro) in &s.spend_today_by_tenant {
        let _ =
            write!(spend, r#"<br><span class="muted">{}: {}</span>"#, esc(tenant), money(*micro));
    }
    let queue = (cx.queue_depth)(&s.stage).map_or("—".into(), |n| n.to_string());
    let class = if troubles.is_empty() { "stage" } else { "stage trouble" };
    format!(
        r#"<tr class="{class}" data-stage="{stage}"><td data-label="Stage"><b>{stage}</b><br><span class="muted">{group} · {state}</span>{reasons}</td><td data-label="Members">{members}</td><td data-label="Lag">{lag}</td><td data-label="Throughput">{throughput}</td><td data-label="In flight">{in_flight}</td><td data-label="Oldest waiting">{oldest}</td><td data-label="Retry / deferred">{backlog}</td><td data-label="Dead letters outstanding 1h / 24h">{dead}</td><td data-label="Spend today">{spend}</td><td data-label="Review queue">{queue}</td></tr>"#,
        stage = esc(&s.stage),
        group = esc(&s.group),
        state = esc(&s.state),
        oldest = s.oldest_unprocessed_age_s.map_or("—".into(), age),
    )
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn spend_shows_cents_or_fractions_of_a_cent() {
        let shown = |m| {
            let html = money(m);
            html[html.find('>').expect("tag") + 1..html.rfind('<').expect("end")].to_owned()
        };
        assert_eq!(shown(0), "$0.00");
        assert_eq!(shown(1_234), "$0.0012");
        assert_eq!(shown(20), "$0.000020");
        assert_eq!(shown(5), "$0.000005");
        assert_eq!(shown(9_999), "$0.0100");
        assert_eq!(shown(12_345_678), "$12.35");
        assert!(money(1_234).contains(r#"title="0.001234 USD""#));
    }
}
