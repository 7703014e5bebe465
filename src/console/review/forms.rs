//! The review queue's actions as form posts: claim, release, decide, and discard a record that
//! cannot be decoded. Each checks the session and its CSRF token first ([`App::actor`]), then
//! that the item's tenant is one the reviewer may decide; a decision runs on a task of its own,
//! so a browser that goes away mid-request cannot cut it short between its steps. A refused
//! decision never loses the reviewer's edit (see [`decide`]); flashes name the document.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::collections::HashMap;
use std::sync::Arc;

use super::actions::{Actor, Judgement};
use super::ledger::ItemKey;
use super::pages::{queue, Query_};
use super::replica::ReviewQueue;
use crate::avro::HumanDecision;
use crate::console::app::{App, FormData, Refusal, Shared};
use crate::console::auth::{Draft, Session};
use crate::console::html::{esc, url, Nav};
use crate::console::login::session_gone;

fn actor(s: &Session) -> Actor {
    Actor { reviewer: s.reviewer.clone(), holder: s.holder.clone() }
}

fn key_of(partition: i32, offset: i64) -> ItemKey {
    ItemKey { partition, offset }
}

/// What every action checks first: the session and its CSRF token, then the queue it names,
/// then that the item (when held) is of a tenant the reviewer may decide.
fn acting(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    form: &HashMap<String, String>,
    key: ItemKey,
) -> Result<(Session, Arc<ReviewQueue>), Refusal> {
    let session = app.actor(headers, form)?;
    let queue = queue(app, q).ok_or(Refusal::NoQueue)?;
    if !in_scope(&session, queue, key) {
        return Err(Refusal::Forbidden("this item is of a tenant you do not review"));
    }
    Ok((session, queue.clone()))
}

/// Whether `session` may see and decide the item at `key` (an item not held: nothing to show).
pub(super) fn in_scope(session: &Session, queue: &ReviewQueue, key: ItemKey) -> bool {
    let Some(scope) = &session.tenants else { return true };
    queue.state().items.get(&key).is_none_or(|i| scope.contains(i.tenant()))
}

/// How pages and flashes name the item at `key`: its document's id, or — for a record that does
/// not decode — its position.
pub(super) fn name_of(queue: &ReviewQueue, key: ItemKey) -> String {
    let state = queue.state();
    match state.items.get(&key).map(|i| &i.envelope) {
        Some(Ok(e)) => e.document.id.clone(),
        _ => format!("record {}:{}", key.partition, key.offset),
    }
}

fn item_path(queue: &ReviewQueue, key: ItemKey) -> String {
    format!("/review/item/{}/{}?stage={}", key.partition, key.offset, url(&queue.topics.stage))
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
    let key = key_of(partition, offset);
    let (session, queue) = match acting(&app, &headers, &q, &form, key) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
    let result = queue.claim(key, &actor(&session)).await;
    // An edit refused while the claim had lapsed comes along, for the form to show.
    if form.contains_key("draft_answer") || form.contains_key("draft_note") {
        let draft = Draft {
            stage: queue.topics.stage.clone(),
            item: (partition, offset),
            answer: form.get("draft_answer").cloned(),
            note: form.get("draft_note").cloned().unwrap_or_default(),
        };
        app.sessions.keep_draft(&session.id, draft);
    }
    let minutes = queue.claim_ttl.as_secs().div_ceil(60);
    let ok = format!("Claimed {}: yours to decide for {minutes} min", name_of(&queue, key));
    back(&app, &session, result.map_err(|e| e.to_string()), ok, item_path(&queue, key))
}

pub async fn release(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let key = key_of(partition, offset);
    let (session, queue) = match acting(&app, &headers, &q, &form, key) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
    let result = queue.release(key, &actor(&session)).await;
    let ok = format!("{} is back in the queue", name_of(&queue, key));
    back(&app, &session, result.map_err(|e| e.to_string()), ok, "/review".into())
}

/// Approves or rejects. Every refusal keeps what she typed: refused here or by the queue, the
/// edit goes back to the item page with the reason; without a session (a console restart), the
/// page to log in again carries it; with an out-of-date form, the session keeps it.
pub async fn decide(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let key = key_of(partition, offset);
    // Browsers send textarea line breaks as CRLF.
    let answer = form.get("answer").map(|a| a.replace("\r\n", "\n"));
    let note = form.get("note").map_or(String::new(), |n| n.replace("\r\n", "\n"));
    let stage = queue(&app, &q).map(|r| r.topics.stage.clone()).unwrap_or_default();
    let draft = Draft { stage, item: (partition, offset), answer: answer.clone(), note };
    let (session, queue) = match acting(&app, &headers, &q, &form, key) {
        Ok(acting) => acting,
        Err(Refusal::SessionGone) => return session_gone(&app, &headers, Some(&draft)),
        Err(Refusal::StaleForm) => return stale_form(&app, &headers, draft),
        Err(r) => return r.into_response(),
    };
    let refused = |why: String, draft: Draft| {
        app.sessions.keep_draft(&session.id, draft);
        app.sessions.flash(&session.id, true, why);
        Redirect::to(&item_path(&queue, key)).into_response()
    };
    let note = draft.note.trim().to_owned();
    let decision = match form.get("decision").map(String::as_str) {
        Some("approve") => HumanDecision::Approved,
        Some("reject") if !note.is_empty() => HumanDecision::Rejected,
        Some("reject") => return refused("A rejection needs a note saying why".into(), draft),
        _ => return refused("Choose Approve or Reject".into(), draft),
    };
    let judgement = Judgement { decision, answer, note };
    // Named before: once decided, the item leaves the queue.
    let name = name_of(&queue, key);
    let (who, deciding) = (actor(&session), queue.clone());
    let task = async move { deciding.decide(key, &who, judgement).await };
    let result = match tokio::spawn(task).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the decision's task failed: {e}")),
    };
    match result {
        Ok(()) => {
            let word = if decision == HumanDecision::Approved { "Approved" } else { "Rejected" };
            app.sessions.flash(&session.id, false, format!("{word} {name}"));
            Redirect::to("/review").into_response()
        }
        Err(e) => refused(format!("{name} was not decided: {e}"), draft),
    }
}

/// A form shown before she last logged in: the session keeps the edit for the item's page.
fn stale_form(app: &App, headers: &HeaderMap, draft: Draft) -> Response {
    let Some(session) = app.sessions.of(headers) else {
        return session_gone(app, headers, Some(&draft));
    };
    let to = format!("/review/item/{}/{}?stage={}", draft.item.0, draft.item.1, url(&draft.stage));
    app.sessions.keep_draft(&session.id, draft);
    let (status, title, why) = Refusal::StaleForm.explain();
    let body = format!(
        r#"<section class="card refusal"><p>{}</p><p><a class="button" href="{}">Back to the item (your edit is kept)</a></p></section>"#,
        esc(why),
        esc(&to)
    );
    (status, app.render(title, Nav::Review, &session, &body)).into_response()
}

pub async fn discard(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
    Form(form): FormData,
) -> Response {
    let (session, queue) = match acting(&app, &headers, &q, &form, key_of(partition, offset)) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let why = "Nothing discarded: tick the box to confirm this record is to be skipped";
        app.sessions.flash(&session.id, true, why);
        return Redirect::to("/review").into_response();
    }
    let result = queue.discard(key_of(partition, offset), &actor(&session)).await;
    let ok = format!("Record {partition}:{offset} discarded: the queue moves past it");
    back(&app, &session, result.map_err(|e| e.to_string()), ok, "/review".into())
}
