//! The model-call path, measured against baselines in the same run:
//!
//! 1. Pipeline throughput: a classify stage calling the mock provider over HTTP at a fixed
//!    latency, P partitions × C in flight per partition, as a ratio to the ideal
//!    min(P·C / latency, rate limit) — once unlimited, once under a client-side rate limit.
//! 2. Per-call overhead of sluice's HTTP path (routing, rate limiter, breaker, token estimate,
//!    JSON both ways) against a bare reqwest call to the same mock, both paced at 2,000 calls/s:
//!    the added p50 and p99.
//!
//! `cargo bench --bench provider_path`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{output_count, produce, wait_for};
use sluice::avro::Codec;
use sluice::config::compile;
use sluice::devstack::DevStack;
use sluice::kafka::registry_settings;
use sluice::mock_provider::{serve, MockConfig, MockProvider};
use sluice::pipeline::{run_stages, schema_pairs};
use sluice::policy::Gateway;
use sluice::provider::{CallKey, ChatRequest};
use sluice::shutdown::Shutdown;

const PARTITIONS: usize = 4;

async fn mock(latency: Duration, rpm: Option<u32>) -> MockProvider {
    let config = MockConfig { latency, rpm, ..MockConfig::default() };
    serve("127.0.0.1:0".parse().expect("addr"), config).await.expect("mock")
}

fn topology(name: &str, url: &str, per_partition: usize, limit: &str) -> String {
    format!(
        r#"
pipeline: {name}
kafka:
  partitions: {PARTITIONS}
  consumer: {{ partition.assignment.strategy: cooperative-sticky }}
providers:
  m: {{ kind: openai, base_url: {url}, limits: {{ {limit} }} }}
prices: {{ set_on: 2026-11-01, models: {{ m/cls: {{ input: 0.15, output: 0.6 }} }} }}
inputs: {{ {name}.in: {{ partitions: {PARTITIONS} }} }}
stages:
  classify:
    kind: classify
    input: {name}.in
    output: {name}.out
    model: {{ provider: m, name: cls }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: {}, per_partition: {per_partition} }}
"#,
        per_partition * PARTITIONS
    )
}

/// Records/s through the whole pipeline process (registry, broker, runner, HTTP, mock).
/// (whole run, steady state) records/s.
async fn pipeline_rate(
    latency: Duration,
    per_partition: usize,
    limit_rps: Option<u32>,
) -> (f64, f64) {
    let server = mock(latency, limit_rps.map(|r| r * 60)).await;
    let limit = limit_rps.map_or(String::new(), |r| format!("cls: {{ requests_per_second: {r} }}"));
    let name = format!("bench-http-{}-{}", latency.as_millis(), std::process::id());
    let yaml = topology(&name, &server.openai_url(), per_partition, &limit);
    let mut t = compile(Path::new("bench.yaml"), &yaml).expect("topology");
    let _stack =
        DevStack::start(&mut t, "127.0.0.1:0".parse().expect("addr")).await.expect("stack");
    let codec = Codec::connect(&registry_settings(&t), &schema_pairs(&t)).await.expect("codec");
    let (input, output) = (t.inputs[0].name.clone(), t.stages[0].output.clone());
    let shutdown = Shutdown::new();
    let task = {
        let (t, shutdown) = (t.clone(), shutdown.clone());
        tokio::spawn(async move { run_stages(&t, &[], shutdown).await })
    };
    let ideal = ideal(latency, per_partition, limit_rps);
    let n = (ideal * 8.0) as usize;
    let content = |i| format!("My invoice {i} shows a double charge, please refund it.");
    let parts = PARTITIONS as i32;
    produce(&t, &codec, &input, 0..1, content).await;
    wait_for(&t, &output, parts, 1).await;
    let started = Instant::now();
    produce(&t, &codec, &input, 1..n + 1, content).await;
    // Steady state: the rate between 20% and 80% of the outputs (no fill, no drain).
    let mark = |fraction: f64| 1 + (n as f64 * fraction) as i64;
    wait_for(&t, &output, parts, mark(0.2)).await;
    let (t_a, c_a) = (Instant::now(), output_count(&t, &output, parts));
    wait_for(&t, &output, parts, mark(0.8)).await;
    let (t_b, c_b) = (Instant::now(), output_count(&t, &output, parts));
    wait_for(&t, &output, parts, n as i64 + 1).await;
    let whole = n as f64 / started.elapsed().as_secs_f64();
    let steady = (c_b - c_a) as f64 / (t_b - t_a).as_secs_f64();
    shutdown.request();
    task.await.expect("task").expect("pipeline");
    assert_eq!(
        server.ledger().rate_limited(),
        0,
        "the client-side limit kept the mock's 429s away"
    );
    (whole, steady)
}

fn ideal(latency: Duration, per_partition: usize, limit_rps: Option<u32>) -> f64 {
    let concurrency = (PARTITIONS * per_partition) as f64 / latency.as_secs_f64();
    limit_rps.map_or(concurrency, |r| concurrency.min(f64::from(r)))
}

/// Per-call latencies (µs) of `call`, started on a fixed schedule of `rate` calls/s.
async fn paced<F, Fut>(rate: f64, duration: Duration, call: F) -> Vec<u64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let n = (rate * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let fut = call(i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            fut.await;
            t.elapsed().as_micros() as u64
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("call"));
    }
    out.sort_unstable();
    out
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

async fn overhead() {
    let server = mock(Duration::ZERO, None).await;
    let yaml = topology("overhead", &server.openai_url(), 1, "");
    let t = compile(Path::new("bench.yaml"), &yaml).expect("topology");
    let gateway = Arc::new(Gateway::new(&t).expect("gateway"));
    let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
    let url = format!("{}/chat/completions", server.openai_url());
    let request = ChatRequest {
        model: String::new(),
        system: "Classify the user's document into exactly one of: billing, technical, other."
            .into(),
        user: "My invoice shows a double charge, please refund it.".into(),
        json_schema: None,
        max_tokens: 50,
    };
    let body = serde_json::json!({
        "model": "cls",
        "messages": [{ "role": "system", "content": request.system },
                     { "role": "user", "content": request.user }],
        "max_tokens": 50,
    });
    let (rate, duration) = (2000.0, Duration::from_secs(4));
    let bare = || {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        move |_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let r = client.post(url).json(&body).send().await.expect("send");
                let _: serde_json::Value = r.json().await.expect("json");
            }
        }
    };
    let via_sluice = || {
        let (gateway, request) = (gateway.clone(), request.clone());
        move |i: usize| {
            let (gateway, request) = (gateway.clone(), request.clone());
            async move {
                let id = format!("d{i}");
                let key = CallKey::new(&id, "bench", 1);
                let alias = "m/cls";
                gateway.chat(alias, &request, key).await.expect("chat");
            }
        }
    };
    // Warm both paths (connections, tokenizer tables), then alternate to even out drift.
    paced(rate, Duration::from_millis(500), bare()).await;
    paced(rate, Duration::from_millis(500), via_sluice()).await;
    let mut b = paced(rate, duration, bare()).await;
    let mut s = paced(rate, duration, via_sluice()).await;
    b.extend(paced(rate, duration, bare()).await);
    s.extend(paced(rate, duration, via_sluice()).await);
    b.sort_unstable();
    s.sort_unstable();
    println!(
        "\n{:<34} {:>10} {:>10} {:>10}",
        "HTTP path at 2,000 calls/s", "p50 ms", "p99 ms", "calls"
    );
    println!(
        "{:<34} {:>10.3} {:>10.3} {:>10}",
        "bare reqwest",
        pct(&b, 0.5),
        pct(&b, 0.99),
        b.len()
    );
    println!(
        "{:<34} {:>10.3} {:>10.3} {:>10}",
        "sluice gateway",
        pct(&s, 0.5),
        pct(&s, 0.99),
        s.len()
    );
    println!(
        "{:<34} {:>10.3} {:>10.3}",
        "added by sluice",
        pct(&s, 0.5) - pct(&b, 0.5),
        pct(&s, 0.99) - pct(&b, 0.99)
    );
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("pipeline against the mock provider over HTTP, {PARTITIONS} partitions, embedded broker");
        println!(
            "\n{:<40} {:>10} {:>10} {:>8} {:>10} {:>8}",
            "case", "ideal/s", "whole/s", "ratio", "steady/s", "ratio"
        );
        for (latency_ms, per_partition, limit) in
            [(50u64, 4usize, None), (50, 16, None), (50, 16, Some(400u32))]
        {
            let latency = Duration::from_millis(latency_ms);
            let (whole, steady) = pipeline_rate(latency, per_partition, limit).await;
            let ideal = ideal(latency, per_partition, limit);
            let label = format!(
                "{latency_ms} ms × {PARTITIONS}p × {per_partition}{}",
                limit.map_or(String::new(), |l| format!(", limit {l}/s"))
            );
            println!(
                "{label:<40} {ideal:>10.0} {whole:>10.0} {:>7.1}% {steady:>10.0} {:>7.1}%",
                100.0 * whole / ideal,
                100.0 * steady / ideal
            );
        }
        overhead().await;
    });
}
