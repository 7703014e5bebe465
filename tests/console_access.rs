//! The console over real HTTP: sessions, CSRF, origin checks and escaping; reviewers named by
//! their own tokens (never by what they type), short tokens refused at start, failed logins
//! limited per address, tenant scoping, a trusted proxy's user header (only from the proxy's
//! address), a configured public origin, and `/metrics` off loopback only with a token. Refusals
//! are console pages; a reviewer's edit survives every refusal and a console restart
//! (`console_review.rs`-like flows in a browser are in `console_browser/review.rs`).

mod common;
#[path = "console_access/edits.rs"]
mod edits;

use std::time::Duration;

use common::console::*;
use common::{unique, wait_until, Harness};
use sluice::console::access::Access;
use sluice::console::{self, ConsoleError, ConsoleOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_post_needs_the_session_and_its_csrf_token_and_record_text_is_inert() {
    let h = Harness::start(&topology(&unique("ch"))).await;
    needs_human(
        &h,
        "x1",
        "acme",
        "<script>window.pwned=1</script><img src=x onerror=\"alert(1)\">",
    )
    .await;
    let c = start(&h, Duration::from_secs(60)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let mut b = Browser::new(&c);

    let r = b.get("/review").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let rebound = b.http.get(format!("{}/login", b.base)).header("host", "evil.example").send();
    assert_eq!(rebound.await.expect("GET").status(), 421, "a DNS-rebound host name is refused");
    let claim = "/review/item/0/0/claim";
    assert_eq!(b.post(claim, form(&[("csrf", "guess")]), None).await.status(), 401, "no session");

    assert_eq!(b.login("", "").await, 401, "a reviewer must say who they are");
    assert_eq!(b.login("ann", "").await, 303);
    let r = b.get("/review").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = r.text().await.expect("body");
    assert!(html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"), "escaped");
    assert!(!html.contains("<script>window") && !html.contains("<img src=x"), "no live markup");
    let csrf = csrf_of(&html);

    assert_eq!(b.post(claim, String::new(), None).await.status(), 403, "no token");
    assert_eq!(b.post(claim, form(&[("csrf", "0000")]), None).await.status(), 403, "wrong token");
    let evil = b.post(claim, form(&[("csrf", &csrf)]), Some("http://evil.example")).await;
    assert_eq!(evil.status(), 403, "another origin");
    assert_eq!(h.count(&claims).await, 0, "nothing refused reached Kafka");

    let own = format!("http://{}", c.addr);
    let r = b.post(claim, form(&[("csrf", &csrf)]), Some(&own)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    assert_eq!(h.count(&claims).await, 1, "the claim is in Kafka");
    let page = b.get("/review/item/0/0").await.text().await.expect("body");
    assert!(page.contains(r#"id="decide""#) && page.contains("generated answer for x1"));
    let reject = form(&[("csrf", &csrf), ("decision", "reject"), ("answer", "x"), ("note", "")]);
    b.post("/review/item/0/0/decide", reject, None).await;
    assert_eq!(h.count(&claims).await, 1, "a rejection without a note is refused before Kafka");
}

const ANN: &str = "ann-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

/// This machine's address on its default route: requests to it come from it, not loopback.
fn own_address() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.connect("203.0.113.1:9").expect("a default route");
    s.local_addr().expect("local").ip()
}

/// A console on every address, admitting `access`.
async fn guarded(
    h: &Harness,
    access: Access,
    adjust: impl FnOnce(&mut ConsoleOptions),
) -> console::Console {
    start_opts(h, |o| {
        o.addr = "0.0.0.0:0".parse().expect("addr");
        o.access = access;
        adjust(o);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_loopback_the_console_needs_reviewers_tokens_and_checks_them() {
    let h = Harness::start(&topology(&unique("ct"))).await;
    let open = options(|o| o.addr = "0.0.0.0:0".parse().expect("addr"));
    let refused = console::start(&h.topology, open).await.err().expect("refused");
    assert!(matches!(refused, ConsoleError::TokenRequired(_)), "{refused}");
    let access = Access::parse(&format!("ann {ANN}")).expect("access");
    let c = guarded(&h, access, |_| {}).await;
    let mut b = Browser::new(&c);
    b.base = format!("http://127.0.0.1:{}", c.addr.port());
    let login = b.get("/login").await.text().await.expect("body");
    assert!(login.contains(r#"name="token""#), "the login form asks for the token");
    assert!(!login.contains(r#"name="reviewer""#), "and not for a name: the token names you");
    assert_eq!(b.login("ann", "wrong").await, 401);
    assert_eq!(b.login("ann", "").await, 401);
    assert!(b.cookie.is_empty(), "no session without the token");
    assert_eq!(b.login("ann", ANN).await, 303);
    assert_eq!(b.get("/review").await.status(), 200);
}

#[test]
fn a_short_token_in_the_access_file_stops_the_console_before_it_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("access");
    std::fs::write(&file, "ann short-token-here\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["console", "--topology", "topologies/support-rag.yaml", "--access-file"])
        .arg(&file)
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 1") && stderr.contains("shorter than 24"), "{stderr}");
    assert!(!stderr.contains("short-token-here"), "the token is not echoed: {stderr}");
}

#[test]
fn a_public_origin_that_is_not_one_stops_the_console_before_it_starts() {
    let console = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.args(["console", "--topology", "topologies/support-rag.yaml"])
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1");
        c
    };
    let flag = console().args(["--public-origin", "review.example.com/console"]).output();
    let env = console().env("SLUICE_CONSOLE_PUBLIC_ORIGIN", "https://x/console").output();
    for out in [flag.expect("run"), env.expect("run")] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("is not an origin") && stderr.contains("https://"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_names_its_reviewer_and_a_scoped_reviewer_sees_and_decides_only_their_tenants() {
    let h = Harness::start(&topology(&unique("cs"))).await;
    needs_human(&h, "d-acme", "acme", "acme question").await;
    needs_human(&h, "d-globex", "globex", "globex question").await;
    let access = Access::parse(&format!("ann {ANN} acme\nbob {BOB}")).expect("access");
    let c = guarded(&h, access, |_| {}).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 2 }).await);
    let mut ann = Browser::new(&c);
    ann.base = format!("http://127.0.0.1:{}", c.addr.port());
    assert_eq!(ann.login("mallory", ANN).await, 303, "the typed name is ignored");
    let html = ann.get("/review").await.text().await.expect("body");
    assert!(html.contains("d-acme") && !html.contains("d-globex"), "ann sees acme only");
    let letters = ann.get("/dead-letters").await.status();
    assert_eq!(letters, 403, "dead letters hold every tenant's records");
    for pipeline in ["/pipeline", "/pipeline/table"] {
        let r = ann.get(pipeline).await;
        assert_eq!(r.status(), 403, "{pipeline}: every tenant's spend and queue depth");
        let text = r.text().await.expect("body");
        assert!(!text.contains("globex") && !text.contains("stages"), "{text}");
    }
    let csrf = csrf_of(&html);
    // d-globex is the second record: 0/1.
    assert_eq!(ann.get("/review/item/0/1").await.status(), 403, "not her tenant's item");
    let claim = ann.post("/review/item/0/1/claim", form(&[("csrf", &csrf)]), None).await;
    assert_eq!(claim.status(), 403, "nor can she claim it");
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    assert_eq!(h.count(&claims).await, 0, "nothing refused reached Kafka");
    let r = ann.post("/review/item/0/0/claim", form(&[("csrf", &csrf)]), None).await;
    assert_eq!(r.status(), 303);
    let approve = form(&[("csrf", &csrf), ("decision", "approve"), ("note", "")]);
    assert_eq!(ann.post("/review/item/0/0/decide", approve, None).await.status(), 303);
    let approved = format!("{}.approved", h.topology.pipeline);
    let written = decisions(&h, &approved).await;
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!((written[0].0.as_str(), written[0].1.as_str()), ("d-acme", "ann"));
    let mut bob = Browser::new(&c);
    bob.base = ann.base.clone();
    assert_eq!(bob.login("", BOB).await, 303);
    let html = bob.get("/review").await.text().await.expect("body");
    assert!(html.contains("d-globex"), "bob sees every tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_lock_the_address_out_for_the_minute_at_the_configured_count() {
    let h = Harness::start(&topology(&unique("cr"))).await;
    let failures = 3;
    let access = Access::parse(&format!("ann {ANN}")).expect("access");
    let c = guarded(&h, access, |o| o.limits.login_failures_per_minute = failures).await;
    let mut b = Browser::new(&c);
    b.base = format!("http://127.0.0.1:{}", c.addr.port());
    for _ in 0..failures {
        assert_eq!(b.login("", "guess-guess-guess-guess-guess").await, 401);
    }
    assert_eq!(b.login("", ANN).await, 429, "locked out, even with the right token");
    assert!(b.cookie.is_empty());
    let mut other = Browser::new(&c);
    other.base = format!("http://{}:{}", own_address(), c.addr.port());
    assert_eq!(other.login("", ANN).await, 303, "another address is not locked out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trusted_proxy_names_the_reviewer_only_from_its_address_and_metrics_need_a_token() {
    let h = Harness::start(&topology(&unique("cp"))).await;
    needs_human(&h, "d-acme", "acme", "acme question").await;
    let proxy = own_address();
    let mut access = Access::parse(&format!("ann {ANN}\ncarol - acme")).expect("access");
    access.proxy =
        Some(sluice::console::access::Proxy { addr: proxy, header: "x-forwarded-user".into() });
    let c = guarded(&h, access, |_| {}).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let via_proxy = format!("http://{proxy}:{}", c.addr.port());
    let direct = format!("http://127.0.0.1:{}", c.addr.port());
    let login = |base: &str, user: &str| {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        http.post(format!("{base}/login"))
            .header("x-forwarded-user", user)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("proxied=1")
            .send()
    };
    let forged = login(&direct, "carol").await.expect("POST");
    assert_eq!(forged.status(), 401, "the header counts only from the proxy's address");
    let stranger = login(&via_proxy, "mallory").await.expect("POST");
    assert_eq!(stranger.status(), 401, "the proxy names someone the access file does not list");
    let ok = login(&via_proxy, "carol").await.expect("POST");
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().expect("ascii");
    let cookie = cookie.split(';').next().expect("pair").to_owned();
    let page = |user: &'static str| {
        reqwest::Client::new()
            .get(format!("{via_proxy}/review"))
            .header("cookie", &cookie)
            .header("x-forwarded-user", user)
            .send()
    };
    let html = page("carol").await.expect("GET").text().await.expect("body");
    assert!(html.contains("carol") && html.contains("d-acme"), "{html}");
    let other = page("dave").await.expect("GET").text().await.expect("body");
    assert!(other.contains(r#"id="login""#), "the session ends when the proxy names another user");

    let metrics = |base: &str, bearer: Option<&str>| {
        let mut r = reqwest::Client::new().get(format!("{base}/metrics"));
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(metrics(&via_proxy, None).await.expect("GET").status(), 401, "off loopback");
    assert_eq!(metrics(&via_proxy, Some("guess")).await.expect("GET").status(), 401);
    assert_eq!(metrics(&via_proxy, Some(ANN)).await.expect("GET").status(), 200);
    assert_eq!(metrics(&direct, None).await.expect("GET").status(), 200, "on loopback");
}

/// Behind a proxy on the same host (`--trusted-proxy 127.0.0.1`) every request comes from
/// loopback: `/metrics` still needs a session or a token, and failed logins count against the
/// client the proxy names in `X-Forwarded-For` (its last entry), not against the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_same_host_proxy_metrics_need_a_token_and_failed_logins_count_per_client() {
    let h = Harness::start(&topology(&unique("cx"))).await;
    let failures = 3;
    let mut access = Access::parse(&format!("ann {ANN}")).expect("access");
    let addr = "127.0.0.1".parse().expect("ip");
    access.proxy = Some(sluice::console::access::Proxy { addr, header: "x-forwarded-user".into() });
    let c = guarded(&h, access, |o| o.limits.login_failures_per_minute = failures).await;
    let base = format!("http://127.0.0.1:{}", c.addr.port());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("GET");
    assert_eq!(metrics.status(), 401, "the proxy's loopback address is not the operator's");
    let bearer = http.get(format!("{base}/metrics")).bearer_auth(ANN).send().await.expect("GET");
    assert_eq!(bearer.status(), 200);
    let login = |client: &'static str, token: &'static str| {
        http.post(format!("{base}/login"))
            .header("x-forwarded-for", format!("198.51.100.1, {client}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", token)]))
            .send()
    };
    for _ in 0..failures {
        assert_eq!(
            login("203.0.113.7", "guess-guess-guess-guess-guess").await.expect("POST").status(),
            401
        );
    }
    let locked = login("203.0.113.7", ANN).await.expect("POST");
    assert_eq!(locked.status(), 429, "the guessing client is locked out");
    let other = login("203.0.113.8", ANN).await.expect("POST");
    assert_eq!(other.status(), 303, "another client of the same proxy is not");
}
