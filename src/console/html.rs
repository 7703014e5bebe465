//! HTML by hand: every piece of text from a record, a reviewer or an error goes through [`esc`];
//! [`page`] wraps a body in the layout. No inline script or style: the Content-Security-Policy
//! [`super::server`] sends allows only the console's own assets.

use std::fmt::Write;

use super::auth::Session;

/// Escapes text for an element's content or a quoted attribute value.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component.
pub fn url(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(session: &Session) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(&session.csrf))
}

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Review,
    DeadLetters,
    Pipeline,
    None,
}

/// A whole page; the navigation and the reviewer's name only with a session.
pub fn page(
    title: &str,
    nav: Nav,
    session: Option<&Session>,
    flash: Option<(bool, String)>,
    body: &str,
) -> String {
    let link = |id: &str, href: &str, label: &str, this: Nav| {
        let current = if nav == this { r#" aria-current="page""# } else { "" };
        format!(r#"<a id="{id}" href="{href}"{current}>{label}</a>"#)
    };
    let links = session.map_or(String::new(), |s| {
        let mut out = link("nav-review", "/review", "Review queue", Nav::Review);
        // Scoped reviewers are refused the pages of every tenant: no links to them.
        if s.tenants.is_none() {
            out.push_str(&link("nav-dlq", "/dead-letters", "Dead letters", Nav::DeadLetters));
            out.push_str(&link("nav-pipeline", "/pipeline", "Pipeline", Nav::Pipeline));
        }
        format!("<nav>{out}</nav>")
    });
    let who = session.map_or(String::new(), |s| {
        format!(
            r#"<form method="post" action="/logout" class="who"><span>{}</span>{}<button type="submit">Log out</button></form>"#,
            esc(&s.reviewer),
            csrf_field(s)
        )
    });
    let flash = flash.map_or(String::new(), |(error, text)| {
        let class = if error { "flash error" } else { "flash" };
        format!(r#"<p class="{class}" role="status">{}</p>"#, esc(&text))
    });
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · sluice console</title>
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head><body>
<header class="top"><strong class="brand">sluice</strong>{links}{who}</header>
<main>{flash}<h1>{title}</h1>
{body}</main></body></html>"#,
        title = esc(title),
    )
}

/// `<option>`s of a select, the current value selected; the first is "all" (empty value).
pub fn options(
    all: &str,
    values: impl IntoIterator<Item = String>,
    current: Option<&str>,
) -> String {
    let mut out = format!(r#"<option value="">{}</option>"#, esc(all));
    for v in values {
        let sel = if current == Some(v.as_str()) { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{0}"{sel}>{0}</option>"#, esc(&v));
    }
    out
}

/// Milliseconds since the epoch as RFC 3339, or a dash.
pub fn time(ms: Option<i64>) -> String {
    ms.map_or("—".into(), crate::time::rfc3339)
}

/// The time of day of an instant, `14:05 UTC`.
pub fn clock(ms: i64) -> String {
    let t = crate::time::rfc3339_short(ms);
    format!("{} UTC", t.get(11..16).unwrap_or(&t))
}

/// How long a claim has left, `9 min left`, rounded up (a claim with 10 s left has `1 min`).
pub fn left(ms: i64) -> String {
    let minutes = (ms.max(0) + 59_999) / 60_000;
    match minutes {
        0 => "lapsed".into(),
        1..60 => format!("{minutes} min left"),
        _ => format!("{} h {} min left", minutes / 60, minutes % 60),
    }
}

/// A claim's remaining time as the page shows it (counted down by the page's script) and
/// until when.
pub fn claim_left(expires_ms: i64, now_ms: i64) -> String {
    format!(
        r#"<span class="left" data-left-ms="{}" title="until {}">{}</span>"#,
        expires_ms - now_ms,
        clock(expires_ms),
        left(expires_ms - now_ms)
    )
}

/// An age in seconds as `1h 2m`, `3m 4s` or `5s`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_inert() {
        let hostile = r#"<script>alert('x')</script><img src=x onerror="y">&"#;
        let out = esc(hostile);
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"'), "{out}");
        assert_eq!(
            out,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=&quot;y&quot;&gt;&amp;"
        );
        let page = page("<b>t</b>", Nav::None, None, Some((true, "<i>".into())), "");
        assert!(page.contains("&lt;b&gt;t&lt;/b&gt;") && page.contains("&lt;i&gt;"));
        assert!(!page.contains("<b>") && !page.contains("<i>"));
        assert_eq!(url("a b&c=/é"), "a%20b%26c%3D%2F%C3%A9");
        assert_eq!(options("all", ["<x>".to_owned()], Some("<x>")).matches("&lt;x&gt;").count(), 2);
        assert_eq!((age(59), age(61), age(3_700)), ("59s".into(), "1m 1s".into(), "1h 1m".into()));
    }

    #[test]
    fn a_claim_says_how_long_it_has_left() {
        assert_eq!(left(540_000), "9 min left");
        assert_eq!(left(10_000), "1 min left", "rounded up: never 0 min while it holds");
        assert_eq!(left(0), "lapsed");
        assert_eq!(left(-5), "lapsed");
        assert_eq!(left(3_700_000), "1 h 2 min left");
        assert_eq!(clock(1_795_702_980_000), "14:23 UTC");
    }

    #[test]
    fn the_navigation_is_shown_only_with_a_session() {
        let out = page("Log in", Nav::None, None, None, "");
        assert!(!out.contains("<nav>") && !out.contains("nav-review"), "{out}");
        assert!(out.contains(r#"rel="icon""#));
    }
}
