//! The review queue's pages: the queue (oldest first, filters, depth per tenant), an item with
//! its decision form, and the claim, release and decide actions.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::actions::{Actor, Judgement};
use super::auth::Session;
use super::html::{age, csrf_field, esc, options, time, url, Nav};
use super::ledger::{ItemKey, ItemState};
use super::queue::{Item, QueueFilter};
use super::review::ReviewQueue;
use super::server::{App, FormData, Shared};
use crate::avro::{Envelope, HumanDecision};
use crate::call::now_ms;

type Query_ = Query<HashMap<String, String>>;

fn queue<'a>(app: &'a App, q: &HashMap<String, String>) -> Option<&'a Arc<ReviewQueue>> {
    let wanted = q.get("stage").filter(|s| !s.is_empty());
    app.queues.iter().find(|r| wanted.is_none_or(|w| *w == r.topics.stage))
}

fn actor(s: &Session) -> Actor {
    Actor { reviewer: s.reviewer.clone(), holder: s.holder.clone() }
}

pub async fn list(State(app): State<Shared>, headers: HeaderMap, Query(q): Query_) -> Response {
    let session = match app.viewer(&headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else {
        let body = "<p>This topology has no review stage, so there is no review queue.</p>";
        return app.render("Review queue", Nav::Review, &session, body).into_response();
    };
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let filter = QueueFilter { tenant: get("tenant"), label: get("label") };
    let now = now_ms();
    let mut body = String::new();
    if app.queues.len() > 1 {
        body.push_str(r#"<p class="tabs">"#);
        for r in &app.queues {
            let s = &r.topics.stage;
            let _ = write!(body, r#"<a href="/review?stage={}">{}</a> "#, url(s), esc(s));
        }
        body.push_str("</p>");
    }
    let state = queue.state();
    if let Some(e) = &state.error {
        let _ = write!(body, r#"<p class="flash error">Reading the queue: {}</p>"#, esc(e));
    }
    let _ = write!(
        body,
        r#"<p class="muted">Stage <b>{}</b>: records on <code>{}</code>; decisions go to <code>{}</code> or <code>{}</code>.</p>"#,
        esc(&queue.topics.stage),
        esc(&queue.topics.needs_human),
        esc(&queue.topics.approved),
        esc(&queue.topics.rejected)
    );
    body.push_str(r#"<table id="depth"><thead><tr><th>Tenant</th><th>Waiting</th><th>Oldest</th></tr></thead><tbody>"#);
    for d in state.depth() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.tenant),
            d.items,
            age((now - d.oldest_ms) / 1000)
        );
    }
    body.push_str("</tbody></table>");
    let (tenants, labels) = state.facets();
    let _ = write!(
        body,
        r#"<form id="filters" method="get" action="/review" class="row"><input type="hidden" name="stage" value="{}">
<label>Tenant <select name="tenant">{}</select></label><label>Label <select name="label">{}</select></label>
<button type="submit">Filter</button></form>"#,
        esc(&queue.topics.stage),
        options("all tenants", tenants, filter.tenant.as_deref()),
        options("all labels", labels, filter.label.as_deref()),
    );
    let pending = state.pending(&filter);
    if pending.is_empty() {
        body.push_str(r#"<p class="empty">Nothing waits for review.</p>"#);
    }
    for (item, item_state) in pending {
        body.push_str(&item_card(item, &item_state, &session, &queue.topics.stage, now, true));
    }
    drop(state);
    app.render("Review queue", Nav::Review, &session, &body).into_response()
}

/// An item as the queue lists it; `with_claim`: with its claim button (not on its own page).
fn item_card(
    item: &Item,
    state: &ItemState,
    session: &Session,
    stage: &str,
    now: i64,
    with_claim: bool,
) -> String {
    let k = item.key;
    let held = state.holder_at(now);
    let (claim_text, button) = match held {
        Some((_, h)) if h == session.holder => ("you hold this item".to_owned(), "Continue"),
        Some((r, _)) => (format!("being reviewed by {r}"), "Claim"),
        None => ("waiting".to_owned(), "Claim &amp; review"),
    };
    let disabled = if held.is_some_and(|(_, h)| h != session.holder) { " disabled" } else { "" };
    let (doc_id, summary) = match &item.envelope {
        Ok(e) => (e.document.id.clone(), summary(e)),
        Err(err) => (
            String::new(),
            format!(r#"<p class="flash error">Cannot be decoded: {}</p>"#, esc(err)),
        ),
    };
    format!(
        r#"<article class="item card" data-doc="{doc}" data-item="{p}-{o}">
<header><b>{doc}</b> <span class="muted">{tenant}{label} · {p}/{o} · waiting {waited}</span> <span class="state">{claim}</span></header>
{summary}{form}
</article>"#,
        doc = esc(&doc_id),
        p = k.partition,
        o = k.offset,
        tenant = esc(item.tenant()),
        label = if item.label().is_empty() {
            String::new()
        } else {
            format!(" · {}", esc(item.label()))
        },
        waited = age((now - item.timestamp_ms) / 1000),
        claim = esc(&claim_text),
        form = if with_claim {
            format!(
                r#"<form method="post" action="/review/item/{}/{}/claim?stage={}">{}<button class="claim" type="submit"{disabled}>{button}</button></form>"#,
                k.partition,
                k.offset,
                url(stage),
                csrf_field(session)
            )
        } else {
            String::new()
        },
    )
}

/// The question, the answer and why review held it.
fn summary(e: &Envelope) -> String {
    let answer = e.answer.as_ref();
    let reasons = e.review.as_ref().map(|r| r.reasons.clone()).unwrap_or_default();
    let mut out = format!(
        r#"<p class="doc">{}</p><p class="answer">{}</p><ul class="reasons">"#,
        esc(&truncate(&e.document.content, 600)),
        esc(&truncate(answer.map_or("(no answer)", |a| a.text.as_str()), 800))
    );
    for r in reasons {
        let _ = write!(out, "<li>{}</li>", esc(&r));
    }
    let _ = write!(
        out,
        r#"</ul><p class="muted">model {} · prompt {} · classified by {}</p>"#,
        esc(answer.map_or("—", |a| a.model.as_str())),
        esc(answer.map_or("—", |a| a.prompt_version.as_str())),
        esc(&e
            .classification
            .as_ref()
            .map(|c| format!("{} ({})", c.model, c.prompt_version.as_deref().unwrap_or("rules")))
            .unwrap_or_else(|| "—".into()))
    );
    out
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

pub async fn item(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
) -> Response {
    let session = match app.viewer(&headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else { return Redirect::to("/review").into_response() };
    let key = ItemKey { partition, offset };
    let state = queue.state();
    let (Some(item), item_state) = (state.items.get(&key).cloned(), state.ledger.state(key)) else {
        drop(state);
        app.sessions.flash(
            &session.id,
            true,
            format!("Item {partition}/{offset} is no longer in the queue"),
        );
        return Redirect::to("/review").into_response();
    };
    drop(state);
    let stage = url(&queue.topics.stage);
    let held = item_state.holder_at(now_ms()).is_some_and(|(_, h)| h == session.holder);
    let mut body = item_card(&item, &item_state, &session, &queue.topics.stage, now_ms(), !held);
    if let Ok(e) = &item.envelope {
        body.push_str(&details(e));
    }
    if let (true, Ok(e), ItemState::Claimed { expires_ms, .. }) =
        (held, &item.envelope, &item_state)
    {
        let answer = e.answer.as_ref().map_or("", |a| a.text.as_str());
        let _ = write!(
            body,
            r#"<form id="decide" method="post" action="/review/item/{partition}/{offset}/decide?stage={stage}" class="card">{csrf}
<p class="muted">Your claim lasts until {until}.</p>
<label>Answer (edit before approving if needed)<textarea name="answer" rows="8">{answer}</textarea></label>
<label>Note (required to reject)<textarea name="note" rows="3"></textarea></label>
<div class="row"><button name="decision" value="approve" type="submit">Approve</button>
<button name="decision" value="reject" type="submit" class="danger">Reject</button></div></form>
<form method="post" action="/review/item/{partition}/{offset}/release?stage={stage}">{csrf}<button type="submit" class="link">Give back to the queue</button></form>"#,
            csrf = csrf_field(&session),
            until = time(Some(*expires_ms)),
            answer = esc(answer),
        );
    }
    let title = format!("Review {partition}/{offset}");
    app.render(&title, Nav::Review, &session, &body).into_response()
}

/// Everything the reviewer may need: metadata and the retrieved passages.
fn details(e: &Envelope) -> String {
    let mut out = String::from(r#"<section class="card"><h2>Document</h2><p class="doc">"#);
    out.push_str(&esc(&e.document.content));
    out.push_str("</p><dl>");
    for (k, v) in &e.document.metadata {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    let _ = write!(out, "</dl><h2>Retrieved passages ({})</h2><ol>", e.passages.len());
    for p in &e.passages {
        let _ = write!(
            out,
            r#"<li><span class="muted">{} · {} · score {:.2}</span><br>{}</li>"#,
            esc(&p.id),
            esc(&p.source),
            p.score,
            esc(&p.text)
        );
    }
    out.push_str("</ol></section>");
    out
}

fn key_of(partition: i32, offset: i64) -> ItemKey {
    ItemKey { partition, offset }
}

fn back(
    app: &App,
    session: &Session,
    result: Result<(), String>,
    ok: String,
    to: String,
) -> Response {
    match result {
        Ok(()) => {
            app.sessions.flash(&session.id, false, ok);
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            app.sessions.flash(&session.id, true, e);
            Redirect::to("/review").into_response()
        }
    }
}

pub async fn claim(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let session = match app.actor(&headers, &form) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else { return Redirect::to("/review").into_response() };
    let result = queue.claim(key_of(partition, offset), &actor(&session)).await;
    let to = format!("/review/item/{partition}/{offset}?stage={}", url(&queue.topics.stage));
    back(&app, &session, result.map_err(|e| e.to_string()), "Claimed".into(), to)
}

pub async fn release(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let session = match app.actor(&headers, &form) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else { return Redirect::to("/review").into_response() };
    let result = queue.release(key_of(partition, offset), &actor(&session)).await;
    let ok = format!("Item {partition}/{offset} is back in the queue");
    back(&app, &session, result.map_err(|e| e.to_string()), ok, "/review".into())
}

pub async fn decide(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let session = match app.actor(&headers, &form) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else { return Redirect::to("/review").into_response() };
    let note = form.get("note").map_or("", |n| n.trim()).to_owned();
    let decision = match form.get("decision").map(String::as_str) {
        Some("approve") => HumanDecision::Approved,
        Some("reject") if !note.is_empty() => HumanDecision::Rejected,
        Some("reject") => {
            app.sessions.flash(&session.id, true, "A rejection needs a note saying why");
            let to =
                format!("/review/item/{partition}/{offset}?stage={}", url(&queue.topics.stage));
            return Redirect::to(&to).into_response();
        }
        _ => {
            return (axum::http::StatusCode::BAD_REQUEST, "decision must be approve or reject\n")
                .into_response()
        }
    };
    // Browsers send textarea line breaks as CRLF.
    let answer = form.get("answer").map(|a| a.replace("\r\n", "\n"));
    let judgement = Judgement { decision, answer, note };
    let result = queue.decide(key_of(partition, offset), &actor(&session), judgement).await;
    let word = if decision == HumanDecision::Approved { "Approved" } else { "Rejected" };
    let ok = format!("{word} item {partition}/{offset}");
    back(&app, &session, result.map_err(|e| e.to_string()), ok, "/review".into())
}
