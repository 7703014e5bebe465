//! The pipeline page on the embedded broker, which has no admin API: the page says so in its own
//! words (no command-line backticks, no placeholder), and it answers from the background sample
//! rather than asking the broker on the request.

use super::common::console::{start, Browser, TIMEOUT};
use super::common::{unique, wait_until, Harness};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_broker_the_pipeline_page_says_what_to_do_in_its_own_words() {
    let h = Harness::start(&super::common::console::topology(&unique("cpipe"))).await;
    let c = start(&h, Duration::from_secs(60)).await;
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let table = || async { b.get("/pipeline/table").await.text().await.expect("body") };
    assert!(
        wait_until(TIMEOUT, || async { table().await.contains(r#"id="no-admin-api""#) }).await,
        "{}",
        table().await
    );
    let page = b.get("/pipeline").await.text().await.expect("body");
    let at = page.find(r#"id="no-admin-api""#).expect("the message");
    let message = &page[at..page[at..].find("</div>").map_or(page.len(), |end| at + end)];
    assert!(!message.contains('`'), "no command-line backticks on a page: {message}");
    assert!(!message.contains("--topology T"), "no placeholder: {message}");
    assert!(message.contains("<code>scripts/with-kafka sluice dev --topology</code>"), "{message}");
    assert!(message.contains(&h.topology.kafka.bootstrap_servers), "{message}");
    assert!(page.contains(r#"id="sampled" data-taken-ms=""#), "the sample's age is shown");
    c.stop().await;
}
