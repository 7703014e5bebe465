//! The pipeline page in Chromium (`tools/browser/pipeline.mjs`) on Apache Kafka: two stages, the
//! second's dead-letter topic never created. The page must show both rows from its background
//! sample, the second highlighted with the reason, plots without a CSP violation, and on a phone
//! cards with no sideways overflow.

use std::collections::HashMap;
use std::time::Duration;

use super::common::{unique, Harness};

fn two_stages(p: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka: {{ partitions: 2 }}
providers: {{ sim: {{ kind: simulated, latency: 1ms }} }}
inputs: {{ {p}.docs: {{ partitions: 2 }} }}
stages:
  embed:
    kind: classify
    input: {p}.docs
    output: {p}.mid
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, other] }}
  answer:
    kind: classify
    input: {p}.mid
    output: {p}.out
    model: {{ provider: sim, name: m }}
    classify: {{ labels: [billing, other] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/browser and a real broker: scripts/browser scripts/with-kafka cargo test --test console_browser -- --include-ignored"]
async fn the_pipeline_page_survives_a_missing_topic_and_fits_a_phone() {
    let flow = std::env::var("SLUICE_BROWSER_FLOW")
        .expect("SLUICE_BROWSER_FLOW is set by scripts/browser (run the test through it)");
    let script = std::path::Path::new(&flow).with_file_name("pipeline.mjs");
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS is set by scripts/with-kafka");
    let h = Harness::start_on(&two_stages(&unique("bpipe")), Some(bootstrap)).await;
    let mut t = h.topology.clone();
    let gone = format!("{}.answer.nowhere", t.pipeline);
    t.stages[1].dead_letter_topic = gone.clone();
    let opts = sluice::console::ConsoleOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        access: Default::default(),
        claim_ttl: Duration::from_secs(60),
        finish_after: Duration::from_secs(60),
        metrics: vec![],
        limits: Default::default(),
    };
    let c = sluice::console::start(&t, opts).await.expect("console");
    let env: HashMap<&str, String> = [
        ("CONSOLE_URL", format!("http://{}", c.addr)),
        ("CONSOLE_REVIEWER", "olga".into()),
        ("PIPELINE_STAGES", "2".into()),
        ("PIPELINE_TROUBLE", "answer".into()),
        ("PIPELINE_REASON", format!("topic {gone} does not exist")),
    ]
    .into_iter()
    .chain(std::env::var("SLUICE_CONSOLE_SCREENSHOTS").ok().map(|d| ("SCREENSHOT_DIR", d)))
    .collect();
    crate::common::browser::run_flow(&script, env).await;
    c.stop().await;
}
