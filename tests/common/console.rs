//! The console's test kit: a one-review-stage topology, needs-human records as the review stage
//! writes them, consoles started in process, what reached the decision topics, and a cookie-
//! keeping HTTP client that posts forms like a browser.

use std::time::Duration;

use super::{wait_until, Harness};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice::avro::{Answer, Envelope, HumanDecision, Review, SchemaKind, Verdict};
use sluice::console::actions::{Actor, DECISION_HEADER};
use sluice::console::ledger::ItemKey;
use sluice::console::{self, Console, ConsoleOptions};

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn topology(p: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka: {{ partitions: 1 }}
providers: {{ sim: {{ kind: simulated }} }}
inputs: {{ {p}.generated: {{ partitions: 1 }} }}
stages:
  review:
    kind: review
    input: {p}.generated
    output: {p}.approved
    needs_human_output: {p}.needs-human
    rejected_output: {p}.rejected
"#
    )
}

/// A needs-human record as the review stage writes it, with a `traceparent`.
pub async fn needs_human(h: &Harness, id: &str, tenant: &str, content: &str) {
    let mut e = super::document(id, tenant, content);
    e.answer = Some(Answer {
        text: format!("generated answer for {id}"),
        model: "sim/gen".into(),
        prompt_version: "answer@1".into(),
        input_tokens: 10,
        output_tokens: 5,
        finish_reason: "stop".into(),
        latency_ms: 3,
        cache: "none".into(),
        similarity: None,
        reused_from: None,
    });
    e.review = Some(Review {
        verdict: Verdict::NeedsHuman,
        reasons: vec!["no supporting passages".into()],
        redactions: 0,
    });
    let topic = format!("{}.needs-human", h.topology.pipeline);
    let codec = h.codec().await;
    let bytes =
        codec.encode(&topic, &e.to_value(SchemaKind::Reviewed).expect("value")).expect("encode");
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "traceparent",
        value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    });
    let record = FutureRecord::to(&topic).key(id).payload(&bytes).headers(headers);
    h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
}

pub async fn start(h: &Harness, ttl: Duration) -> Console {
    start_with(h, ttl, Duration::from_secs(60)).await
}

pub async fn start_with(h: &Harness, ttl: Duration, finish_after: Duration) -> Console {
    start_opts(h, |o| {
        o.claim_ttl = ttl;
        o.finish_after = finish_after;
    })
    .await
}

/// Options for a console on an ephemeral loopback port, as a test adjusts them.
pub fn options(adjust: impl FnOnce(&mut ConsoleOptions)) -> ConsoleOptions {
    let mut opts = ConsoleOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        access: Default::default(),
        claim_ttl: Duration::from_secs(60),
        finish_after: Duration::from_secs(60),
        metrics: vec![],
        limits: Default::default(),
    };
    adjust(&mut opts);
    opts
}

/// A console with options as `adjust` leaves them.
pub async fn start_opts(h: &Harness, adjust: impl FnOnce(&mut ConsoleOptions)) -> Console {
    console::start(&h.topology, options(adjust)).await.expect("console starts")
}

pub async fn pending(c: &Console) -> Vec<ItemKey> {
    let state = c.app.queues[0].state();
    state.pending(&Default::default()).iter().map(|(i, _)| i.key).collect()
}

pub fn actor(name: &str) -> Actor {
    Actor { reviewer: name.into(), holder: format!("session-of-{name}") }
}

/// Decisions on `topic`: (document id, reviewer, decision, answer text, decision header).
pub async fn decisions(
    h: &Harness,
    topic: &str,
) -> Vec<(String, String, HumanDecision, String, String)> {
    let codec = h.codec().await;
    let raw = super::each_record(&h.topology.kafka, topic, |m| {
        let header = m
            .headers()
            .and_then(|hs| hs.iter().find(|x| x.key == DECISION_HEADER).and_then(|x| x.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        (m.payload().map(<[u8]>::to_vec), header)
    })
    .await;
    let mut out = Vec::new();
    for (payload, header) in raw {
        let d = codec.decode(payload.as_deref()).await.expect("decodes");
        let e = Envelope::from_value(d.kind, d.value).expect("an envelope");
        let human = e.human_review.expect("a person's decision");
        let answer = e.answer.expect("answer").text;
        out.push((e.document.id, human.reviewer, human.decision, answer, header));
    }
    out
}

pub fn committed(h: &Harness) -> i64 {
    let group = h.topology.stages[0].review_queue_group().expect("review stage");
    let topic = format!("{}.needs-human", h.topology.pipeline);
    super::committed(h.stack.kafka.bootstrap_servers(), &group, &topic, 1)[0]
}

/// A form body.
pub fn form(fields: &[(&str, &str)]) -> String {
    use sluice::console::html::url;
    fields.iter().map(|(k, v)| format!("{}={}", url(k), url(v))).collect::<Vec<_>>().join("&")
}

pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
}

impl Browser {
    pub fn new(c: &Console) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { http, base: format!("http://{}", c.addr), cookie: String::new() }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: String, origin: Option<&str>) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.body(body).send().await.expect("POST")
    }

    pub async fn login(&mut self, name: &str, token: &str) -> reqwest::StatusCode {
        let r = self.post("/login", form(&[("reviewer", name), ("token", token)]), None).await;
        if let Some(c) = r.headers().get("set-cookie") {
            let c = c.to_str().expect("ascii");
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
            self.cookie = c.split(';').next().expect("pair").to_owned();
        }
        r.status()
    }
}

pub fn csrf_of(html: &str) -> String {
    let at =
        html.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().expect("value").to_owned()
}

/// Commits `to` for the review queue's group on partition 0, as `sluice replay --execute`
/// moving it back would.
pub fn move_group_to(h: &Harness, to: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let group = h.topology.stages[0].review_queue_group().expect("review stage");
    let topic = format!("{}.needs-human", h.topology.pipeline);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", h.stack.kafka.bootstrap_servers())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(to)).expect("offset");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// The pipeline table as a logged-in reviewer sees it.
pub async fn pipeline_table(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reviewer=checker")
        .send()
        .await
        .expect("login");
    let cookie = login.headers()["set-cookie"].to_str().expect("ascii");
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = http.get(format!("{base}/pipeline/table")).header("cookie", session).send();
    page.await.expect("GET").text().await.expect("body")
}

/// The pipeline table once the console's background sampler has taken its first sample (a
/// request before it shows "Sampling…").
pub async fn sampled_pipeline_table(base: &str) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let table = pipeline_table(base).await;
        if table.contains("data-taken-ms=") || std::time::Instant::now() > deadline {
            return table;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
