//! `sluice console` in process on the embedded broker: two replicas sharing one review queue
//! never hold one item at once and write one decision per item, offsets committed only after
//! it; a lapsed claim passes on; and over HTTP, sessions, CSRF, origin checks, the token off
//! loopback and escaping.

mod common;

use std::time::Duration;

use common::{unique, wait_until, Harness};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice::avro::{Answer, Envelope, HumanDecision, Review, SchemaKind, Verdict};
use sluice::console::actions::{ActionError, Actor, Judgement, DECISION_HEADER};
use sluice::console::ledger::ItemKey;
use sluice::console::{self, Console, ConsoleError, ConsoleOptions};

const TIMEOUT: Duration = Duration::from_secs(20);

fn topology(p: &str) -> String {
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
async fn needs_human(h: &Harness, id: &str, tenant: &str, content: &str) {
    let mut e = common::document(id, tenant, content);
    e.answer = Some(Answer {
        text: format!("generated answer for {id}"),
        model: "sim/gen".into(),
        prompt_version: "answer@1".into(),
        input_tokens: 10,
        output_tokens: 5,
        finish_reason: "stop".into(),
        latency_ms: 3,
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

async fn start(h: &Harness, ttl: Duration) -> Console {
    start_with(h, ttl, Duration::from_secs(60)).await
}

async fn start_with(h: &Harness, ttl: Duration, finish_after: Duration) -> Console {
    let opts = ConsoleOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        token: None,
        claim_ttl: ttl,
        finish_after,
        metrics: vec![],
    };
    console::start(&h.topology, opts).await.expect("console starts")
}

async fn pending(c: &Console) -> Vec<ItemKey> {
    let state = c.app.queues[0].state();
    state.pending(&Default::default()).iter().map(|(i, _)| i.key).collect()
}

fn actor(name: &str) -> Actor {
    Actor { reviewer: name.into(), holder: format!("session-of-{name}") }
}

/// Decisions on `topic`: (document id, reviewer, decision, answer text, decision header).
async fn decisions(
    h: &Harness,
    topic: &str,
) -> Vec<(String, String, HumanDecision, String, String)> {
    let codec = h.codec().await;
    let raw = common::each_record(&h.topology.kafka, topic, |m| {
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

fn committed(h: &Harness) -> i64 {
    let group = h.topology.stages[0].review_queue_group().expect("review stage");
    let topic = format!("{}.needs-human", h.topology.pipeline);
    common::committed(h.stack.kafka.bootstrap_servers(), &group, &topic, 1)[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_hold_one_item_and_each_decision_is_written_once_before_the_commit() {
    let h = Harness::start(&topology(&unique("cq"))).await;
    needs_human(&h, "d0", "acme", "first question").await;
    needs_human(&h, "d1", "globex", "second question").await;
    let (a, b) =
        (start(&h, Duration::from_secs(60)).await, start(&h, Duration::from_secs(60)).await);
    assert!(
        wait_until(TIMEOUT, || async {
            pending(&a).await.len() == 2 && pending(&b).await.len() == 2
        })
        .await
    );
    let first = pending(&a).await[0];
    let (qa, qb) = (a.app.queues[0].clone(), b.app.queues[0].clone());
    let (ann, bob) = (actor("ann"), actor("bob"));
    let (ra, rb) = tokio::join!(qa.claim(first, &ann), qb.claim(first, &bob));
    assert!(ra.is_ok() != rb.is_ok(), "exactly one claim wins: {ra:?} {rb:?}");
    let (winner, loser, wq, lq) =
        if ra.is_ok() { (&ann, &bob, &qa, &qb) } else { (&bob, &ann, &qb, &qa) };
    let err = if ra.is_ok() { rb } else { ra }.expect_err("the loser");
    assert!(
        matches!(&err, ActionError::ClaimedBy { reviewer, .. } if *reviewer == winner.reviewer),
        "{err}"
    );
    let approve = |answer: &str| Judgement {
        decision: HumanDecision::Approved,
        answer: Some(answer.into()),
        note: String::new(),
    };
    let refused = lq.decide(first, loser, approve("loser's text")).await.expect_err("no claim");
    assert!(matches!(refused, ActionError::NotHolder), "{refused}");
    assert!(committed(&h) < 1, "nothing is committed past d0 before its decision is written");
    wq.decide(first, winner, approve("edited answer")).await.expect("the holder decides");
    let again = lq.decide(first, loser, approve("again")).await.expect_err("decided");
    assert!(matches!(again, ActionError::Decided), "{again}");

    let approved = format!("{}.approved", h.topology.pipeline);
    let written = decisions(&h, &approved).await;
    assert_eq!(written.len(), 1, "{written:?}");
    let (doc, reviewer, decision, answer, header) = &written[0];
    assert_eq!(
        (doc.as_str(), reviewer.as_str(), *decision),
        ("d0", winner.reviewer.as_str(), HumanDecision::Approved)
    );
    assert_eq!(answer, "edited answer");
    assert!(header.ends_with(".claims/0/2"), "two claims, then the decision: {header}");
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 1 }).await, "committed past d0 only");
    assert!(
        wait_until(TIMEOUT, || async {
            pending(&b).await == vec![ItemKey { partition: 0, offset: 1 }]
        })
        .await
    );

    let second = ItemKey { partition: 0, offset: 1 };
    qb.claim(second, &bob).await.expect("open item");
    let reject =
        Judgement { decision: HumanDecision::Rejected, answer: None, note: "wrong product".into() };
    qb.decide(second, &bob, reject).await.expect("bob decides");
    let rejected = decisions(&h, &format!("{}.rejected", h.topology.pipeline)).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].0.as_str(), rejected[0].3.as_str()), ("d1", "generated answer for d1"));
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 2 }).await);
    assert_eq!(decisions(&h, &approved).await.len(), 1, "still one approval");
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let tombstones = || async {
        let keys = common::each_record(&h.topology.kafka, &claims, |m| {
            m.payload()
                .is_none()
                .then(|| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        })
        .await;
        keys.into_iter().flatten().collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        wait_until(TIMEOUT, || async { tombstones().await.len() == 2 }).await,
        "items behind the commit are tombstoned in the compacted claims topic: {:?}",
        tombstones().await
    );
    assert_eq!(tombstones().await.into_iter().collect::<Vec<_>>(), ["0/0", "0/1"]);
    let metrics = reqwest::get(format!("http://{}/metrics", a.addr)).await.expect("GET");
    let text = metrics.text().await.expect("body");
    // The registry is the process's, shared by this binary's tests: the series, not its value.
    assert!(
        text.contains(r#"sluice_review_decisions_total{decision="approved",stage="review"} "#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_review_queue_items{stage="review"} "#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_claim_passes_to_the_next_reviewer_and_the_first_can_no_longer_decide() {
    let h = Harness::start(&topology(&unique("cl"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    let c = start(&h, Duration::from_secs(2)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let (q, key) = (c.app.queues[0].clone(), ItemKey { partition: 0, offset: 0 });
    q.claim(key, &actor("ann")).await.expect("claims");
    let held = q.claim(key, &actor("bob")).await.expect_err("held");
    assert!(matches!(held, ActionError::ClaimedBy { .. }), "{held}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    q.claim(key, &actor("bob")).await.expect("the claim lapsed");
    let stale = q.release(key, &actor("ann")).await.expect_err("ann no longer holds it");
    assert!(matches!(stale, ActionError::NotHolder), "{stale}");
    let judgement =
        || Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    let late = q.decide(key, &actor("ann"), judgement()).await.expect_err("lapsed");
    assert!(matches!(late, ActionError::NotHolder), "{late}");
    q.decide(key, &actor("bob"), judgement()).await.expect("bob holds it");
    let late = q.release(key, &actor("bob")).await.expect_err("decided");
    assert!(
        matches!(late, ActionError::Decided | ActionError::Unknown(..)),
        "a stale page cannot reopen a decided (or already committed) item: {late}"
    );
    let approved = decisions(&h, &format!("{}.approved", h.topology.pipeline)).await;
    assert_eq!(approved.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(), ["bob"]);
}

/// A form body.
fn form(fields: &[(&str, &str)]) -> String {
    use sluice::console::html::url;
    fields.iter().map(|(k, v)| format!("{}={}", url(k), url(v))).collect::<Vec<_>>().join("&")
}

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    fn new(c: &Console) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { http, base: format!("http://{}", c.addr), cookie: String::new() }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    async fn post(&self, path: &str, body: String, origin: Option<&str>) -> reqwest::Response {
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

    async fn login(&mut self, name: &str, token: &str) -> reqwest::StatusCode {
        let r = self.post("/login", form(&[("reviewer", name), ("token", token)]), None).await;
        if let Some(c) = r.headers().get("set-cookie") {
            let c = c.to_str().expect("ascii");
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
            self.cookie = c.split(';').next().expect("pair").to_owned();
        }
        r.status()
    }
}

fn csrf_of(html: &str) -> String {
    let at =
        html.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().expect("value").to_owned()
}

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
    assert_eq!(b.post(claim, form(&[("csrf", "guess")]), None).await.status(), 403, "no session");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_loopback_the_console_needs_a_token_and_checks_it() {
    let h = Harness::start(&topology(&unique("ct"))).await;
    let opts = |token: Option<&str>| ConsoleOptions {
        addr: "0.0.0.0:0".parse().expect("addr"),
        token: token.map(str::to_owned),
        claim_ttl: Duration::from_secs(60),
        finish_after: Duration::from_secs(60),
        metrics: vec![],
    };
    let refused = console::start(&h.topology, opts(None)).await.err().expect("refused");
    assert!(matches!(refused, ConsoleError::TokenRequired(_)), "{refused}");
    let c = console::start(&h.topology, opts(Some("s3cret"))).await.expect("starts");
    let mut b = Browser::new(&c);
    b.base = format!("http://127.0.0.1:{}", c.addr.port());
    let login = b.get("/login").await.text().await.expect("body");
    assert!(login.contains(r#"name="token""#), "the login form asks for the token");
    assert_eq!(b.login("ann", "wrong").await, 401);
    assert_eq!(b.login("ann", "").await, 401);
    assert!(b.cookie.is_empty(), "no session without the token");
    assert_eq!(b.login("ann", "s3cret").await, 303);
    assert_eq!(b.get("/review").await.status(), 200);
}

/// A replica that stopped between its decision and the decision's record: another replica
/// finishes it, once, and the queue moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_left_unfinished_by_a_stopped_replica_is_finished_by_another() {
    use sluice::avro::{ReviewEvent, ReviewStep};
    let h = Harness::start(&topology(&unique("cf"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let codec = h.codec().await;
    let at = sluice::call::now_ms() - 60_000;
    for (step, expires_ms) in [(ReviewStep::Claim, at + 600_000), (ReviewStep::Decide, 0)] {
        let e = ReviewEvent {
            item_partition: 0,
            item_offset: 0,
            step,
            reviewer: "gone".into(),
            holder: "stopped-replica".into(),
            at_ms: at,
            expires_ms,
            decision: Some(HumanDecision::Rejected),
            answer: None,
            note: Some("spam".into()),
        };
        let value = apache_avro::to_value(&e)
            .and_then(|v| v.resolve(SchemaKind::ReviewEvent.schema()))
            .expect("value");
        let bytes = codec.encode(&claims, &value).expect("encode");
        let record = FutureRecord::to(&claims).key("0/0").payload(&bytes);
        h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
    }
    let c = start_with(&h, Duration::from_secs(60), Duration::from_secs(1)).await;
    let rejected = format!("{}.rejected", h.topology.pipeline);
    assert!(
        wait_until(TIMEOUT, || async { !decisions(&h, &rejected).await.is_empty() }).await,
        "the finisher wrote the decision's record"
    );
    let written = decisions(&h, &rejected).await;
    assert_eq!(written.len(), 1);
    assert_eq!((written[0].0.as_str(), written[0].1.as_str()), ("d0", "gone"));
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 1 }).await, "then committed past it");
    assert!(pending(&c).await.is_empty());
}
