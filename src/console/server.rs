//! The console's HTTP side: the router, security headers, who a trusted proxy says a request
//! comes from, `/metrics`, the icon and the page for unknown paths. Logging in and out is in
//! [`super::login`], what pages share in [`super::app`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::app::{App, Shared};
use super::auth::PROXY_USER;
use super::html::{page, Nav};
use super::review::{forms as review_forms, item_page as review_item, pages as review_pages};
use super::{dlq_pages, login, pipeline_page};

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/review") }))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/review", get(review_pages::list))
        .route("/review/item/{partition}/{offset}", get(review_item::item))
        .route("/review/item/{partition}/{offset}/claim", post(review_forms::claim))
        .route("/review/item/{partition}/{offset}/decide", post(review_forms::decide))
        .route("/review/item/{partition}/{offset}/release", post(review_forms::release))
        .route("/review/item/{partition}/{offset}/discard", post(review_forms::discard))
        .route("/dead-letters", get(dlq_pages::list))
        .route("/dead-letters/preview", post(dlq_pages::preview))
        .route("/dead-letters/redrive", post(dlq_pages::execute))
        .route("/pipeline", get(pipeline_page::page))
        .route("/pipeline/table", get(pipeline_page::table))
        .route("/assets/console.css", get(|| asset("text/css", include_str!("assets/console.css"))))
        .route(
            "/assets/console.js",
            get(|| asset("text/javascript", include_str!("assets/console.js"))),
        )
        .route("/assets/icon.svg", get(|| asset("image/svg+xml", ICON)))
        .route("/favicon.ico", get(|| asset("image/svg+xml", ICON)))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), loopback_host))
        .layer(middleware::from_fn_with_state(app.clone(), proxied_user))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// The console's icon: a sluice gate.
const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2456c7"/><path d="M3 4h10v3H3zM3 9h10v3H3z" fill="#fff"/></svg>"##;

/// A console page for a path it does not serve.
async fn not_found(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let session = app.sessions.of(&headers);
    let nav = if session.is_some() { Nav::Review } else { Nav::None };
    let body = r#"<section class="card"><p>The console has no page at this address.</p><p><a class="button" href="/review">Go to the review queue</a></p></section>"#;
    (StatusCode::NOT_FOUND, Html(page("Page not found", nav, session.as_ref(), None, body)))
        .into_response()
}

async fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body)
}

/// The peer of a request (served with connect info; without it, an address that is neither
/// loopback nor a proxy's, so nothing is trusted).
fn peer(request: &Request) -> std::net::IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip())
}

/// Whether the request comes from the trusted proxy (its TCP peer is the proxy's address).
fn from_proxy(app: &App, request: &Request) -> bool {
    app.sessions.access.proxy.as_ref().is_some_and(|p| peer(request) == p.addr)
}

/// Removes any [`PROXY_USER`] header a client sent, then sets it to the user the trusted proxy
/// names — only on requests that come from the proxy's address.
async fn proxied_user(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    request.headers_mut().remove(PROXY_USER);
    if let Some(proxy) = &app.sessions.access.proxy {
        let named = request.headers().get(proxy.header.as_str()).cloned();
        if let (true, Some(user)) = (peer(&request) == proxy.addr, named) {
            request.headers_mut().insert(PROXY_USER, user);
        }
    }
    next.run(request).await
}

/// The process's metrics: on loopback for anyone; from elsewhere, when the console admits
/// reviewers by token or proxy, only with a session or a reviewer's token as a bearer. The
/// trusted proxy's address never counts as loopback: it forwards anyone's requests.
async fn metrics(State(app): State<Shared>, request: Request) -> Response {
    let local = peer(&request).is_loopback() && !from_proxy(&app, &request);
    if !local && app.sessions.token_required() && !app.sessions.may_scrape(request.headers()) {
        return (StatusCode::UNAUTHORIZED, "a session or `Authorization: Bearer <token>`\n")
            .into_response();
    }
    crate::telemetry::render().into_response()
}

/// Without a token the console trusts whoever reaches it on loopback; a web page in a browser
/// on the same machine could reach it too through DNS rebinding (its own host name resolving
/// to 127.0.0.1), so every request must name a loopback host.
async fn loopback_host(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if app.sessions.token_required() || is_loopback_host(host) {
        return next.run(request).await;
    }
    let why = "this console answers only on a loopback host name (127.0.0.1, localhost, [::1]); \
               to serve it elsewhere, give it a token";
    (StatusCode::MISDIRECTED_REQUEST, format!("{why}\n")).into_response()
}

/// Whether a `Host` header names a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Only the console's own scripts and styles; no framing; no referrer to other sites; no
/// caching of pages.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    response
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_host_names_pass_without_a_token() {
        for ok in ["127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:8080", "127.3.2.1"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "", "127.0.0.1.evil.example", "[::2]:80", "0.0.0.0:8080"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
