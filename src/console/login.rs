//! Logging in and out: the login form (a reviewer's own token, the trusted proxy's word, or — on
//! the single-user console — a typed name), failed logins limited per client, and a reviewer's
//! unsent edit carried through the login form when her session had ended (a console restart):
//! her new session shows it on the item's page, and her claims are still hers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;

use super::app::{App, FormData, Refusal, Shared};
use super::auth::{proxy_user, Draft};
use super::html::{esc, page, url, Nav};

/// The login page; `?draft_stage=S&draft_item=P/O` (an item page asked for without a session)
/// brings her back to that item once logged in.
pub async fn login_page(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Html<String> {
    let back = draft_of(&app, &q);
    let form = login_form(&app, &headers, None, back.as_ref());
    Html(page("Log in", Nav::None, None, None, &form))
}

/// Where the login page of an item's page without a session is.
pub fn login_for_item(stage: &str, item: (i32, i64)) -> String {
    format!("/login?draft_stage={}&draft_item={}%2F{}", url(stage), item.0, item.1)
}

/// The login form; with `draft`, the edit a refused form carried, shown and posted along so the
/// item page shows it again once she is logged in.
pub fn login_form(
    app: &App,
    headers: &HeaderMap,
    error: Option<&str>,
    draft: Option<&Draft>,
) -> String {
    let access = &app.sessions.access;
    let fields = match proxy_user(headers) {
        Some(user) => format!(
            r#"<p>Your proxy says you are <b>{}</b>.</p><input type="hidden" name="proxied" value="1">"#,
            esc(&user)
        ),
        None if access.has_tokens() => r#"<label>Your console token (it names you) <input name="token" type="password" autocomplete="current-password" required></label>"#.to_owned(),
        None if access.is_open() => r#"<label>Your name (recorded with every decision) <input name="reviewer" autocomplete="username" required maxlength="64"></label>"#.to_owned(),
        None => "<p>Log in through the proxy in front of this console.</p>".to_owned(),
    };
    let error =
        error.map_or(String::new(), |e| format!(r#"<p class="flash error">{}</p>"#, esc(e)));
    let kept = draft.map_or(String::new(), draft_fields);
    format!(
        r#"{error}<form id="login" method="post" action="/login" class="card">
{fields}{kept}<button type="submit">Log in</button></form>"#
    )
}

/// A draft as hidden fields of the login form, and visible (read-only) so it can be copied
/// whatever happens next.
fn draft_fields(d: &Draft) -> String {
    let answer = d.answer.as_deref().map_or(String::new(), |a| {
        format!(
            r#"<input type="hidden" name="draft_answer" value="{0}"><label>Your edit of the answer (kept: it is shown again once you are logged in)<textarea id="kept-answer" readonly rows="6">{0}</textarea></label>"#,
            esc(a)
        )
    });
    let note = match d.note.is_empty() {
        true => String::new(),
        false => format!(
            r#"<label>Your note<textarea id="kept-note" readonly rows="2">{}</textarea></label>"#,
            esc(&d.note)
        ),
    };
    format!(
        r#"<input type="hidden" name="draft_stage" value="{}"><input type="hidden" name="draft_item" value="{}/{}"><input type="hidden" name="draft_note" value="{}">{answer}{note}"#,
        esc(&d.stage),
        d.item.0,
        d.item.1,
        esc(&d.note)
    )
}

/// The draft a login form carries, when it names an item of a review stage of this console.
fn draft_of(app: &App, form: &HashMap<String, String>) -> Option<Draft> {
    let stage = form.get("draft_stage")?;
    app.queues.iter().find(|q| q.topics.stage == *stage)?;
    let (p, o) = form.get("draft_item")?.split_once('/')?;
    Some(Draft {
        stage: stage.clone(),
        item: (p.parse().ok()?, o.parse().ok()?),
        answer: form.get("draft_answer").cloned(),
        note: form.get("draft_note").cloned().unwrap_or_default(),
    })
}

/// The page a form posted without a session gets: log in again, the edit kept.
pub fn session_gone(app: &App, headers: &HeaderMap, draft: Option<&Draft>) -> Response {
    let (status, title, why) = Refusal::SessionGone.explain();
    let body = format!(
        r#"<p class="flash error" role="status">{}</p>{}"#,
        esc(why),
        login_form(app, headers, None, draft)
    );
    (status, Html(page(title, Nav::None, None, None, &body))).into_response()
}

pub async fn login(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): FormData,
) -> Response {
    if !app.same_origin(&headers) {
        return Refusal::CrossOrigin.into_response();
    }
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let draft = draft_of(&app, &form);
    let client = client_of(&app, peer.ip(), &headers);
    let result = match proxy_user(&headers) {
        Some(_) if field("token").is_empty() => app.sessions.login_proxied(&headers),
        _ => app.sessions.login(client, field("reviewer"), field("token")),
    };
    match result {
        Ok(session) => {
            let via = match (session.proxied, app.sessions.access.has_tokens()) {
                (true, _) => "proxy",
                (false, true) => "token",
                (false, false) => "name",
            };
            super::events::LoggedIn { reviewer: &session.reviewer, via }.emit();
            let https = headers
                .get("x-forwarded-proto")
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
                || app
                    .sessions
                    .access
                    .public_origin
                    .as_ref()
                    .is_some_and(|o| o.starts_with("https:"));
            let to = match draft {
                Some(d) => {
                    let to =
                        format!("/review/item/{}/{}?stage={}", d.item.0, d.item.1, url(&d.stage));
                    app.sessions.keep_draft(&session.id, d);
                    to
                }
                None => "/review".to_owned(),
            };
            ([(header::SET_COOKIE, session.set_cookie(https))], Redirect::to(&to)).into_response()
        }
        Err(e) => {
            let reason = e.to_string();
            super::events::LoginRefused { reason: &reason, peer: client }.emit();
            let status = match e {
                super::auth::LoginError::TooMany => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let form = login_form(&app, &headers, Some(&reason), draft.as_ref());
            (status, Html(page("Log in", Nav::None, None, None, &form))).into_response()
        }
    }
}

/// Who a login attempt comes from: the TCP peer, or — when that is the trusted proxy — the
/// client the proxy names last in `X-Forwarded-For` (the entry the proxy itself appended;
/// earlier ones are the client's word). Without a usable entry, the proxy itself.
fn client_of(app: &App, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if app.sessions.access.proxy.as_ref().is_none_or(|p| p.addr != peer) {
        return peer;
    }
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .map(str::trim);
    last.and_then(|ip| ip.parse().ok()).unwrap_or(peer)
}

pub async fn logout(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): FormData,
) -> Response {
    match app.actor(&headers, &form) {
        Ok(s) => {
            app.sessions.logout(&s.id);
            Redirect::to("/login").into_response()
        }
        Err(r) => r.into_response(),
    }
}
