//! What the HTTP providers share: API keys that never print, and the mapping of a response's
//! status and headers to a [`ProviderError`] (Retry-After and rate-limit reset headers included).

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use super::{ProviderBuildError, ProviderError};
use crate::config::{HttpSpec, SecretSource};
use crate::retry::MAX_PARK;

/// An API key. `Debug` and `Display` print a placeholder, so it cannot reach a log by accident.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Reads a secret when the worker starts; the error names where it looked, never the value.
pub fn load_secret(source: &SecretSource) -> Result<ApiKey, ProviderBuildError> {
    let value = match source {
        SecretSource::Env(var) => {
            std::env::var(var).map_err(|_| ProviderBuildError::KeyEnvUnset { var: var.clone() })?
        }
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|source| ProviderBuildError::KeyFile { path: path.clone(), source })?,
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(match source {
            SecretSource::Env(var) => ProviderBuildError::KeyEnvEmpty { var: var.clone() },
            SecretSource::File(p) => ProviderBuildError::KeyFileEmpty { path: p.clone() },
        });
    }
    Ok(ApiKey(value))
}

/// One reqwest client per provider: pooled keep-alive connections, the provider's timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .expect("a reqwest client with only timeouts set always builds")
}

/// The configured extra headers of a provider.
pub fn base_headers(spec: &HttpSpec) -> Result<HeaderMap, ProviderBuildError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|source| ProviderBuildError::HeaderName { name: k.clone(), source })?;
        let value = HeaderValue::from_str(v)
            .map_err(|source| ProviderBuildError::HeaderValue { name: k.clone(), source })?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Adds a credential header, marked sensitive (hyper then keeps it out of its own debug output).
pub fn insert_secret(
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
) -> Result<(), ProviderBuildError> {
    let mut value =
        HeaderValue::from_str(value).map_err(|_| ProviderBuildError::KeyNotHeaderSafe)?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

/// POSTs JSON and returns the JSON answer, or the classified failure.
pub async fn post_json(
    client: &reqwest::Client,
    provider: &str,
    url: String,
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ProviderError> {
    let response = client
        .post(url)
        .headers(headers.clone())
        .json(body)
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let response_headers = response.headers().clone();
    let text = response.text().await.map_err(|e| transport_error(provider, &e))?;
    if !status.is_success() {
        return Err(status_error(provider, status, &response_headers, &text));
    }
    serde_json::from_str(&text)
        .map_err(|e| ProviderError::unavailable(format!("{provider}: response is not JSON: {e}")))
}

/// A transport failure: timeouts, refused and reset connections are worth retrying.
pub fn transport_error(provider: &str, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // reqwest's Display includes the URL but never headers, so no key can appear.
    ProviderError::Unavailable { message: format!("{provider}: {what}: {e}"), retry_after: None }
}

/// A non-success status, classified; `body` is the provider's error text (truncated).
pub fn status_error(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> ProviderError {
    let snippet: String = body.chars().take(300).collect();
    let message = format!("{provider}: HTTP {status}: {snippet}");
    let retry_after = retry_after(headers, SystemTime::now());
    match status.as_u16() {
        429 => ProviderError::RateLimited { message, retry_after },
        408 | 409 | 425 | 500..=599 => ProviderError::Unavailable { message, retry_after },
        401 | 403 => ProviderError::Unauthorized(message),
        _ => ProviderError::Rejected(message),
    }
}

/// How long the provider asks us to wait: `retry-after-ms`, `Retry-After` (seconds or an HTTP
/// date), OpenAI's `x-ratelimit-reset-requests`/`-tokens` (`1s`, `6m0s`, `20ms`) and Anthropic's
/// `anthropic-ratelimit-*-reset` (RFC 3339). The longest wait given wins, and no wait is longer
/// than [`MAX_PARK`] (the longest a record is ever parked).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let mut waits = Vec::new();
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        waits.extend(seconds(ms / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            waits.extend(seconds(secs));
        } else if let Ok(at) = httpdate_or_rfc3339(v) {
            waits.push(at.duration_since(now).unwrap_or_default());
        }
    }
    for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        if let Some(d) = get(name).and_then(go_duration) {
            waits.push(d);
        }
    }
    for name in [
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-reset",
    ] {
        if let Some(at) = get(name).and_then(|v| humantime::parse_rfc3339_weak(v).ok()) {
            waits.push(at.duration_since(now).unwrap_or_default());
        }
    }
    waits.into_iter().max().map(|w| w.min(MAX_PARK))
}

/// A wait in seconds as a header gives it, which may be anything `f64` parses: NaN is no wait,
/// a negative one none to speak of, and one past [`MAX_PARK`] (`inf` too) is [`MAX_PARK`].
fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs.max(0.0)).map_or(MAX_PARK, |d| d.min(MAX_PARK)))
}

fn httpdate_or_rfc3339(v: &str) -> Result<SystemTime, ()> {
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(t);
    }
    parse_http_date(v).ok_or(())
}

/// IMF-fixdate, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_http_date(v: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = MONTHS.iter().position(|x| x == month)? + 1;
    let text = format!("{year}-{m:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    humantime::parse_rfc3339(&text).ok()
}

/// Go-style durations as OpenAI sends them: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
fn go_duration(v: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    if any && num.is_empty() {
        seconds(total)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn reads_every_kind_of_wait_header() {
        let now = humantime::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
        let wait = |pairs: &[(&str, &str)]| retry_after(&headers(pairs), now);
        assert_eq!(wait(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(wait(&[("retry-after-ms", "150")]), Some(Duration::from_millis(150)));
        assert_eq!(
            wait(&[("retry-after", "Thu, 01 Jan 2026 00:00:07 GMT")]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(wait(&[("x-ratelimit-reset-requests", "6m0s")]), Some(Duration::from_secs(360)));
        assert_eq!(wait(&[("x-ratelimit-reset-tokens", "20ms")]), Some(Duration::from_millis(20)));
        assert_eq!(
            wait(&[("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:03Z")]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            wait(&[("retry-after", "1"), ("x-ratelimit-reset-tokens", "1.5s")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(wait(&[("retry-after", "soon")]), None);
    }

    #[test]
    fn absurd_waits_are_capped_and_nan_is_no_wait() {
        let now = humantime::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
        let wait = |pairs: &[(&str, &str)]| retry_after(&headers(pairs), now);
        for header in ["retry-after", "retry-after-ms"] {
            for huge in ["inf", "+Infinity", "1e20", "1e300"] {
                assert_eq!(wait(&[(header, huge)]), Some(MAX_PARK), "{header}: {huge}");
            }
            for nan in ["NaN", "nan", "-NaN"] {
                assert_eq!(wait(&[(header, nan)]), None, "{header}: {nan}");
            }
            for negative in ["-1", "-inf", "-1e20"] {
                assert_eq!(
                    wait(&[(header, negative)]),
                    Some(Duration::ZERO),
                    "{header}: {negative}"
                );
            }
        }
        assert_eq!(
            wait(&[("retry-after", "NaN"), ("retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        let long = "9".repeat(400) + "h";
        assert_eq!(
            wait(&[("x-ratelimit-reset-requests", "99999999999999999999h")]),
            Some(MAX_PARK)
        );
        assert_eq!(wait(&[("x-ratelimit-reset-tokens", &long)]), Some(MAX_PARK));
        assert_eq!(wait(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]), Some(MAX_PARK));
    }

    #[test]
    fn keys_never_print() {
        let k = ApiKey("sk-secret".into());
        assert!(!format!("{k:?}").contains("sk-secret"));
    }

    #[test]
    fn statuses_map_to_what_to_do() {
        let h = headers(&[("retry-after", "1")]);
        let e = |s: u16| status_error("p", StatusCode::from_u16(s).expect("status"), &h, "x");
        assert!(matches!(e(429), ProviderError::RateLimited { retry_after: Some(_), .. }));
        assert!(matches!(e(503), ProviderError::Unavailable { .. }));
        assert!(matches!(e(408), ProviderError::Unavailable { .. }));
        assert!(matches!(e(401), ProviderError::Unauthorized(_)));
        assert!(matches!(e(400), ProviderError::Rejected(_)));
    }
}
