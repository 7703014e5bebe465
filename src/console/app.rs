//! What every page and action of the console shares: the [`App`] (topology, review queues,
//! sessions, limits), why a request is refused (as a console page with a way back), and the
//! checks every request passes (a session for pages; a session, its CSRF token and a
//! same-origin `Origin` — the request's own host, or the configured public origin — for every
//! POST).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;

use super::auth::{Session, Sessions};
use super::html::{esc, page, Nav};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Login,
    /// A form posted without a live session (the console restarted, or she logged out).
    SessionGone,
    /// A form whose `Origin` is neither this console's host nor its public origin.
    CrossOrigin,
    /// A form whose CSRF token is not the session's (shown before she logged in again).
    StaleForm,
    Forbidden(&'static str),
    /// The request names no review queue of this topology: back to the queue page.
    NoQueue,
}

impl Refusal {
    /// The status and the page's title and message.
    pub fn explain(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::SessionGone | Self::Login => (
                StatusCode::UNAUTHORIZED,
                "Your session has ended",
                "The console restarted or you logged out, so this was not done. Log in again: \
                 items you claimed are still yours until the claim lapses.",
            ),
            Self::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "Refused: sent from another site",
                "The browser says this form comes from another origin than the console's, so \
                 nothing was done. Behind a proxy that rewrites the Host header, start the \
                 console with --public-origin set to the address reviewers open.",
            ),
            Self::StaleForm => (
                StatusCode::FORBIDDEN,
                "This form was out of date",
                "It was shown before you last logged in (missing or wrong CSRF token), so nothing \
                 was done. Open the page again and repeat the action.",
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why),
            Self::NoQueue => (StatusCode::NOT_FOUND, "No such review queue", "Back to the queue."),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::NoQueue => Redirect::to("/review").into_response(),
            refused => {
                let (status, title, why) = refused.explain();
                let back = match refused {
                    Self::SessionGone => r#"<a class="button" href="/login">Log in again</a>"#,
                    _ => r#"<a class="button" href="/review">Back to the review queue</a>"#,
                };
                let body = format!(
                    r#"<section class="card refusal"><p>{}</p><p>{back}</p></section>"#,
                    esc(why)
                );
                (status, Html(page(title, Nav::None, None, None, &body))).into_response()
            }
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
        if !self.same_origin(headers) {
            return Err(Refusal::CrossOrigin);
        }
        let session = self.sessions.of(headers).ok_or(Refusal::SessionGone)?;
        if !session.csrf_ok(form.get("csrf").map(String::as_str)) {
            return Err(Refusal::StaleForm);
        }
        Ok(session)
    }

    /// False when the browser says the request comes from another origin than the one it is
    /// sent to (its `Host`) and than the console's configured public origin.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        same_origin(headers, self.sessions.access.public_origin.as_deref())
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

/// False when the browser says the request comes from another origin than the one it is sent to
/// and than `public` (a normalized `scheme://host[:port]`, see
/// [`super::access::parse_origin`]).
pub fn same_origin(headers: &HeaderMap, public: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if public.is_some_and(|p| p.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().expect("origin"));
        h.insert(header::HOST, host.parse().expect("host"));
        h
    }

    #[test]
    fn a_proxy_rewriting_host_passes_only_with_the_configured_public_origin() {
        let proxied = request("https://review.example.com", "127.0.0.1:8080");
        assert!(!same_origin(&proxied, None), "nginx's default Host is the upstream's");
        assert!(same_origin(&proxied, Some("https://review.example.com")));
        assert!(!same_origin(&proxied, Some("https://other.example.com")));
        let evil = request("https://evil.example", "127.0.0.1:8080");
        assert!(!same_origin(&evil, Some("https://review.example.com")));
        assert!(same_origin(&request("http://127.0.0.1:8080", "127.0.0.1:8080"), None));
        assert!(same_origin(&HeaderMap::new(), None), "no Origin: not a browser's cross-site form");
    }
}
