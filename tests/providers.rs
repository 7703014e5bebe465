//! The policy plane against the mock provider over real HTTP: fallbacks, breakers, rate limits
//! measured at the server, both APIs' shapes, credentials and structured output.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use sluice::call::{CallLog, Origin};
use sluice::config::compile;
use sluice::mock_provider::{MockConfig, MockProvider};
use sluice::policy::{BreakerState, Gateway, GatewayError};
use sluice::provider::{CallKey, ChatRequest, EmbedRequest, ProviderBuildError, ProviderError};

/// A gateway over one `openai` provider `m` at the mock; `extra` adds provider settings and
/// `models` declares logical models.
fn gateway(server: &MockProvider, extra: &str, models: &str) -> Gateway {
    gateway_with(server, extra, models, "")
}

fn gateway_with(server: &MockProvider, extra: &str, models: &str, top: &str) -> Gateway {
    build_gateway(server, extra, models, top).expect("gateway")
}

fn build_gateway(
    server: &MockProvider,
    extra: &str,
    models: &str,
    top: &str,
) -> Result<Gateway, GatewayError> {
    let yaml = format!(
        r#"
pipeline: p
providers:
  m:
    kind: openai
    base_url: {url}
    timeout: 5s
    {extra}
  claude:
    kind: anthropic
    base_url: {base}
    api_key_env: SLUICE_TEST_ANTHROPIC_KEY
models:
{models}
prices:
  set_on: 2026-11-01
  models:
    big: {{ input: 2.5, output: 10 }}
    backup: {{ input: 0.15, output: 0.6 }}
    sonnet: {{ input: 3, output: 15 }}
    emb: {{ input: 0.02, output: 0 }}
{top}
inputs: {{ docs: {{}} }}
stages:
  c: {{ kind: classify, input: docs, output: out, classify: {{ labels: [a, other], rules: {{ a: [x] }} }} }}
"#,
        url = server.openai_url(),
        base = server.base_url(),
    );
    std::env::set_var("SLUICE_TEST_ANTHROPIC_KEY", "sk-ant-test-key");
    let t = compile(Path::new("t.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    Gateway::new(&t)
}

fn chat(user: &str) -> ChatRequest {
    ChatRequest {
        model: String::new(),
        system: "Be brief.".into(),
        user: user.into(),
        json_schema: None,
        max_tokens: 32,
    }
}

fn key(id: &str) -> CallKey<'_> {
    CallKey::new(id, "t", 1)
}

#[tokio::test]
async fn a_failing_primary_falls_back_and_the_answer_names_the_model_that_served() {
    let server = common::mock_provider(MockConfig::default()).await;
    let g = gateway(
        &server,
        "",
        "  big: { provider: m, name: big-model, fallbacks: [backup] }\n  backup: { provider: m, name: small-model }",
    );
    server.set_fault("big-model", Some(503));
    let served = g.chat("big", &chat("hello"), key("d1")).await.expect("fallback serves");
    assert_eq!(served.requested, "big");
    assert_eq!(served.served, "backup");
    assert_eq!(served.model_name, "small-model");
    let ledger = server.ledger();
    assert_eq!(ledger.totals("big-model").errors, 1);
    assert_eq!(ledger.totals("small-model").calls, 1);
    // Usage comes from the provider's response, as the mock billed it.
    assert_eq!(served.value.input_tokens, ledger.totals("small-model").input_tokens);
    assert!(!served.value.tokens_estimated);

    // A rejected request (4xx) is not passed to the fallback: it would fail there too.
    server.set_fault("big-model", Some(400));
    let err = g.chat("big", &chat("hello"), key("d2")).await.expect_err("rejected");
    assert!(matches!(err, ProviderError::Rejected(_)), "{err:?}");
    assert_eq!(server.ledger().totals("small-model").calls, 1);
}

#[tokio::test]
async fn the_breaker_opens_stops_calling_and_recovers_after_its_cool_down() {
    let server = common::mock_provider(MockConfig::default()).await;
    let g = gateway(
        &server,
        "breaker: { consecutive_failures: 3, window: 50, cool_down: 300ms }",
        "  big: { provider: m, name: big-model }",
    );
    server.set_fault("big-model", Some(503));
    for _ in 0..3 {
        g.chat("big", &chat("x"), key("d")).await.expect_err("503");
    }
    assert!(matches!(g.breaker_state("m"), Some(BreakerState::Open { .. })));
    let err = g.chat("big", &chat("x"), key("d")).await.expect_err("breaker open");
    assert!(err.to_string().contains("circuit breaker open"), "{err}");
    assert!(err.retry_after().is_some_and(|w| w <= Duration::from_millis(300)));
    assert_eq!(server.ledger().totals("big-model").errors, 3, "an open breaker calls nobody");

    server.set_fault("big-model", None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    g.chat("big", &chat("x"), key("d")).await.expect("the half-open probe succeeds");
    assert_eq!(g.breaker_state("m"), Some(BreakerState::Closed));
}

#[tokio::test]
async fn the_rate_limit_holds_at_the_server_and_avoids_its_429s() {
    // The mock enforces 1,200 requests a minute (20/s); sluice is configured with the same.
    let server =
        common::mock_provider(MockConfig { rpm: Some(1200), ..MockConfig::default() }).await;
    let g = Arc::new(gateway(
        &server,
        "limits: { big-model: { requests_per_minute: 1200 } }",
        "  big: { provider: m, name: big-model }",
    ));
    let n = 60;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move {
                let id = format!("d{i}");
                g.chat("big", &chat("hi"), key(&id)).await.map(|_| ())
            })
        })
        .collect();
    for c in calls {
        c.await.expect("task").expect("no call is refused");
    }
    let ledger = server.ledger();
    assert_eq!(ledger.rate_limited(), 0, "no 429 when both sides enforce the same limit");
    let times: Vec<u64> = ledger.calls.iter().map(|c| c.at_us).collect();
    let span = (times[n - 1] - times[0]) as f64 / 1e6;
    let rate = (n - 1) as f64 / span;
    // An upper bound only: a loaded machine may call slower than the limit, never faster (5% for
    // the jitter of the first and last arrival).
    assert!(rate <= 20.0 * 1.05, "measured {rate:.2} calls/s against a limit of 20");
}

#[tokio::test]
async fn anthropic_messages_and_openai_embeddings_speak_their_apis() {
    let server = common::mock_provider(MockConfig {
        api_key: Some("sk-ant-test-key".into()),
        embedding_dim: 16,
        ..MockConfig::default()
    })
    .await;
    let g = gateway(
        &server,
        "api_key_env: SLUICE_TEST_ANTHROPIC_KEY",
        "  sonnet: { provider: claude, name: claude-sonnet }\n  emb: { provider: m, name: text-embedding-3-small }",
    );
    let mut req = chat("Please refund the double charge on my invoice");
    req.json_schema = Some(serde_json::json!({
        "type": "object",
        "properties": { "label": { "type": "string", "enum": ["billing", "technical"] },
                        "confidence": { "type": "number" } },
        "required": ["label", "confidence"]
    }));
    let served = g.chat("sonnet", &req, key("d")).await.expect("anthropic call");
    let answer: serde_json::Value = serde_json::from_str(&served.value.text).expect("JSON answer");
    assert_eq!(answer["label"], "billing");
    assert_eq!(served.value.finish_reason, "end_turn");
    assert_eq!(served.value.output_tokens, server.ledger().totals("claude-sonnet").output_tokens);

    let inputs =
        vec!["refund".to_owned(), "password reset".to_owned(), "upload timeout".to_owned()];
    let req = EmbedRequest { model: String::new(), inputs };
    let served = g.embed("emb", &req, key("d")).await.expect("embeddings");
    assert_eq!(served.value.vectors.len(), 3);
    assert!(served.value.vectors.iter().all(|v| v.len() == 16));
    assert_eq!(server.ledger().totals("text-embedding-3-small").calls, 1, "one call per batch");
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_never_echoed() {
    let server = common::mock_provider(MockConfig {
        api_key: Some("the-right-key".into()),
        ..MockConfig::default()
    })
    .await;
    std::env::set_var("SLUICE_TEST_WRONG_KEY", "sk-wrong-secret-value");
    let g = gateway(
        &server,
        "api_key_env: SLUICE_TEST_WRONG_KEY",
        "  big: { provider: m, name: big-model }",
    );
    let err = g.chat("big", &chat("x"), key("d")).await.expect_err("401");
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert!(!err.to_string().contains("sk-wrong-secret-value"));
    let stage_error: sluice::stage::StageError = err.into();
    assert_eq!(stage_error.class(), "fatal", "bad credentials stop the worker");
}

/// Two gateways (two replicas) share a Redis response cache: the second answers from it with no
/// provider call, metering a zero-cost cached event and re-emitting the original call's event.
#[tokio::test]
async fn replicas_share_answers_through_a_redis_cache() {
    let redis = common::redis::start();
    let server = common::mock_provider(MockConfig::default()).await;
    let cache = format!("cache: {{ kind: redis, url: {}, ttl: 1h }}", redis.url);
    let models = "  big: { provider: m, name: big-model }";
    let (a, b) =
        (gateway_with(&server, "", models, &cache), gateway_with(&server, "", models, &cache));
    let log = |offset| {
        CallLog::new(
            "p",
            "s",
            Origin { topic: "in".into(), partition: 0, offset, timestamp_ms: None },
        )
    };
    let (first, second) = (log(1), log(2));
    let key = |log| CallKey { tenant: "acme", log: Some(log), ..CallKey::new("d", "s", 1) };
    let paid = a.chat("big", &chat("same question"), key(&first)).await.expect("paid call");
    let cached = b.chat("big", &chat("same question"), key(&second)).await.expect("cache hit");
    assert_eq!(server.ledger().totals("big-model").calls, 1, "the second replica paid nothing");
    assert_eq!(paid.value.text, cached.value.text);
    let original = first.take();
    let replayed = second.take();
    assert_eq!(original.len(), 1);
    assert!(original[0].cost_micro_usd > 0 && !original[0].cached);
    assert_eq!(replayed.len(), 2, "the original event again, and the hit's own");
    assert_eq!(replayed[0], original[0]);
    assert!(replayed[1].cached && replayed[1].cost_micro_usd == 0);
    assert_ne!(replayed[1].event_id, original[0].event_id);
}

/// A hit on an entry another tenant's record filled meters only the hit itself, for this
/// record's own tenant and document: the filler's event is not copied into this record's events
/// (where it would be another tenant's cost among this record's outputs).
#[tokio::test]
async fn a_hit_on_another_records_answer_meters_only_its_own_event() {
    let server = common::mock_provider(MockConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let cache = format!("cache: {{ path: {} }}", dir.path().display());
    let g = gateway_with(&server, "", "  big: { provider: m, name: big-model }", &cache);
    let log = |offset| {
        CallLog::new(
            "p",
            "s",
            Origin { topic: "in".into(), partition: 0, offset, timestamp_ms: None },
        )
    };
    let (filler, other) = (log(1), log(2));
    let acme = CallKey { tenant: "acme", log: Some(&filler), ..CallKey::new("d1", "s", 1) };
    let globex = CallKey { tenant: "globex", log: Some(&other), ..CallKey::new("d2", "s", 1) };
    g.chat("big", &chat("same question"), acme).await.expect("paid call");
    g.chat("big", &chat("same question"), globex).await.expect("cache hit");
    assert_eq!(server.ledger().totals("big-model").calls, 1);
    let events = other.take();
    assert_eq!(events.len(), 1, "only the hit's own event: {events:?}");
    let hit = &events[0];
    assert!(hit.cached && hit.cost_micro_usd == 0);
    assert_eq!((hit.tenant.as_str(), hit.document_id.as_str()), ("globex", "d2"));
}

/// Embeddings are cached per input: a second request sends only the texts not seen before.
#[tokio::test]
async fn embeddings_already_answered_come_from_the_cache_and_only_new_texts_are_sent() {
    let dir = tempfile::tempdir().expect("dir");
    let server =
        common::mock_provider(MockConfig { embedding_dim: 8, ..MockConfig::default() }).await;
    let cache = format!("cache: {{ path: {} }}", dir.path().display());
    let g = gateway_with(&server, "", "  emb: { provider: m, name: e }", &cache);
    let log = CallLog::new(
        "p",
        "s",
        Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None },
    );
    let key = CallKey { tenant: "acme", log: Some(&log), ..CallKey::new("d", "s", 1) };
    let texts = |t: &[&str]| EmbedRequest {
        model: String::new(),
        inputs: t.iter().map(|s| (*s).to_owned()).collect(),
    };
    let first = g.embed("emb", &texts(&["alpha", "beta"]), key).await.expect("embed");
    let second = g.embed("emb", &texts(&["alpha", "gamma"]), key).await.expect("embed");
    assert_eq!(second.value.vectors.len(), 2);
    assert_eq!(second.value.vectors[0], first.value.vectors[0], "alpha from the cache");
    let sent: Vec<usize> = server.ledger().calls.iter().map(|c| c.inputs).collect();
    assert_eq!(sent, [2, 1], "the second call carried only gamma");
    let events = log.take();
    assert_eq!(events.iter().filter(|e| e.cached).count(), 1, "one cached event for the hit");
    assert_eq!(events.iter().filter(|e| !e.cached).count(), 2, "two paid calls");
}

/// A stage deadline that cuts a call off in flight (the provider has the request and may bill
/// it) must not lose the call's cost: the record's log keeps an event for it, estimated at the
/// most the call could cost — its input and every output token it asked for.
#[tokio::test]
async fn a_call_cancelled_in_flight_still_leaves_its_cost_event() {
    let server = common::mock_provider(MockConfig {
        latency: Duration::from_secs(3),
        ..MockConfig::default()
    })
    .await;
    let g = gateway(&server, "", "  big: { provider: m, name: big-model }");
    let log = CallLog::new(
        "p",
        "s",
        Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None },
    );
    let key = CallKey { tenant: "acme", log: Some(&log), ..CallKey::new("d", "s", 1) };
    let deadline = Duration::from_millis(300);
    let cut = tokio::time::timeout(deadline, g.chat("big", &chat("hello"), key)).await;
    assert!(cut.is_err(), "the deadline cancelled the call");
    let events = log.take();
    assert_eq!(events.len(), 1, "the cancelled call is metered: {events:?}");
    let e = &events[0];
    assert_eq!(e.outcome, "cancelled");
    assert!(e.estimated && !e.cached);
    assert_eq!((e.model_requested.as_str(), e.model_served.as_str()), ("big", "big-model"));
    assert_eq!(e.output_tokens, 32, "every output token asked for");
    assert!(e.input_tokens > 0, "the input, counted");
    // big: $2.50 a million input tokens, $10 a million output tokens, rounded up.
    let upper = (e.input_tokens as u64 * 2_500_000 + 32 * 10_000_000).div_ceil(1_000_000);
    assert_eq!(e.cost_micro_usd as u64, upper);

    // Another call cancelled at the same coordinates (another replica's) counts on its own.
    let again = CallLog::new(
        "p",
        "s",
        Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None },
    );
    let key = CallKey { tenant: "acme", log: Some(&again), ..CallKey::new("d", "s", 1) };
    let _ = tokio::time::timeout(deadline, g.chat("big", &chat("hello"), key)).await;
    assert_ne!(again.take()[0].event_id, e.event_id);
}

/// A gateway that cannot be built says which provider and what is missing, as a typed error
/// whose chain reads as one sentence.
#[tokio::test]
async fn a_missing_api_key_names_the_provider_and_the_variable() {
    let server = common::mock_provider(MockConfig::default()).await;
    let extra = "api_key_env: SLUICE_TEST_KEY_NEVER_SET";
    let Err(err) = build_gateway(&server, extra, "  big: { provider: m, name: big-model }", "")
    else {
        panic!("a provider without its key cannot be built");
    };
    assert!(
        matches!(&err, GatewayError::Provider { name, source: ProviderBuildError::KeyEnvUnset { var } }
            if name == "m" && var == "SLUICE_TEST_KEY_NEVER_SET"),
        "{err:?}"
    );
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    assert_eq!(
        text,
        "provider 'm': environment variable SLUICE_TEST_KEY_NEVER_SET (named by api_key_env) is \
         not set"
    );
}
