//! The review flow in a real browser (issue 24, "never lose a reviewer's work"), through
//! `tools/browser/review.mjs` against a console on the embedded broker: an empty answer is
//! refused (by the page's script, and by the server when the script is bypassed); an unsent edit
//! survives leaving the page and a lost session (the cookie gone, as after a console restart):
//! logging in again brings the reviewer back to her item, still claimed by her, with her edit;
//! the item page is titled with the document's id and its Approve button is in view at
//! 1280×800; and no console page overflows sideways at 390 px. Then the approved topic must hold
//! the edit, and no empty answer.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::console::{decisions, needs_human, pending, start_opts, topology, TIMEOUT};
use crate::common::{unique, wait_until, Harness};

const EDIT: &str = "It left the depot today and arrives tomorrow (edited by a reviewer).";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/browser: scripts/browser cargo test --test console_browser -- --include-ignored"]
async fn a_reviewers_edit_survives_refusals_and_a_lost_session_and_pages_fit_a_phone() {
    std::env::var("SLUICE_BROWSER_FLOW")
        .expect("SLUICE_BROWSER_FLOW is set by scripts/browser (run the test through it)");
    let flow = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/browser/review.mjs");
    let h = Harness::start(&topology(&unique("rv"))).await;
    needs_human(&h, "doc-parcel", "acme", "Where is my parcel? It was due on Monday.").await;
    let long = format!(
        "{}\n\nSee https://support.example.com/{} for the order.",
        "My invoice shows a charge I do not recognise. ".repeat(12),
        "a".repeat(120)
    );
    needs_human(&h, "doc-long", "globex", &long).await;
    let c = start_opts(&h, |o| o.claim_ttl = Duration::from_secs(600)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 2 }).await);
    let tmp = tempfile::tempdir().expect("tmp");
    let shots = std::env::var("SLUICE_CONSOLE_SCREENSHOTS")
        .unwrap_or_else(|_| tmp.path().display().to_string());
    let env: HashMap<&'static str, String> = [
        ("CONSOLE_URL", format!("http://{}", c.addr)),
        ("CONSOLE_DOC", "doc-parcel".into()),
        ("CONSOLE_LONG_DOC", "doc-long".into()),
        ("CONSOLE_EDITED_ANSWER", EDIT.into()),
        ("SCREENSHOT_DIR", shots),
    ]
    .into_iter()
    .collect();
    crate::common::browser::run_flow(&flow, env).await;
    let approved = decisions(&h, &format!("{}.approved", h.topology.pipeline)).await;
    let answers: Vec<(&str, &str)> =
        approved.iter().map(|d| (d.0.as_str(), d.3.as_str())).collect();
    assert_eq!(answers, [("doc-parcel", EDIT)], "the edit, once, and no empty answer");
    assert_eq!(approved[0].1, "alice");
    c.stop().await;
}
