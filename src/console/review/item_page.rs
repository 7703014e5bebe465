//! A review item's own page: the document with its metadata and retrieved passages, and — for
//! the reviewer holding its claim — the decision form.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::ledger::{ItemKey, ItemState};
use super::pages::{item_card, queue, Query_};
use crate::avro::Envelope;
use crate::call::now_ms;
use crate::console::app::Shared;
use crate::console::html::{csrf_field, esc, time, url, Nav};

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
    if !super::forms::in_scope(&session, queue, key) {
        return crate::console::app::Refusal::Forbidden(
            "this item is of a tenant you do not review",
        )
        .into_response();
    }
    let state = queue.state();
    let copies =
        state.items.get(&key).map(|i| (state.copies(&i.doc()), state.copies_differ(&i.doc())));
    let (Some(item), item_state) = (state.items.get(&key).cloned(), state.item_state(key)) else {
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
    if let Some((n, differ)) = copies.filter(|(n, _)| *n > 1) {
        let warn = if differ {
            " <b>The copies differ in the document or the answer: check the one you decide.</b>"
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<p id="copies" class="flash">This document is in the queue {n} times (written more than once); one decision counts for every copy.{warn}</p>"#
        );
    }
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
<label>Answer (edit before approving if needed)<textarea name="answer" rows="8">
{answer}</textarea></label>
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
