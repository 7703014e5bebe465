//! The console over real HTTP: sessions, CSRF, origin checks and escaping; reviewers named by
//! their own tokens (never by what they type), short tokens refused at start, failed logins
//! limited per address, tenant scoping, a trusted proxy's user header (only from the proxy's
//! address), a configured public origin, and `/metrics` off loopback only with a token. Refusals
//! are console pages; a reviewer's edit survives every refusal and a console restart
//! (`console_review.rs`-like flows in a browser are in `console_browser/review.rs`).

mod common;

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

/// The item page of `path` and its CSRF token.
async fn item_page(b: &Browser, path: &str) -> (String, String) {
    let html = b.get(path).await.text().await.expect("body");
    let csrf = csrf_of(&html);
    (html, csrf)
}

fn decide_form(csrf: &str, decision: &str, answer: &str, note: &str) -> String {
    form(&[("csrf", csrf), ("decision", decision), ("answer", answer), ("note", note)])
}

/// Defects 2 and 3 of issue 24: an empty answer is never published, and a refused form gives
/// the reviewer her edit back with the reason; the page names the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_answer_is_refused_and_every_refusal_keeps_the_reviewers_edit() {
    let h = Harness::start(&topology(&unique("ce"))).await;
    needs_human(&h, "doc-002", "acme", "Can I get a refund?").await;
    let c = start(&h, Duration::from_secs(600)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let (_, csrf) = item_page(&b, "/review").await;
    let r = b.post("/review/item/0/0/claim", form(&[("csrf", &csrf)]), None).await;
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    let (html, _) = item_page(&b, "/review/item/0/0?stage=review").await;
    assert!(html.contains("<title>doc-002 · sluice console</title>"), "{html}");
    assert!(html.contains("Claimed doc-002") && html.contains("min left"), "{html}");
    assert!(!html.contains("Your claim lasts until"), "no raw instant: {html}");
    let queue = b.get("/review").await.text().await.expect("body");
    assert!(
        queue.contains("<th>Waiting</th><th>Claimed</th>")
            && queue.contains("<td>acme</td><td>0</td><td>1</td>"),
        "a claimed item does not count as waiting: {queue}"
    );

    let decide = "/review/item/0/0/decide?stage=review";
    let mut bob = Browser::new(&c);
    assert_eq!(bob.login("bob", "").await, 303);
    let (_, bobs) = item_page(&bob, "/review").await;
    let r = bob.post(decide, decide_form(&bobs, "approve", "bob wrote this", ""), None).await;
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    let (html, _) = item_page(&bob, "/review/item/0/0?stage=review").await;
    assert!(html.contains("ann holds this item until") && html.contains("min left)"), "{html}");
    assert!(!html.contains("lapsed"), "he never held it: {html}");
    assert!(html.contains(">bob wrote this</textarea>"), "his text, to copy: {html}");
    for blank in ["", "   ", " \r\n\t "] {
        let r = b.post(decide, decide_form(&csrf, "approve", blank, ""), None).await;
        assert_eq!(r.status(), 303, "{blank:?}");
        assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review", "back to the item");
        let (html, _) = item_page(&b, "/review/item/0/0?stage=review").await;
        assert!(html.contains("an approved answer cannot be empty"), "{html}");
        assert!(html.contains(r#"id="decide""#), "the form is kept");
    }
    let approved = format!("{}.approved", h.topology.pipeline);
    assert!(decisions(&h, &approved).await.is_empty(), "no empty answer was published");

    let edit = "Refunds take <b>5</b> days (edited)";
    let r = b.post(decide, decide_form(&csrf, "reject", edit, "  "), None).await;
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    let (html, _) = item_page(&b, "/review/item/0/0?stage=review").await;
    assert!(html.contains("A rejection needs a note"), "{html}");
    assert!(html.contains("Refunds take &lt;b&gt;5&lt;/b&gt; days (edited)</textarea>"), "{html}");
    assert!(html.contains(r#"id="draft-kept""#), "{html}");
    let again = b.get("/review/item/0/0?stage=review").await.text().await.expect("body");
    assert!(!again.contains("(edited)"), "a kept edit is shown once; then the script keeps it");

    let r = b.post(decide, decide_form(&csrf, "approve", edit, ""), None).await;
    assert_eq!(r.headers()["location"], "/review");
    let queue = b.get("/review").await.text().await.expect("body");
    assert!(queue.contains("Approved doc-002"), "the flash names the document: {queue}");
    let written = decisions(&h, &approved).await;
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].3, edit);
}

/// Defect 3 of issue 24: a console restart ends every session. The reviewer's Approve is
/// answered with a page to log in again that carries her edit; logging in brings her back to
/// her item, still claimed by her, with her edit in the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_console_restart_the_reviewer_logs_in_again_and_finds_her_claim_and_her_edit() {
    let h = Harness::start(&topology(&unique("cz"))).await;
    needs_human(&h, "doc-007", "acme", "Where is my parcel?").await;
    // Two console processes: the second, like the first after a restart, knows no session of
    // hers. (Started together: a console started next to a running one, or right after one
    // stopped, waits out the group membership of the other, ~45 s on the embedded broker.)
    let ttl = Duration::from_secs(600);
    let (first, second) = tokio::join!(start(&h, ttl), start(&h, ttl));
    assert!(wait_until(TIMEOUT, || async { pending(&first).await.len() == 1 }).await);
    let mut b = Browser::new(&first);
    assert_eq!(b.login("ann", "").await, 303);
    let (_, csrf) = item_page(&b, "/review").await;
    b.post("/review/item/0/0/claim", form(&[("csrf", &csrf)]), None).await;
    first.stop().await;
    let key = sluice::console::ledger::ItemKey { partition: 0, offset: 0 };
    let claimed = || {
        let state = second.app.queues[0].state();
        state.item_state(key).holder_at(sluice::call::now_ms()).is_some()
    };
    assert!(wait_until(TIMEOUT, || async { claimed() }).await, "the claim is read back");
    b.base = format!("http://{}", second.addr);
    let r = b.get("/review/item/0/0?stage=review").await;
    let login = "/login?draft_stage=review&draft_item=0%2F0";
    assert_eq!(r.headers()["location"], login, "a reload of her item: log in, then back to it");
    let page = b.get(login).await.text().await.expect("body");
    assert!(page.contains(r#"name="draft_item" value="0/0""#), "{page}");
    let edit = "It left the depot today (edited before the restart)";
    let decide = "/review/item/0/0/decide?stage=review";
    let r = b.post(decide, decide_form(&csrf, "approve", edit, "checked"), None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let page = r.text().await.expect("body");
    assert!(page.contains("Your session has ended") && page.contains(r#"id="login""#), "{page}");
    assert!(page.contains(edit) && page.contains(r#"name="draft_item" value="0/0""#), "{page}");
    assert!(!page.contains("nav-review"), "no navigation before login");

    let relogin = form(&[
        ("reviewer", "ann"),
        ("draft_stage", "review"),
        ("draft_item", "0/0"),
        ("draft_answer", edit),
        ("draft_note", "checked"),
    ]);
    let r = b.post("/login", relogin, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review", "back to her item");
    b.cookie =
        r.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("pair").into();
    let (html, csrf) = item_page(&b, "/review/item/0/0?stage=review").await;
    assert!(html.contains(r#"id="decide""#), "her claim is still hers: {html}");
    assert!(html.contains(&format!("{edit}</textarea>")) && html.contains(">checked</textarea>"));
    let r = b.post(decide, decide_form(&csrf, "approve", edit, "checked"), None).await;
    assert_eq!(r.headers()["location"], "/review");
    let written = decisions(&h, &format!("{}.approved", h.topology.pipeline)).await;
    assert_eq!(written.len(), 1);
    assert_eq!((written[0].1.as_str(), written[0].3.as_str()), ("ann", edit));
}

/// Item 12 of issue 24: refusals, unknown paths and the icon are console pages; the login page
/// shows no navigation; an empty queue says so; behind a proxy that rewrites Host, forms from
/// the configured public origin pass the Origin check and others still do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_and_unknown_paths_are_console_pages_and_a_public_origin_passes_the_origin_check()
{
    let h = Harness::start(&topology(&unique("co"))).await;
    let c = start_opts(&h, |o| {
        o.access.public_origin = Some("https://review.example.com".into());
    })
    .await;
    let mut b = Browser::new(&c);
    let icon = b.get("/favicon.ico").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    let login = b.get("/login").await.text().await.expect("body");
    assert!(!login.contains("<nav>") && !login.contains("nav-review"), "{login}");
    assert!(login.contains(r#"rel="icon""#));
    let lost = b.get("/no/such/page").await;
    assert_eq!(lost.status(), 404);
    let text = lost.text().await.expect("body");
    assert!(text.contains("Page not found") && text.contains(r#"href="/review""#), "{text}");

    let proxied = |b: &Browser, origin: &'static str| {
        b.http
            .post(format!("{}/login", b.base))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("reviewer=ann")
            .send()
    };
    let refused = proxied(&b, "https://evil.example").await.expect("POST");
    assert_eq!(refused.status(), 403);
    let text = refused.text().await.expect("body");
    assert!(text.contains("--public-origin") && text.contains("<html"), "{text}");
    let ok = proxied(&b, "https://review.example.com").await.expect("POST");
    assert_eq!(ok.status(), 303, "the public origin passes though Host is the upstream's");
    let cookie = ok.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cookie.ends_with("; Secure"), "reached over https: {cookie}");
    b.cookie = cookie.split(';').next().expect("pair").to_owned();

    let queue = b.get("/review").await.text().await.expect("body");
    assert!(queue.contains("No items waiting for review"), "{queue}");
    assert!(queue.contains(r#"<button type="submit" disabled>Filter</button>"#), "{queue}");
    assert!(queue.contains("nav-review"), "the navigation once logged in");
    let stale = b.post("/review/item/0/0/claim", form(&[("csrf", "old")]), None).await;
    assert_eq!(stale.status(), 403);
    let text = stale.text().await.expect("body");
    assert!(text.contains("out of date") && text.contains(r#"href="/review""#), "{text}");
    let lost = b.get("/no/such/page").await.text().await.expect("body");
    assert!(lost.contains("nav-review"), "a logged-in reviewer keeps her navigation");
}

/// A decision sent after her claim lapsed is refused with her text kept: the item page shows it,
/// and claiming the item again brings it back into the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_sent_after_the_claim_lapsed_comes_back_with_the_claim() {
    let h = Harness::start(&topology(&unique("cy"))).await;
    needs_human(&h, "doc-009", "acme", "Is my order shipped?").await;
    let ttl = Duration::from_secs(2);
    let c = start(&h, ttl).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let (_, csrf) = item_page(&b, "/review").await;
    b.post("/review/item/0/0/claim", form(&[("csrf", &csrf)]), None).await;
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let edit = "Shipped on Tuesday (edited after the claim lapsed)";
    let decide = "/review/item/0/0/decide?stage=review";
    let r = b.post(decide, decide_form(&csrf, "approve", edit, "late"), None).await;
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    let (html, _) = item_page(&b, "/review/item/0/0?stage=review").await;
    assert!(html.contains("your claim on this item lapsed"), "{html}");
    assert!(html.contains(&format!(r#"id="kept-answer" readonly rows="6">{edit}</textarea>"#)));
    assert!(html.contains(&format!(r#"name="draft_answer" value="{edit}""#)), "{html}");
    let claim = form(&[("csrf", &csrf), ("draft_answer", edit), ("draft_note", "late")]);
    let r = b.post("/review/item/0/0/claim?stage=review", claim, None).await;
    assert_eq!(r.headers()["location"], "/review/item/0/0?stage=review");
    let (html, _) = item_page(&b, "/review/item/0/0?stage=review").await;
    assert!(html.contains(r#"id="decide""#) && html.contains(&format!("{edit}</textarea>")));
    assert!(html.contains(">late</textarea>"), "{html}");
}
