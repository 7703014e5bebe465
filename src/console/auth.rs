//! Who may use the console. On loopback anyone who can reach the port may; bound elsewhere, a
//! token (from a file or the environment) is required to log in. Logging in issues a session
//! cookie (HttpOnly, SameSite=Strict) naming the reviewer, and every state-changing request
//! must carry the session's CSRF token in its form. Sessions live in the replica's memory:
//! behind a load balancer, route a reviewer to one replica (claims themselves are shared).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

pub const COOKIE: &str = "sluice_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie's value: a bearer secret, never written anywhere.
    pub id: String,
    /// Names this session in the review-claims topic (as the holder of claims); unrelated to
    /// `id`, so reading the topic gives no one a session.
    pub holder: String,
    pub reviewer: String,
    pub csrf: String,
    /// A message for the next page shown: (is an error, text).
    pub flash: Option<(bool, String)>,
    created: Instant,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("enter your name (1 to 64 characters): decisions are recorded with it")]
    BadName,
    #[error("wrong or missing token")]
    BadToken,
}

pub struct Sessions {
    token: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// `token`: required to log in, when set.
    pub fn new(token: Option<String>) -> Self {
        Self { token, sessions: Mutex::new(HashMap::new()) }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Starts a session for `reviewer` when the token (if one is required) matches.
    pub fn login(&self, reviewer: &str, token: &str) -> Result<Session, LoginError> {
        let reviewer = reviewer.trim();
        if reviewer.is_empty()
            || reviewer.chars().count() > 64
            || reviewer.contains(char::is_control)
        {
            return Err(LoginError::BadName);
        }
        if let Some(expected) = &self.token {
            if !same(expected.as_bytes(), token.as_bytes()) {
                return Err(LoginError::BadToken);
            }
        }
        let session = Session {
            id: random_hex(),
            holder: random_hex(),
            reviewer: reviewer.to_owned(),
            csrf: random_hex(),
            flash: None,
            created: Instant::now(),
        };
        let mut all = self.lock();
        all.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        all.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub fn logout(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        self.lock().get(&id).filter(|s| s.created.elapsed() < SESSION_LIFETIME).cloned()
    }

    /// Takes the session's flash message, shown once.
    pub fn take_flash(&self, id: &str) -> Option<(bool, String)> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn flash(&self, id: &str, error: bool, text: impl Into<String>) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some((error, text.into()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().expect("sessions lock is never poisoned")
    }
}

impl Session {
    /// Whether a form's CSRF field is this session's token.
    pub fn csrf_ok(&self, field: Option<&str>) -> bool {
        field.is_some_and(|f| same(self.csrf.as_bytes(), f.as_bytes()))
    }

    /// The `Set-Cookie` value that carries this session; `Secure` when the console is reached
    /// over HTTPS (behind a TLS-terminating proxy).
    pub fn set_cookie(&self, https: bool) -> String {
        let secure = if https { "; Secure" } else { "" };
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}", self.id)
    }
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, value.parse().expect("header value"));
        h
    }

    #[test]
    fn a_token_is_checked_and_a_session_found_by_its_cookie() {
        let s = Sessions::new(Some("s3cret".into()));
        assert_eq!(s.login("ann", "wrong").unwrap_err(), LoginError::BadToken);
        assert_eq!(s.login("ann", "").unwrap_err(), LoginError::BadToken);
        assert_eq!(s.login("  ", "s3cret").unwrap_err(), LoginError::BadName);
        let session = s.login(" ann ", "s3cret").expect("logs in");
        assert_eq!(session.reviewer, "ann");
        let found = s.of(&with_cookie(&format!("a=b; {COOKIE}={}", session.id))).expect("found");
        assert_eq!(found.id, session.id);
        assert!(s.of(&with_cookie(&format!("{COOKIE}=forged"))).is_none());
        s.logout(&session.id);
        assert!(s.of(&with_cookie(&format!("{COOKIE}={}", session.id))).is_none());
    }

    #[test]
    fn csrf_must_match_the_session() {
        let session = Sessions::new(None).login("ann", "").expect("no token needed");
        assert!(session.csrf_ok(Some(&session.csrf.clone())));
        assert!(!session.csrf_ok(None));
        assert!(!session.csrf_ok(Some("")));
        assert!(!session.csrf_ok(Some(&session.id)));
        assert!(session.set_cookie(false).ends_with("HttpOnly; SameSite=Strict"));
        assert!(session.set_cookie(true).ends_with("; Secure"));
        assert_ne!(session.holder, session.id, "the claims topic never carries the cookie");
    }
}
