//! A reviewer's edit is never lost: every refusal keeps it, a console restart does not end her
//! claim, refusals and unknown paths are console pages (issue 24).

use std::time::Duration;

use crate::common::console::*;
use crate::common::{unique, wait_until, Harness};

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
