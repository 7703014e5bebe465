//! The pipeline at a glance: per stage what `sluice status` reports (members, lag, oldest
//! unprocessed record, retry and deferred backlogs, dead letters, spend today), plus the
//! throughput between two samples and the review queue's depth. The table refreshes itself
//! every few seconds (`/pipeline/table`, fetched by the page's script; without script, reload).

use std::fmt::Write;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::html::{age, esc, Nav};
use super::server::{App, Shared};
use crate::ops::status::{self, Report};

/// Samples are shared by every viewer and taken at most this often.
const FRESH_FOR: Duration = Duration::from_secs(3);

/// The last two status samples (the difference is the throughput).
#[derive(Default)]
pub struct Sampler {
    last: tokio::sync::Mutex<Option<Sample>>,
}

struct Sample {
    at: Instant,
    report: Result<Report, String>,
    previous: Option<Report>,
}

impl Sampler {
    /// The current report and the one before it.
    async fn sample(&self, app: &App) -> (Result<Report, String>, Option<Report>) {
        let mut last = self.last.lock().await;
        if let Some(s) = last.as_ref().filter(|s| s.at.elapsed() < FRESH_FOR) {
            return (s.report.clone(), s.previous.clone());
        }
        let report = status::report(&app.topology).await.map_err(|e| e.to_string());
        let previous = last.take().and_then(|s| s.report.ok());
        *last =
            Some(Sample { at: Instant::now(), report: report.clone(), previous: previous.clone() });
        (report, previous)
    }
}

pub async fn page(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let session = match app.viewer(&headers) {
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
    if let Err(r) = app.viewer(&headers) {
        return r.into_response();
    }
    Html(table_html(&app).await).into_response()
}

async fn table_html(app: &App) -> String {
    let (report, previous) = app.pipeline.sample(app).await;
    let report = match report {
        Ok(r) => r,
        Err(e) => return format!(r#"<p class="flash error">{}</p>"#, esc(&e)),
    };
    let mut out = String::from(
        r#"<table id="stages"><thead><tr><th>Stage</th><th>Members</th><th>Lag</th><th>Throughput</th><th>Oldest waiting</th><th>Retry / deferred</th><th>Dead letters 1h / 24h</th><th>Spend today</th><th>Review queue</th></tr></thead><tbody>"#,
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
        let _ = write!(
            out,
            r#"<tr class="stage{}"><td><b>{}</b><br><span class="muted">{} · {}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="/dead-letters?stage={}">{} / {}</a></td><td>{}</td><td>{}</td></tr>"#,
            if unhealthy { " unhealthy" } else { "" },
            esc(&s.stage),
            esc(&s.group),
            esc(&s.state),
            members,
            s.lag,
            rate,
            s.oldest_unprocessed_age_s.map_or("—".into(), age),
            backlog,
            super::html::url(&s.stage),
            s.dead_letters_last_hour,
            s.dead_letters_last_day,
            esc(&s.spend_today_usd),
            queue,
        );
    }
    out.push_str("</tbody></table>");
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
