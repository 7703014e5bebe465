//! The dead-letter pages in a real browser (`tools/browser/dead_letters.mjs`), on the embedded
//! broker: a PERMANENT letter written as a stage writes it; the page opens on its stage, fits a
//! phone, warns before the redrive and needs the confirmation, and shows the letter redriven.

use std::time::Duration;

use crate::common::console::start_opts;
use crate::common::letters::{letter, write_letters};
use crate::common::{document, Harness, OneStage};
use sluice::avro::DeadLetterClass;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/browser: scripts/browser cargo test --test console_browser -- --include-ignored"]
async fn a_redriven_letter_is_shown_as_such_and_the_page_fits_a_phone() {
    let flow = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/browser/dead_letters.mjs");
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml()).await;
    let (codec, input) = (h.codec().await, h.input());
    let value =
        h.encode(&codec, &input, &document("doc-1", "acme", "a long text ".repeat(40).trim()));
    let mut l = letter(&h, "doc-1", Some(value));
    l.error_class = DeadLetterClass::Permanent;
    l.error_message = format!("content policy: {}", "x".repeat(300));
    write_letters(&h, &[l]).await;
    let c = start_opts(&h, |_| {}).await;
    let mut env = vec![
        ("CONSOLE_URL", format!("http://{}", c.addr)),
        ("CONSOLE_DLQ_STAGE", "work".to_owned()),
        ("CONSOLE_DLQ_AT", "0:0".to_owned()),
    ];
    // With SLUICE_CONSOLE_SCREENSHOTS=DIR the flow's screenshots (dlq-*.png) are kept there.
    if let Ok(dir) = std::env::var("SLUICE_CONSOLE_SCREENSHOTS") {
        env.push(("SCREENSHOT_DIR", dir));
    }
    crate::common::browser::run_flow(&flow, env).await;
    assert!(
        crate::common::wait_until(Duration::from_secs(10), || async { h.count(&input).await == 1 })
            .await,
        "the letter's record went back to the input"
    );
}
