//! The review queue's page: oldest first, filters, per tenant the items waiting for a reviewer
//! and those claimed, and — when nothing waits — a sentence saying so, the filters disabled.
//! An item's own page is [`super::item_page`]; the actions are [`super::forms`].

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::ledger::ItemState;
use super::queue::{depth_of, facets_of, Item, QueueFilter};
use super::replica::ReviewQueue;
use crate::avro::Envelope;
use crate::call::now_ms;
use crate::console::app::{App, Shared};
use crate::console::auth::Session;
use crate::console::html::{age, claim_left, csrf_field, esc, options, url, Nav};

/// Items listed on one page at most (the oldest).
const LISTED: usize = 100;

pub(super) type Query_ = Query<HashMap<String, String>>;

/// The review queue a request names with `?stage=` (the first one without).
pub(super) fn queue<'a>(app: &'a App, q: &HashMap<String, String>) -> Option<&'a Arc<ReviewQueue>> {
    let wanted = q.get("stage").filter(|s| !s.is_empty());
    app.queues.iter().find(|r| wanted.is_none_or(|w| *w == r.topics.stage))
}

pub async fn list(State(app): State<Shared>, headers: HeaderMap, Query(q): Query_) -> Response {
    let session = match app.viewer(&headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else {
        let body = match q.get("stage").filter(|s| !s.is_empty()) {
            Some(s) => format!("<p>No review stage named '{}' in this topology.</p>", esc(s)),
            None => "<p>This topology has no review stage, so there is no review queue.</p>".into(),
        };
        return app.render("Review queue", Nav::Review, &session, &body).into_response();
    };
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let scope = session.tenants.clone();
    let filter = QueueFilter { tenant: get("tenant"), label: get("label"), scope: scope.clone() };
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
    for (p, at) in &state.moved_back {
        let _ = write!(
            body,
            r#"<p class="flash error" id="moved-back">The group's commit of partition {p} was moved back to {at} by someone else (a replay?): this console no longer commits it. Restart the console to review from there.</p>"#
        );
    }
    let _ = write!(
        body,
        r#"<p class="muted">Stage <b>{}</b>: records on <code>{}</code>; decisions go to <code>{}</code> or <code>{}</code>.</p>"#,
        esc(&queue.topics.stage),
        esc(&queue.topics.needs_human),
        esc(&queue.topics.approved),
        esc(&queue.topics.rejected)
    );
    let all = state.pending(&QueueFilter { scope, ..QueueFilter::default() });
    let depth = depth_of(&all, now);
    if depth.is_empty() {
        body.push_str(r#"<p id="queue-empty" class="empty card">No items waiting for review: new ones appear here as the review stage holds answers for a person.</p>"#);
    } else {
        body.push_str(r#"<table id="depth"><thead><tr><th>Tenant</th><th>Waiting</th><th>Claimed</th><th>Oldest</th></tr></thead><tbody>"#);
        for d in &depth {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.tenant),
                d.items - d.claimed,
                d.claimed,
                age((now - d.oldest_ms) / 1000)
            );
        }
        body.push_str("</tbody></table>");
    }
    let (tenants, labels) = facets_of(&all);
    // Filtering an empty queue can do nothing: the controls are shown, disabled.
    let off = if all.is_empty() { " disabled" } else { "" };
    let _ = write!(
        body,
        r#"<form id="filters" method="get" action="/review" class="row"><input type="hidden" name="stage" value="{}">
<label>Tenant <select name="tenant"{off}>{}</select></label><label>Label <select name="label"{off}>{}</select></label>
<button type="submit"{off}>Filter</button></form>"#,
        esc(&queue.topics.stage),
        options("all tenants", tenants, filter.tenant.as_deref()),
        options("all labels", labels, filter.label.as_deref()),
    );
    let pending: Vec<_> = all.iter().filter(|(i, _)| filter.selects(i)).collect();
    if pending.is_empty() && !all.is_empty() {
        let _ = write!(
            body,
            r#"<p class="empty">No items of this tenant and label wait for review. <a href="/review?stage={}">Show every item</a></p>"#,
            url(&queue.topics.stage)
        );
    }
    for (item, item_state) in pending.iter().take(LISTED) {
        body.push_str(&item_card(item, item_state, &session, &queue.topics.stage, now));
    }
    if pending.len() > LISTED {
        let _ = write!(
            body,
            r#"<p class="muted">{} more, oldest first: decide these, or filter by tenant or label.</p>"#,
            pending.len() - LISTED
        );
    }
    if !state.parked.is_empty() {
        let _ = write!(
            body,
            r#"<p id="queue-full" class="muted">This console holds {} records at most: more wait in Kafka and are read as these are decided.</p>"#,
            state.capacity
        );
    }
    if session.tenants.is_none() {
        body.push_str(&undecodable(&state.undecodable(), &session, &queue.topics.stage, now));
    }
    drop(state);
    app.render("Review queue", Nav::Review, &session, &body).into_response()
}

/// An item as the queue lists it, with its claim button.
fn item_card(item: &Item, state: &ItemState, session: &Session, stage: &str, now: i64) -> String {
    let k = item.key;
    let held = state.holder_at(now);
    let left = match state {
        ItemState::Claimed { expires_ms, .. } => claim_left(*expires_ms, now),
        _ => String::new(),
    };
    let (claim_text, button) = match (state, held) {
        (ItemState::Decided(d), _) => (format!("decided by {}", esc(&d.reviewer)), ""),
        (ItemState::Done, _) => ("decided".to_owned(), ""),
        (_, Some((_, h))) if h == session.holder => {
            (format!("you hold this item · {left}"), "Continue")
        }
        (_, Some((r, _))) => (format!("being reviewed by {} · {left}", esc(r)), "Claim"),
        (_, None) => ("waiting".to_owned(), "Claim &amp; review"),
    };
    let with_claim = state.is_pending();
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
<header><b>{doc}</b> <span class="muted">{tenant}{label} · {p}:{o} · waiting {waited}</span> <span class="state">{claim}</span></header>
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
        claim = claim_text,
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

/// Records that cannot be decoded: they hold the queue's commit until an operator discards them.
fn undecodable(items: &[&Item], session: &Session, stage: &str, now: i64) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = format!(
        r#"<section id="undecodable" class="card"><h2>Cannot display ({})</h2><p class="muted">These records do not decode, so nobody can review them; the queue's commit waits at the first. Discarding one acknowledges it: the commit moves past it and no decision is written.</p>"#,
        items.len()
    );
    for item in items.iter().take(LISTED) {
        let k = item.key;
        let why = item.envelope.as_ref().err().map_or("", String::as_str);
        let _ = write!(
            out,
            r#"<article class="undecodable" data-item="{p}-{o}"><p>{p}:{o} · waiting {waited}: {why}</p><form method="post" action="/review/item/{p}/{o}/discard?stage={stage}">{csrf}<label><input type="checkbox" name="confirm" value="yes" required> skip this record for good</label> <button type="submit" class="danger discard">Discard</button></form></article>"#,
            p = k.partition,
            o = k.offset,
            waited = age((now - item.timestamp_ms) / 1000),
            why = esc(why),
            stage = url(stage),
            csrf = csrf_field(session),
        );
    }
    out.push_str("</section>");
    out
}
