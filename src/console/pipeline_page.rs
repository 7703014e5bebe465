//! The pipeline at a glance: per stage what `sluice status` reports (members, lag, oldest
//! unprocessed record, retry and deferred backlogs, dead letters, spend today by tenant), the
//! throughput between two samples, the review queue's depth, and — from the stage processes'
//! metrics endpoints, when given — records in flight and breaker states. The table refreshes
//! itself every few seconds (`/pipeline/table`, fetched by the page's script; without script,
//! reload). The samples are taken by [`super::pipeline_sampler`].

use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::app::{every_tenant, App, Shared};
use super::html::{age, esc, Nav};
use super::pipeline_sampler::Sample;
use super::scrape::{breaker_name, Scraped};
use crate::metering::report::usd;

/// The pipeline shows every tenant's spend and queue depth: only reviewers of every tenant
/// see it.
const EVERY_TENANT: &str =
    "the pipeline shows every tenant's spend and queue depth: only reviewers of every tenant see it";

pub async fn page(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let session = match app.viewer(&headers).and_then(|s| every_tenant(s, EVERY_TENANT)) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let body = format!(
        r#"<p class="muted">Refreshes every 5 seconds.</p><div id="pipeline-live" data-src="/pipeline/table">{}</div>"#,
        table_html(&app).await
    );
    app.render("Pipeline", Nav::Pipeline, &session, &body).into_response()
}

pub async fn table(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = app.viewer(&headers).and_then(|s| every_tenant(s, EVERY_TENANT)) {
        return r.into_response();
    }
    Html(table_html(&app).await).into_response()
}

async fn table_html(app: &App) -> String {
    let Sample { report, previous, scraped, .. } = app.pipeline.sample(&app.topology).await;
    let report = match report {
        Ok(r) => r,
        Err(e) => return format!(r#"<p class="flash error">{}</p>"#, esc(&e)),
    };
    let scraping = !app.pipeline.metrics.is_empty();
    let mut out = String::from(
        r#"<table id="stages"><thead><tr><th>Stage</th><th>Members</th><th>Lag</th><th>Throughput</th><th>In flight</th><th>Oldest waiting</th><th>Retry / deferred</th><th>Dead letters outstanding 1h / 24h</th><th>Spend today</th><th>Review queue</th></tr></thead><tbody>"#,
    );
    for s in &report.stages {
        let rate = previous
            .as_ref()
            .and_then(|p| p.stages.iter().find(|x| x.stage == s.stage).map(|x| (p.taken_ms, x)))
            .filter(|(taken, _)| report.taken_ms > *taken)
            .map_or("—".to_owned(), |(taken, x)| {
                let per_s =
                    (s.position - x.position) as f64 * 1000.0 / (report.taken_ms - taken) as f64;
                format!("{per_s:.1}/s")
            });
        let members = if s.members_known { s.members.len().to_string() } else { "?".into() };
        let backlog: i64 = s.retry_backlog.iter().map(|b| b.records).sum::<i64>()
            + s.deferred_backlog.as_ref().map_or(0, |b| b.records);
        let queue =
            app.queues.iter().find(|q| q.topics.stage == s.stage).map_or("—".to_owned(), |q| {
                q.state().depth().iter().map(|d| d.items).sum::<usize>().to_string()
            });
        let unhealthy = s.members_known && s.members.is_empty();
        let in_flight = match scraped.in_flight.get(&s.stage) {
            Some(n) => n.to_string(),
            None if scraping && scraped.errors.is_empty() => "0".into(),
            None if scraping => "?".into(),
            None => "—".into(),
        };
        let mut spend = esc(&s.spend_today_usd);
        for (tenant, micro) in &s.spend_today_by_tenant {
            let _ =
                write!(spend, r#"<br><span class="muted">{}: {}</span>"#, esc(tenant), usd(*micro));
        }
        let _ = write!(
            out,
            r#"<tr class="stage{}"><td><b>{}</b><br><span class="muted">{} · {}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="/dead-letters?stage={}">{} / {}</a></td><td>{}</td><td>{}</td></tr>"#,
            if unhealthy { " unhealthy" } else { "" },
            esc(&s.stage),
            esc(&s.group),
            esc(&s.state),
            members,
            s.lag,
            rate,
            in_flight,
            s.oldest_unprocessed_age_s.map_or("—".into(), age),
            backlog,
            super::html::url(&s.stage),
            s.dead_letters_last_hour,
            s.dead_letters_last_day,
            spend,
            queue,
        );
    }
    out.push_str("</tbody></table>");
    let skipped = &report.metering_skipped;
    if skipped.count > 0 {
        let _ = write!(
            out,
            r#"<p class="flash error" id="metering-skipped">{} metering record(s) today are not cost events and were skipped (spend may be under-counted); first: {}</p>"#,
            skipped.count,
            esc(skipped.first.as_deref().unwrap_or("")),
        );
    }
    out.push_str(&breakers(&scraped, scraping));
    let problems = report.problems();
    if !problems.is_empty() {
        out.push_str(r#"<ul class="flash error">"#);
        for p in problems {
            let _ = write!(out, "<li>{}</li>", esc(&p));
        }
        out.push_str("</ul>");
    }
    out
}

/// The breakers' states, or how to see them.
fn breakers(scraped: &Scraped, scraping: bool) -> String {
    if !scraping {
        return r#"<p class="muted">Records in flight and circuit breakers live in the stage processes: start the console with <code>--metrics URL</code> for each one's <code>/metrics</code> (<code>sluice run --metrics-addr</code>).</p>"#.into();
    }
    let mut out = String::from(
        r#"<table id="breakers"><thead><tr><th>Provider</th><th>Breaker</th></tr></thead><tbody>"#,
    );
    for (provider, state) in &scraped.breakers {
        let class = if *state > 0 { r#" class="unhealthy""# } else { "" };
        let _ = write!(
            out,
            "<tr{class}><td>{}</td><td>{}</td></tr>",
            esc(provider),
            breaker_name(*state)
        );
    }
    out.push_str("</tbody></table>");
    for e in &scraped.errors {
        let _ = write!(out, r#"<p class="flash error">metrics endpoint {}</p>"#, esc(e));
    }
    out
}
