//! Who the console's reviewers are: the access file maps each reviewer's own token to their
//! name and, optionally, the tenants they may see and decide; a trusted proxy may name the
//! reviewer instead (its user header counts only on requests from its address). Without either
//! the console is a single-user tool on loopback and the name is what the user types. Behind a
//! TLS proxy that rewrites `Host` (nginx's default), the origin reviewers open is configured
//! ([`parse_origin`]), so their forms pass the Origin check.
//!
//! The access file, one reviewer a line (`#` starts a comment):
//!
//! ```text
//! # reviewer  token (at least MIN_TOKEN_CHARS characters, or - : only through the proxy)  [tenants]
//! ann   9f3c0c1d5e0b4a8f9a7e2d41c6b3   acme,globex
//! bob   4b1e7d0a2c9f8e3b5a6d7c0e1f2a
//! carol -                              acme
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Tokens shorter than this are refused when the console starts.
pub const MIN_TOKEN_CHARS: usize = 24;
/// The header a trusted proxy names the reviewer in, unless configured otherwise.
pub const DEFAULT_USER_HEADER: &str = "x-forwarded-user";

/// A reviewer: their name (recorded with every decision) and the tenants they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub name: String,
    /// `None`: every tenant.
    pub tenants: Option<BTreeSet<String>>,
}

/// A proxy in front of the console that authenticates reviewers itself.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Requests from this address alone may name the reviewer.
    pub addr: IpAddr,
    /// The header naming the reviewer (lower case).
    pub header: String,
}

/// Who may use the console.
#[derive(Clone, Default)]
pub struct Access {
    /// (token or `None` for proxy-only, reviewer).
    entries: Vec<(Option<String>, Reviewer)>,
    pub proxy: Option<Proxy>,
    /// The origin reviewers open the console at (`https://review.example.com`), when a proxy in
    /// front of it rewrites `Host`: forms from it pass the Origin check. Normalized by
    /// [`parse_origin`].
    pub public_origin: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(_, r)| r.name.as_str()).collect();
        f.debug_struct("Access")
            .field("reviewers", &names)
            .field("proxy", &self.proxy)
            .field("public_origin", &self.public_origin)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("access file line {0}: expected `<reviewer> <token or -> [tenant,tenant,...]`")]
    Malformed(usize),
    #[error(
        "access file line {0}: the token is shorter than {MIN_TOKEN_CHARS} characters; make \
         one with e.g. `openssl rand -hex 16`"
    )]
    ShortToken(usize),
    #[error("access file line {0}: this token or reviewer name is listed twice")]
    Duplicate(usize),
    #[error("access file line {0}: a reviewer name is 1 to 64 characters, no control characters")]
    BadName(usize),
}

/// Whether `name` may name a reviewer.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 64 && !name.contains(char::is_control)
}

impl Access {
    /// Reads an access file's text.
    pub fn parse(text: &str) -> Result<Self, AccessError> {
        let mut entries: Vec<(Option<String>, Reviewer)> = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, token, tenants) = match fields.as_slice() {
                [name, token] => (*name, *token, None),
                [name, token, tenants] => (*name, *token, Some(*tenants)),
                _ => return Err(AccessError::Malformed(n)),
            };
            if !valid_name(name) {
                return Err(AccessError::BadName(n));
            }
            let token = match token {
                "-" => None,
                t if t.chars().count() < MIN_TOKEN_CHARS => return Err(AccessError::ShortToken(n)),
                t => Some(t.to_owned()),
            };
            let clash =
                entries.iter().any(|(t, r)| r.name == name || (token.is_some() && *t == token));
            if clash {
                return Err(AccessError::Duplicate(n));
            }
            let tenants = tenants.filter(|t| *t != "*").map(|t| {
                t.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect::<BTreeSet<_>>()
            });
            entries.push((token, Reviewer { name: name.to_owned(), tenants }));
        }
        Ok(Self { entries, proxy: None, public_origin: None })
    }

    /// Nobody to check: the single-user console on loopback.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty() && self.proxy.is_none()
    }

    /// Whether any reviewer logs in with a token.
    pub fn has_tokens(&self) -> bool {
        self.entries.iter().any(|(t, _)| t.is_some())
    }

    /// The reviewer whose token this is; every entry is compared, in time independent of
    /// where the first difference is.
    pub fn by_token(&self, token: &str) -> Option<&Reviewer> {
        let mut found = None;
        for (t, r) in &self.entries {
            if t.as_deref().is_some_and(|t| same(t.as_bytes(), token.as_bytes())) {
                found = Some(r);
            }
        }
        found
    }

    /// The reviewer a trusted proxy names: as the access file lists them (their tenants), or —
    /// when the file lists nobody — with every tenant. `None`: not listed.
    pub fn by_proxy_user(&self, user: &str) -> Option<Reviewer> {
        if !valid_name(user) {
            return None;
        }
        if self.entries.is_empty() {
            return Some(Reviewer { name: user.to_owned(), tenants: None });
        }
        self.entries.iter().find(|(_, r)| r.name == user).map(|(_, r)| r.clone())
    }
}

/// An origin as browsers send it in `Origin`: `http` or `https`, a host, an optional port, no
/// path (a trailing `/` is dropped); lower-cased.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let why = || {
        format!(
            "'{text}' is not an origin: write the scheme and host reviewers open, like \
             https://review.example.com or https://review.example.com:8443 (no path)"
        )
    };
    let (scheme, host) = text.split_once("://").ok_or_else(why)?;
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        && !host.starts_with(':');
    match (scheme, host_ok) {
        ("http" | "https", true) => Ok(text.clone()),
        _ => Err(why()),
    }
}

/// Compares in time independent of where the first difference is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: &str = "ann-token-0123456789abcdef";
    const BOB: &str = "bob-token-0123456789abcdef";

    #[test]
    fn the_access_file_maps_tokens_to_reviewers_and_their_tenants() {
        let text = format!("# team\nann {ANN} acme,globex\n\nbob {BOB} *\ncarol - acme # proxy\n");
        let a = Access::parse(&text).expect("parses");
        let ann = a.by_token(ANN).expect("ann");
        assert_eq!(ann.name, "ann");
        assert_eq!(ann.tenants, Some(["acme".to_owned(), "globex".to_owned()].into()));
        assert_eq!(a.by_token(BOB).map(|r| r.tenants.clone()), Some(None), "* is every tenant");
        assert!(a.by_token("-").is_none() && a.by_token("").is_none(), "no token logs carol in");
        assert_eq!(a.by_proxy_user("carol").map(|r| r.name), Some("carol".into()));
        assert!(a.by_proxy_user("mallory").is_none(), "a listed team admits only its members");
        assert!(format!("{a:?}").contains("ann") && !format!("{a:?}").contains(ANN));
    }

    #[test]
    fn short_tokens_duplicates_and_bad_lines_are_refused_with_their_line() {
        let short = "a".repeat(MIN_TOKEN_CHARS - 1);
        assert_eq!(Access::parse(&format!("ann {short}")).err(), Some(AccessError::ShortToken(1)));
        let dup = format!("ann {ANN}\nbob {ANN}");
        assert_eq!(Access::parse(&dup).err(), Some(AccessError::Duplicate(2)));
        assert_eq!(Access::parse(ANN).err(), Some(AccessError::Malformed(1)), "a bare token");
        assert!(Access::parse("").expect("empty").is_open());
    }

    #[test]
    fn a_public_origin_is_a_scheme_and_a_host_without_a_path() {
        let ok = parse_origin("HTTPS://Review.Example.com/").expect("an origin");
        assert_eq!(ok, "https://review.example.com");
        assert_eq!(parse_origin("http://[::1]:8080").as_deref(), Ok("http://[::1]:8080"));
        for bad in ["review.example.com", "ftp://x", "https://", "https://x/review", "https://a b"]
        {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
