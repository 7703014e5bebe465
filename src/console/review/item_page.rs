//! A review item's own page, titled with its document's id: the question with why review held
//! it, then — for the reviewer holding its claim — the answer in the decision form with Approve
//! and Reject right under it (beside the question on a wide screen, the buttons in a bar that
//! stays in view) and the time her claim has left; then the retrieved passages. An edit a
//! refused form carried ([`Draft`]) fills the form again, or — when the item left the queue —
//! is shown to copy.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::ledger::{ItemKey, ItemState};
use super::pages::{queue, Query_};
use super::queue::Item;
use crate::avro::Envelope;
use crate::call::now_ms;
use crate::console::app::{Refusal, Shared};
use crate::console::auth::{Draft, Session};
use crate::console::html::{age, claim_left, csrf_field, esc, url, Nav};
use crate::console::login::login_for_item;

pub async fn item(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((partition, offset)): Path<(i32, i64)>,
    Query(q): Query_,
) -> Response {
    let session = match app.viewer(&headers) {
        Ok(s) => s,
        // Her session ended (a console restart): back here once she logged in again (the
        // login page checks the stage).
        Err(Refusal::Login) => {
            let stage = q.get("stage").map_or("", String::as_str);
            return Redirect::to(&login_for_item(stage, (partition, offset))).into_response();
        }
        Err(r) => return r.into_response(),
    };
    let Some(queue) = queue(&app, &q) else { return Redirect::to("/review").into_response() };
    let key = ItemKey { partition, offset };
    if !super::forms::in_scope(&session, queue, key) {
        return Refusal::Forbidden("this item is of a tenant you do not review").into_response();
    }
    let draft = app.sessions.take_draft(&session.id, &queue.topics.stage, (partition, offset));
    let state = queue.state();
    let copies =
        state.items.get(&key).map(|i| (state.copies(&i.doc()), state.copies_differ(&i.doc())));
    let (Some(item), item_state) = (state.items.get(&key).cloned(), state.item_state(key)) else {
        drop(state);
        let gone = format!("Item {partition}:{offset} is no longer in the queue");
        if let Some(d) = draft {
            return app.render(&gone, Nav::Review, &session, &kept(&d)).into_response();
        }
        app.sessions.flash(&session.id, true, gone);
        return Redirect::to("/review").into_response();
    };
    drop(state);
    let now = now_ms();
    let held = item_state.holder_at(now).is_some_and(|(_, h)| h == session.holder);
    let mut body = meta(&item, &item_state, &session, now);
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
    let stage = url(&queue.topics.stage);
    let action = |verb: &str| format!("/review/item/{partition}/{offset}/{verb}?stage={stage}");
    let envelope = match &item.envelope {
        Ok(e) => e,
        Err(why) => {
            let _ = write!(
                body,
                r#"<p class="flash error">Cannot be decoded, so it cannot be decided: {}</p>"#,
                esc(why)
            );
            let title = format!("Record {partition}:{offset}");
            return app.render(&title, Nav::Review, &session, &body).into_response();
        }
    };
    body.push_str(r#"<div class="item-page">"#);
    body.push_str(&question(envelope));
    match (held, &item_state) {
        (true, ItemState::Claimed { expires_ms, .. }) => {
            body.push_str(&decide_form(envelope, &session, draft.as_ref(), &action, *expires_ms))
        }
        _ => {
            let claim = action("claim");
            let card = answer_card(envelope, &item_state, &session, &claim, draft.as_ref(), now);
            body.push_str(&card);
        }
    }
    body.push_str(&passages(envelope));
    body.push_str("</div>");
    app.render(&envelope.document.id, Nav::Review, &session, &body).into_response()
}

/// Tenant, label, position, age and who holds the item.
fn meta(item: &Item, state: &ItemState, session: &Session, now: i64) -> String {
    let who = match (state, state.holder_at(now)) {
        (ItemState::Decided(d), _) => format!("decided by {}", esc(&d.reviewer)),
        (ItemState::Done, _) => "decided".into(),
        (ItemState::Claimed { expires_ms, .. }, Some((_, h))) if h == session.holder => {
            format!("you hold this item · {}", claim_left(*expires_ms, now))
        }
        (ItemState::Claimed { expires_ms, .. }, Some((r, _))) => {
            format!("being reviewed by {} · {}", esc(r), claim_left(*expires_ms, now))
        }
        _ => "waiting for a reviewer".into(),
    };
    let label = match item.label() {
        "" => String::new(),
        l => format!(" · {}", esc(l)),
    };
    format!(
        r#"<p class="meta muted"><span>{}{label} · {}:{} · waiting {}</span> <span class="state">{who}</span></p>"#,
        esc(item.tenant()),
        item.key.partition,
        item.key.offset,
        age((now - item.timestamp_ms) / 1000),
    )
}

/// The question, its metadata, and why review held the answer.
fn question(e: &Envelope) -> String {
    let mut out = format!(
        r#"<section class="card question"><h2>Question</h2><p class="doc">{}</p>"#,
        esc(&e.document.content)
    );
    if !e.document.metadata.is_empty() {
        let _ =
            write!(out, "<details><summary>Metadata ({})</summary><dl>", e.document.metadata.len());
        for (k, v) in &e.document.metadata {
            let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        }
        out.push_str("</dl></details>");
    }
    let reasons = e.review.as_ref().map(|r| r.reasons.clone()).unwrap_or_default();
    if !reasons.is_empty() {
        out.push_str(r#"<h2>Why review held it</h2><ul class="reasons">"#);
        for r in reasons {
            let _ = write!(out, "<li>{}</li>", esc(&r));
        }
        out.push_str("</ul>");
    }
    let answer = e.answer.as_ref();
    let _ = write!(
        out,
        r#"<p class="muted">model {} · prompt {}</p></section>"#,
        esc(answer.map_or("—", |a| a.model.as_str())),
        esc(answer.map_or("—", |a| a.prompt_version.as_str())),
    );
    out
}

/// The decision form of the claim's holder: the answer (or her kept edit), the note, and the
/// buttons right below them.
fn decide_form(
    e: &Envelope,
    session: &Session,
    draft: Option<&Draft>,
    action: &dyn Fn(&str) -> String,
    expires_ms: i64,
) -> String {
    let original = e.answer.as_ref().map_or("", |a| a.text.as_str());
    let answer = draft.and_then(|d| d.answer.as_deref()).unwrap_or(original);
    let note = draft.map_or("", |d| d.note.as_str());
    let restored = match draft {
        Some(_) => {
            r#"<p id="draft-kept" class="flash">Your edit was kept: check it, then decide.</p>"#
        }
        None => "",
    };
    format!(
        r#"<form id="decide" method="post" action="{decide}" class="card decide">{csrf}{restored}
<label for="answer-text"><span><b>Answer</b> <span class="muted">edit before approving if needed</span></span></label>
<textarea id="answer-text" name="answer" rows="10" data-original="{original}">
{answer}</textarea>
<label><span>Note <span class="muted">(required to reject)</span></span><textarea name="note" rows="2">{note}</textarea></label>
<div class="actions"><button name="decision" value="approve" type="submit">Approve</button>
<button name="decision" value="reject" type="submit" class="danger">Reject</button>
<button form="release" type="submit" class="link">Give back to the queue</button>
<span class="muted claim">Your claim: {left}</span></div></form>
<form id="release" method="post" action="{release}">{csrf}</form>"#,
        decide = action("decide"),
        release = action("release"),
        csrf = csrf_field(session),
        original = esc(original),
        answer = esc(answer),
        note = esc(note),
        left = claim_left(expires_ms, crate::call::now_ms()),
    )
}

/// The answer as others see it, with the claim button while the item is pending; with her
/// kept edit (a decision refused because her claim lapsed or someone else holds the item), that
/// edit to copy, carried by the claim so the form shows it once the item is hers again.
fn answer_card(
    e: &Envelope,
    state: &ItemState,
    session: &Session,
    claim: &str,
    draft: Option<&Draft>,
    now: i64,
) -> String {
    let answer = e.answer.as_ref().map_or("(no answer)", |a| a.text.as_str());
    let carried = draft.map_or(String::new(), |d| {
        format!(
            r#"<input type="hidden" name="draft_answer" value="{}"><input type="hidden" name="draft_note" value="{}">"#,
            esc(d.answer.as_deref().unwrap_or(answer)),
            esc(&d.note)
        )
    });
    let form = match (state.is_pending(), state.holder_at(now)) {
        (false, _) => String::new(),
        (true, Some((r, _))) => format!(
            r#"<p class="muted">{} holds this item; you can claim it once they give it back or the claim lapses.</p><button class="claim" type="button" disabled>Claim &amp; review</button>"#,
            esc(r)
        ),
        (true, None) => format!(
            r#"<form method="post" action="{claim}">{}{carried}<button class="claim" type="submit">Claim &amp; review</button></form>"#,
            csrf_field(session)
        ),
    };
    let kept = draft.map_or(String::new(), |d| {
        format!(
            r#"<label>Your edit, not sent<textarea id="kept-answer" readonly rows="6">{}</textarea></label>"#,
            esc(d.answer.as_deref().unwrap_or(answer))
        )
    });
    format!(
        r#"<section class="card decide"><h2>Answer</h2><p class="answer">{}</p>{kept}{form}</section>"#,
        esc(answer)
    )
}

/// The passages retrieval found for the question.
fn passages(e: &Envelope) -> String {
    let mut out = format!(
        r#"<section class="card passages"><h2>Retrieved passages ({})</h2>"#,
        e.passages.len()
    );
    if e.passages.is_empty() {
        out.push_str(r#"<p class="empty">Retrieval found no passages for this question.</p>"#);
    } else {
        out.push_str("<ol>");
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
        out.push_str("</ol>");
    }
    out.push_str("</section>");
    out
}

/// An edit kept for an item that left the queue (decided by someone else, or committed past):
/// shown to copy.
fn kept(d: &Draft) -> String {
    let answer = d.answer.as_deref().map_or(String::new(), |a| {
        format!(
            r#"<label>Your edit of the answer<textarea id="kept-answer" readonly rows="8">{}</textarea></label>"#,
            esc(a)
        )
    });
    format!(
        r#"<section class="card"><p>It was decided, or its decision was written, while your edit was on its way; your edit was not used. Here it is, to copy:</p>{answer}<label>Your note<textarea id="kept-note" readonly rows="2">{}</textarea></label><p><a class="button" href="/review">Back to the review queue</a></p></section>"#,
        esc(&d.note)
    )
}
