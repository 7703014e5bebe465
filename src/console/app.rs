//! What every page and action of the console shares: the [`App`] (topology, review queues,
//! sessions, limits), why a request is refused, and the checks every request passes (a session
//! for pages; a session, its CSRF token and a same-origin `Origin` for every POST).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;

use super::auth::{Session, Sessions};
use super::html::{page, Nav};
use super::review::ReviewQueue;
use super::{pipeline_sampler, Limits};
use crate::config::Topology;

pub struct App {
    pub topology: Topology,
    pub queues: Vec<Arc<ReviewQueue>>,
    pub sessions: Sessions,
    pub pipeline: pipeline_sampler::Sampler,
    /// Bounds on what the console holds in memory.
    pub limits: Limits,
    /// Stages whose dead letters this console is redriving now: one run per stage at a time.
    pub redrives: std::sync::Mutex<std::collections::HashSet<String>>,
}

pub type Shared = Arc<App>;
pub type FormData = Form<HashMap<String, String>>;

/// Why a request is not served: no session (a page: log in first) or a refused action.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Login,
    Forbidden(&'static str),
    /// The request names no review queue of this topology: back to the queue page.
    NoQueue,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, format!("{why}\n")).into_response(),
            Self::NoQueue => Redirect::to("/review").into_response(),
        }
    }
}

impl App {
    /// The session of a page request, or a redirect to the login page.
    pub fn viewer(&self, headers: &HeaderMap) -> Result<Session, Refusal> {
        self.sessions.of(headers).ok_or(Refusal::Login)
    }

    /// The session of a state-changing request whose form carries its CSRF token; otherwise
    /// 403 and nothing is done.
    pub fn actor(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Session, Refusal> {
        if !same_origin(headers) {
            return Err(Refusal::Forbidden("cross-origin request refused"));
        }
        let session = self.sessions.of(headers).ok_or(Refusal::Forbidden("log in first"))?;
        if !session.csrf_ok(form.get("csrf").map(String::as_str)) {
            return Err(Refusal::Forbidden(
                "missing or wrong CSRF token: reload the page and try again",
            ));
        }
        Ok(session)
    }

    /// A page for `session`, with its pending flash message.
    pub fn render(&self, title: &str, nav: Nav, session: &Session, body: &str) -> Html<String> {
        let flash = self.sessions.take_flash(&session.id);
        Html(page(title, nav, Some(session), flash, body))
    }
}

/// Pages that show every tenant's records or figures (dead letters, the pipeline) are for
/// reviewers of every tenant only: a tenant-scoped session is refused with `why`.
pub fn every_tenant(session: Session, why: &'static str) -> Result<Session, Refusal> {
    match session.tenants {
        None => Ok(session),
        Some(_) => Err(Refusal::Forbidden(why)),
    }
}

/// False when the browser says the request comes from another origin than the one it is sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}
