//! The review queue's actions as form posts: claim, release, decide, and discard a record that
//! cannot be decoded. Each checks the session and its CSRF token first ([`App::actor`]), then
//! that the item's tenant is one the reviewer may decide; a decision runs on a task of its own,
//! so a browser that goes away mid-request cannot cut it short between its steps.

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
use crate::console::auth::Session;
use crate::console::html::url;

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
    let (session, queue) = match acting(&app, &headers, &q, &form, key_of(partition, offset)) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
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
    let (session, queue) = match acting(&app, &headers, &q, &form, key_of(partition, offset)) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
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
    let (session, queue) = match acting(&app, &headers, &q, &form, key_of(partition, offset)) {
        Ok(acting) => acting,
        Err(r) => return r.into_response(),
    };
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
    let who = actor(&session);
    let task = async move { queue.decide(key_of(partition, offset), &who, judgement).await };
    let result = match tokio::spawn(task).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the decision's task failed: {e}")),
    };
    let word = if decision == HumanDecision::Approved { "Approved" } else { "Rejected" };
    let ok = format!("{word} item {partition}/{offset}");
    back(&app, &session, result, ok, "/review".into())
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
    let ok = format!("Record {partition}/{offset} discarded: the queue moves past it");
    back(&app, &session, result.map_err(|e| e.to_string()), ok, "/review".into())
}
