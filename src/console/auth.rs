//! Sessions: logging in (with a reviewer's own token from the [`Access`] file, through a
//! trusted proxy, or — the single-user console on loopback — with a typed name) issues a session
//! cookie (HttpOnly, SameSite=Strict) naming the reviewer and their tenants, and every
//! state-changing request must carry the session's CSRF token in its form. At most
//! `max_sessions` live at once (a login past it ends the oldest), and an address that failed
//! `max_failures` logins is refused for the rest of the minute. Sessions live in the replica's
//! memory: behind a load balancer, route a reviewer to one replica (claims themselves are shared,
//! and belong to the reviewer, not the session: logging in again resumes them). A session also
//! keeps a reviewer's unsent edit ([`Draft`]) across a refused form, shown once on the item page.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use super::access::{same, valid_name, Access, Reviewer};

pub const COOKIE: &str = "sluice_session";
/// The header the console's own middleware sets to the user a trusted proxy named (any such
/// header from elsewhere is removed first).
pub const PROXY_USER: &str = "x-sluice-proxy-user";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The window failed logins are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie's value: a bearer secret, never written anywhere.
    pub id: String,
    /// Names the reviewer in the review-claims topic as the holder of claims ([`holder_of`]):
    /// the same for every session of one reviewer, so logging in again (after a console restart,
    /// on another replica) resumes her claims; unrelated to `id`, so reading the topic gives no
    /// one a session.
    pub holder: String,
    pub reviewer: String,
    /// The tenants this reviewer may see and decide; `None`: every tenant.
    pub tenants: Option<BTreeSet<String>>,
    /// Logged in through the trusted proxy: valid only while the proxy names the same reviewer.
    pub proxied: bool,
    pub csrf: String,
    /// A message for the next page shown: (is an error, text).
    pub flash: Option<(bool, String)>,
    /// An edit a refused form carried, for its item page to show once.
    pub draft: Option<Draft>,
    created: Instant,
}

/// What a reviewer typed into an item's decision form and has not had accepted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The review stage and the item (partition, offset).
    pub stage: String,
    pub item: (i32, i64),
    /// The answer as she left it (`None`: the form carried none).
    pub answer: Option<String>,
    pub note: String,
}

/// The holder of a reviewer's claims in the review-claims topic.
pub fn holder_of(reviewer: &str) -> String {
    format!("reviewer:{reviewer}")
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("enter your name (1 to 64 characters): decisions are recorded with it")]
    BadName,
    #[error("wrong or missing token")]
    BadToken,
    #[error("too many failed logins from your address: try again in a minute")]
    TooMany,
    #[error("the proxy in front of this console names no reviewer it may admit")]
    NotAdmitted,
}

/// Bounds on sessions and logins.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    /// Failed logins per address per minute before further attempts are refused.
    pub max_failures: u32,
}

pub struct Sessions {
    pub access: Access,
    limits: SessionLimits,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Sessions {
    pub fn new(access: Access, limits: SessionLimits) -> Self {
        Self {
            access,
            limits,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether logging in needs more than a name (a token or the proxy).
    pub fn token_required(&self) -> bool {
        !self.access.is_open()
    }

    /// Logs in from `peer`: with a token when the access file lists reviewers, else with the
    /// typed name (open console only).
    pub fn login(&self, peer: IpAddr, name: &str, token: &str) -> Result<Session, LoginError> {
        self.not_locked_out(peer)?;
        let reviewer = if self.access.has_tokens() {
            match self.access.by_token(token) {
                Some(r) => r.clone(),
                None => return Err(self.failed(peer, LoginError::BadToken)),
            }
        } else if self.access.is_open() {
            let name = name.trim();
            if !valid_name(name) {
                return Err(LoginError::BadName);
            }
            Reviewer { name: name.to_owned(), tenants: None }
        } else {
            return Err(self.failed(peer, LoginError::NotAdmitted));
        };
        Ok(self.start(reviewer, false))
    }

    /// Logs in the reviewer a trusted proxy named (the request's [`PROXY_USER`]).
    pub fn login_proxied(&self, headers: &HeaderMap) -> Result<Session, LoginError> {
        let user = proxy_user(headers).ok_or(LoginError::NotAdmitted)?;
        let reviewer = self.access.by_proxy_user(&user).ok_or(LoginError::NotAdmitted)?;
        Ok(self.start(reviewer, true))
    }

    fn start(&self, reviewer: Reviewer, proxied: bool) -> Session {
        let session = Session {
            id: random_hex(),
            holder: holder_of(&reviewer.name),
            reviewer: reviewer.name,
            tenants: reviewer.tenants,
            proxied,
            csrf: random_hex(),
            flash: None,
            draft: None,
            created: Instant::now(),
        };
        let mut all = self.lock();
        all.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        while all.len() >= self.limits.max_sessions.max(1) {
            let oldest = all.values().min_by_key(|s| s.created).map(|s| s.id.clone());
            match oldest {
                Some(id) => all.remove(&id),
                None => break,
            };
        }
        all.insert(session.id.clone(), session.clone());
        session
    }

    fn not_locked_out(&self, peer: IpAddr) -> Result<(), LoginError> {
        let failures = self.failures.lock().expect("never poisoned");
        match failures.get(&peer) {
            Some((since, n))
                if since.elapsed() < FAILURE_WINDOW && *n >= self.limits.max_failures =>
            {
                Err(LoginError::TooMany)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `peer`; returns `why`.
    fn failed(&self, peer: IpAddr, why: LoginError) -> LoginError {
        let mut failures = self.failures.lock().expect("never poisoned");
        failures.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
        let (_, n) = failures.entry(peer).or_insert((Instant::now(), 0));
        *n += 1;
        why
    }

    /// How many sessions are live.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn logout(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The live session the request's cookie names; through the proxy, only while the proxy
    /// names the same reviewer.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let session =
            self.lock().get(&id).filter(|s| s.created.elapsed() < SESSION_LIFETIME).cloned()?;
        let proxied = proxy_user(headers);
        match (session.proxied, proxied) {
            (true, Some(user)) if user == session.reviewer => Some(session),
            (true, _) => None,
            (false, _) => Some(session),
        }
    }

    /// Whether a request may read `/metrics`: a session, or a reviewer's token as a bearer.
    pub fn may_scrape(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer.is_some_and(|t| self.access.by_token(t.trim()).is_some())
            || self.of(headers).is_some()
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

    /// Keeps `draft` for the session's next view of its item.
    pub fn keep_draft(&self, id: &str, draft: Draft) {
        if let Some(s) = self.lock().get_mut(id) {
            s.draft = Some(draft);
        }
    }

    /// Takes the session's draft when it is of the item `(stage, partition, offset)`.
    pub fn take_draft(&self, id: &str, stage: &str, item: (i32, i64)) -> Option<Draft> {
        let mut all = self.lock();
        let session = all.get_mut(id)?;
        let mine = session.draft.as_ref().is_some_and(|d| d.stage == stage && d.item == item);
        if mine {
            session.draft.take()
        } else {
            None
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().expect("sessions lock is never poisoned")
    }
}

/// The user a trusted proxy named in this request (set by the console's own middleware).
pub fn proxy_user(headers: &HeaderMap) -> Option<String> {
    headers.get(PROXY_USER).and_then(|v| v.to_str().ok()).map(str::to_owned)
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

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: &str = "ann-token-0123456789abcdef";
    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, value.parse().expect("header value"));
        h
    }

    fn sessions(access: &str, max_sessions: usize, max_failures: u32) -> Sessions {
        let access = Access::parse(access).expect("access");
        Sessions::new(access, SessionLimits { max_sessions, max_failures })
    }

    #[test]
    fn a_token_names_the_reviewer_and_a_session_is_found_by_its_cookie() {
        let s = sessions(&format!("ann {ANN} acme"), 10, 10);
        assert_eq!(s.login(LOOPBACK, "ann", "wrong").unwrap_err(), LoginError::BadToken);
        assert_eq!(s.login(LOOPBACK, "ann", "").unwrap_err(), LoginError::BadToken);
        let session = s.login(LOOPBACK, "somebody else", ANN).expect("logs in");
        assert_eq!(session.reviewer, "ann", "the token names the reviewer, not the form");
        assert_eq!(session.tenants, Some(["acme".to_owned()].into()));
        let found = s.of(&with_cookie(&format!("a=b; {COOKIE}={}", session.id))).expect("found");
        assert_eq!(found.id, session.id);
        assert!(s.of(&with_cookie(&format!("{COOKIE}=forged"))).is_none());
        s.logout(&session.id);
        assert!(s.of(&with_cookie(&format!("{COOKIE}={}", session.id))).is_none());
    }

    #[test]
    fn csrf_must_match_the_session() {
        let session = sessions("", 10, 10).login(LOOPBACK, "ann", "").expect("open console");
        assert!(session.csrf_ok(Some(&session.csrf.clone())));
        assert!(!session.csrf_ok(None));
        assert!(!session.csrf_ok(Some("")));
        assert!(!session.csrf_ok(Some(&session.id)));
        assert!(session.set_cookie(false).ends_with("HttpOnly; SameSite=Strict"));
        assert!(session.set_cookie(true).ends_with("; Secure"));
        assert_ne!(session.holder, session.id, "the claims topic never carries the cookie");
    }

    #[test]
    fn claims_belong_to_the_reviewer_and_a_draft_is_shown_once_on_its_item() {
        let s = sessions("", 10, 10);
        let (first, again) = (s.login(LOOPBACK, "ann", ""), s.login(LOOPBACK, "ann", ""));
        let (first, again) = (first.expect("logs in"), again.expect("logs in"));
        assert_ne!(first.id, again.id);
        assert_eq!(first.holder, again.holder, "a new session holds what the reviewer claimed");
        let bob = s.login(LOOPBACK, "bob", "").expect("logs in");
        assert_ne!(bob.holder, first.holder);
        let draft = Draft { stage: "review".into(), item: (0, 3), answer: None, note: "n".into() };
        s.keep_draft(&first.id, draft.clone());
        assert_eq!(s.take_draft(&first.id, "review", (0, 4)), None, "another item");
        assert_eq!(s.take_draft(&first.id, "review", (0, 3)), Some(draft));
        assert_eq!(s.take_draft(&first.id, "review", (0, 3)), None, "shown once");
    }

    #[test]
    fn sessions_are_bounded_and_failed_logins_lock_an_address_out() {
        let (max_sessions, max_failures) = (3, 2);
        let s = sessions(&format!("ann {ANN}"), max_sessions, max_failures);
        let first = s.login(LOOPBACK, "", ANN).expect("logs in");
        for _ in 0..max_sessions {
            s.login(LOOPBACK, "", ANN).expect("logs in");
        }
        assert_eq!(s.count(), max_sessions);
        assert!(s.of(&with_cookie(&format!("{COOKIE}={}", first.id))).is_none(), "oldest ended");
        let other: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..max_failures {
            assert_eq!(s.login(other, "", "guess").unwrap_err(), LoginError::BadToken);
        }
        assert_eq!(s.login(other, "", ANN).unwrap_err(), LoginError::TooMany, "even the token");
        s.login(LOOPBACK, "", ANN).expect("another address is not locked out");
    }
}
