//! The pipeline at a glance: per stage what `sluice status` reports (members, lag, oldest
//! unprocessed record, retry and deferred backlogs, dead letters, spend today by tenant), the
//! throughput between two samples, the review queue's depth, and — from the stage processes'
//! metrics endpoints, when given — records in flight and breaker states; each moving figure
//! with a plot of its last hour, and rows with trouble highlighted with the reason
//! ([`super::pipeline_rows`]). A request renders the latest background sample
//! ([`super::pipeline_sampler`]) and says how old it is: it never waits for Kafka. The page
//! refreshes itself every few seconds (`/pipeline/table`, fetched by the page's script;
//! without script, reload).

use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::app::{every_tenant, App, Shared};
use super::html::{esc, Nav};
use super::pipeline_history::History;
use super::pipeline_rows::{self, Context};
use super::pipeline_sampler::{Sample, SampleError, EVERY};
use super::scrape::{breaker_name, Scraped};
use crate::call::now_ms;
use crate::ops::status::Report;

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
        r#"<p class="muted">The figures come from samples the console takes in the background every {} seconds; this page refreshes itself.</p><div id="pipeline-live" data-src="/pipeline/table">{}</div>"#,
        EVERY.as_secs(),
        live(&app)
    );
    app.render("Pipeline", Nav::Pipeline, &session, &body).into_response()
}

pub async fn table(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = app.viewer(&headers).and_then(|s| every_tenant(s, EVERY_TENANT)) {
        return r.into_response();
    }
    Html(live(&app)).into_response()
}

/// What the page shows now: the latest sample, or that the first is being taken.
fn live(app: &App) -> String {
    let Some(sample) = app.pipeline.latest() else {
        return r#"<p class="empty" id="sampling">Sampling… the first look at the pipeline is on its way; this page fills in by itself in a few seconds.</p>"#.into();
    };
    app.pipeline.with_history(|history| render(app, &sample, history, now_ms()))
}

fn render(app: &App, sample: &Sample, history: &History, now: i64) -> String {
    let seconds = (now - sample.taken_ms).max(0) / 1000;
    let mut out = format!(
        r#"<p class="muted" id="sampled" data-taken-ms="{}">Sampled {seconds} s ago, at {} (took {} ms).</p>"#,
        sample.taken_ms,
        esc(&crate::time::rfc3339(sample.taken_ms)),
        sample.took.as_millis(),
    );
    let report = match &sample.report {
        Ok(r) => r,
        Err(SampleError::Embedded { bootstrap }) => {
            let _ = write!(
                out,
                r#"<div class="card" id="no-admin-api"><p><b>This view needs a Kafka broker with the admin API</b>, to describe the stages' consumer groups. The console is connected to the embedded broker at {}, started by <code>sluice dev</code>, which does not have one.</p><p>To see the pipeline here, run the dev stack on Apache Kafka instead: <code>scripts/with-kafka sluice dev --topology</code> followed by your topology file. The review queue and the dead letters work on the embedded broker as they are.</p></div>"#,
                esc(bootstrap)
            );
            return out;
        }
        Err(SampleError::Failed(e)) => {
            let _ = write!(
                out,
                r#"<p class="flash error" id="sample-failed">The last sample could not read the cluster: {}. The next one tries again in {} seconds.</p>"#,
                esc(e),
                EVERY.as_secs()
            );
            match &sample.previous {
                Some(r) => {
                    out.push_str(
                        r#"<p class="muted">The figures below are from the sample before.</p>"#,
                    );
                    r
                }
                None => return out,
            }
        }
    };
    let queue_depth = |stage: &str| {
        app.queues
            .iter()
            .find(|q| q.topics.stage == stage)
            .map(|q| q.state().depth().iter().map(|d| d.items).sum::<usize>())
    };
    let cx = Context {
        topology: &app.topology,
        history,
        scraped: &sample.scraped,
        scraping: !app.pipeline.metrics.is_empty(),
        queue_depth: &queue_depth,
        now_ms: now,
    };
    out.push_str(&pipeline_rows::table(report, &cx));
    out.push_str(&notes(report));
    out.push_str(&breakers(&sample.scraped, cx.scraping));
    out
}

/// What the report says beside its rows: skipped metering records, spend that could not be
/// brought up to date.
fn notes(report: &Report) -> String {
    let mut out = String::new();
    let skipped = &report.metering_skipped;
    if skipped.count > 0 {
        let _ = write!(
            out,
            r#"<p class="flash error" id="metering-skipped">{} metering record(s) today are not cost events and were skipped (spend may be under-counted); first: {}</p>"#,
            skipped.count,
            esc(skipped.first.as_deref().unwrap_or("")),
        );
    }
    if let Some(e) = &report.spend_error {
        let _ = write!(out, r#"<p class="flash error" id="spend-error">{}</p>"#, esc(e));
    }
    out
}

/// The breakers' states, or how to see them.
fn breakers(scraped: &Scraped, scraping: bool) -> String {
    if !scraping {
        return r#"<p class="muted">Records in flight and circuit breakers live in the stage processes: start the console with <code>--metrics URL</code> for each one's <code>/metrics</code> (<code>sluice run --metrics-addr</code>).</p>"#.into();
    }
    let mut out = String::new();
    if scraped.breakers.is_empty() && scraped.errors.is_empty() {
        out.push_str(r#"<p class="empty" id="no-breakers">No breaker reported yet: the stage processes have not called a provider.</p>"#);
    } else {
        out.push_str(
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
    }
    for e in &scraped.errors {
        let _ = write!(out, r#"<p class="flash error">metrics endpoint {}</p>"#, esc(e));
    }
    out
}
