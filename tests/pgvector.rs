//! The pgvector store against real PostgreSQL with the real pgvector extension: PGlite over the
//! Postgres wire protocol, which scripts/with-pglite installs, starts and exports as
//! SLUICE_PG_URL. The tests that need it are #[ignore]d; run them with
//!   scripts/with-pglite cargo test --test pgvector -- --include-ignored
//! (scripts/test's `pgvector` step does).

#[path = "pgvector/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice::avro::{Document, Envelope, Passage};
use sluice::config::{compile, PgUrl, StageKindSpec, StoreSpec, Topology};
use sluice::policy::Gateway;
use sluice::stage::{AnyStage, Stage, StageContext, StageError};
use sluice::store::{Entry, StoreError, VectorStore};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn spec(url: &str, table: &str) -> StoreSpec {
    StoreSpec::Pgvector { url: PgUrl::Inline(url.into()), password: None, table: table.into() }
}

/// A topology with two retrieve stages on the same model: `pg` on pgvector (its URL read from
/// SLUICE_PG_URL; it indexes `kb.jsonl`, which must exist, when it starts on an empty table),
/// `local` on the embedded store.
fn topology(dir: &Path, table: &str) -> (std::path::PathBuf, Topology) {
    let yaml = format!(
        r#"
pipeline: pgv
providers:
  sim: {{ kind: simulated, latency: 1ms, failure_rate: 0, rate_limit_rate: 0, embedding_dim: 64 }}
models:
  emb: {{ provider: sim, name: sim-embed }}
inputs: {{ docs: {{}} }}
stages:
  pg: {{ kind: retrieve, input: docs, output: a, model: emb, retrieve: {{ store: {{ kind: pgvector, url_env: SLUICE_PG_URL, table: {table} }}, knowledge_base: kb.jsonl, top_k: 5, dimensions: 64 }} }}
  local: {{ kind: retrieve, input: docs, output: b, model: emb, retrieve: {{ store: {{ kind: embedded, path: store }}, top_k: 5, dimensions: 64 }} }}
"#
    );
    let path = dir.join("t.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    (path.clone(), compile(&path, &yaml).unwrap_or_else(|e| panic!("{e}")))
}

fn index(topology: &Path, stage: &str, kb: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["index", "--topology", topology.to_str().expect("utf8"), "--stage", stage])
        .arg(kb)
        .output()
        .expect("run sluice index");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

async fn retrieve(stage: &AnyStage, question: &str) -> Vec<Passage> {
    let doc = Envelope::new(Document {
        id: "q".into(),
        tenant: "acme".into(),
        content: question.into(),
        metadata: BTreeMap::new(),
    });
    let out = stage.process(doc, StageContext::unmetered("r", 1)).await.expect("retrieve");
    out.into_iter().next().expect("one output").record.passages
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn sluice_index_fills_the_table_and_retrieval_matches_the_embedded_store() {
    let dir = tempfile::tempdir().expect("dir");
    let table = support::table("match");
    let kb = dir.path().join("kb.jsonl");
    let n = support::knowledge_base(&kb, 300);
    let (path, t) = topology(dir.path(), &table);
    let expected = format!("indexed {n} passages into stage 'pg' ({n} in the store)");
    assert!(index(&path, "pg", &kb).contains(&expected));
    // Upserts by passage id: indexing again replaces, never duplicates.
    assert!(index(&path, "pg", &kb).contains(&expected));
    assert!(index(&path, "local", &kb).contains(&format!("({n} in the store)")));

    let gateway = Arc::new(Gateway::new(&t).expect("gateway"));
    let mut stages = Vec::new();
    for s in &t.stages {
        stages.push(AnyStage::build(s, &t, gateway.clone()).await.expect("stage builds"));
    }
    let mut questions: Vec<String> = support::bags(99, 40);
    questions.push("How do I reset my password? The sign-in page rejects it.".into());
    questions.push("Can we configure SAML single sign-on?".into());
    for q in &questions {
        let (pg, local) = (retrieve(&stages[0], q).await, retrieve(&stages[1], q).await);
        let ids = |ps: &[Passage]| ps.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&pg), ids(&local), "the same top 5, in the same order, for {q:?}");
        assert_eq!(pg.len(), 5, "{q}");
        for (a, b) in pg.iter().zip(&local) {
            // The same dot product, computed in f32 by pgvector and by sluice.
            assert!((a.score - b.score).abs() < 1e-5, "{q}: {pg:?} vs {local:?}");
            assert_eq!((&a.text, &a.source), (&b.text, &b.source));
        }
    }
    assert_eq!(retrieve(&stages[0], "Can we configure SAML single sign-on?").await[0].id, "kb-sso");
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn a_stage_starting_on_an_empty_table_indexes_its_knowledge_base() {
    let dir = tempfile::tempdir().expect("dir");
    let table = support::table("start");
    assert_eq!(support::knowledge_base(&dir.path().join("kb.jsonl"), 0), 10);
    let (_, t) = topology(dir.path(), &table);
    let gateway = Arc::new(Gateway::new(&t).expect("gateway"));
    let stage = AnyStage::build(&t.stages[0], &t, gateway).await.expect("stage builds");
    let store = VectorStore::open(&spec(&support::url(), &table), 64).await.expect("open");
    assert_eq!(store.count().await.expect("count"), 10, "indexed at start");
    let top = retrieve(&stage, "Can we configure SAML single sign-on?").await;
    assert_eq!(top[0].id, "kb-sso", "{top:?}");
    assert_eq!(top[0].source, "support-handbook");
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn upsert_replaces_by_id_and_search_ranks_by_inner_product() {
    let url = support::url();
    let table = support::table("rank");
    let store = VectorStore::open(&spec(&url, &table), 2).await.expect("open creates the table");
    assert_eq!(store.count().await.expect("count"), 0);
    let entry = |id: &str, v: [f32; 2]| Entry {
        passage: Passage {
            id: id.into(),
            text: format!("{id} text"),
            score: 0.0,
            source: "t".into(),
        },
        vector: v.to_vec(),
    };
    let batch = vec![entry("a", [1.0, 0.0]), entry("b", [0.0, 1.0]), entry("c", [0.0, 1.0])];
    store.upsert(batch).await.expect("upsert");
    // The same id twice in one call: the last wins, as in the embedded store.
    store.upsert(vec![entry("a", [0.0, 0.5]), entry("a", [0.6, 0.8])]).await.expect("replace");
    assert_eq!(store.count().await.expect("count"), 3);
    let top = store.search(&[0.0, 2.0], 3).await.expect("search");
    let ids: Vec<&str> = top.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["b", "c", "a"], "highest inner product first, ties by id: {top:?}");
    assert!((top[0].score - 2.0).abs() < 1e-6 && (top[2].score - 1.6).abs() < 1e-6, "{top:?}");
    assert_eq!(top[2].text, "a text");
    // A negative product ranks last and keeps its sign.
    let low = store.search(&[-1.0, 0.0], 3).await.expect("search");
    assert_eq!(low.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["b", "c", "a"]);
    assert!((low[2].score + 0.6).abs() < 1e-6, "{low:?}");
    let reopened = VectorStore::open(&spec(&url, &table), 2).await.expect("reopen");
    assert_eq!(reopened.count().await.expect("count"), 3);

    // Records in flight share a store's connection (pipelined), and stores their own: 2 × 16
    // searches at once all get the right answer.
    let stores = [Arc::new(store), Arc::new(reopened)];
    let searches = (0..32).map(|i| {
        let store = stores[i % 2].clone();
        let query = if i % 3 == 0 { [1.0, 0.0] } else { [0.0, 1.0] };
        tokio::spawn(async move { (query, store.search(&query, 1).await.expect("search")) })
    });
    for s in searches {
        let (query, top) = s.await.expect("task");
        let expected = if query[0] > 0.0 { "a" } else { "b" };
        assert_eq!(top[0].id, expected, "{query:?}: {top:?}");
    }
}

fn invalid(result: Result<VectorStore, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(m)) => m,
        Err(e) => panic!("expected Invalid, got {e:?}"),
        Ok(_) => panic!("expected Invalid, the store opened"),
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn a_table_of_another_dimension_or_shape_is_a_clear_error_at_start() {
    let url = support::url();
    let table = support::table("dims");
    VectorStore::open(&spec(&url, &table), 64).await.expect("creates a 64-dimensional table");
    let m = invalid(VectorStore::open(&spec(&url, &table), 32).await);
    assert!(m.contains("vector(64)") && m.contains("32 dimensions"), "{m}");
    assert!(m.contains("store.table"), "says what to do: {m}");

    let other = support::table("shape");
    let client = support::connect(&url).await;
    client.batch_execute(&format!("CREATE TABLE {other} (id int, body text)")).await.expect("ddl");
    let m = invalid(VectorStore::open(&spec(&url, &other), 64).await);
    assert!(m.contains("not a sluice passage table"), "{m}");

    // The retrieve stage refuses to start on it: a fatal error, not a retry.
    let err = StageError::from(StoreError::Invalid(m));
    assert!(matches!(err, StageError::Fatal { .. }), "{err:?}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn a_database_without_pgvector_is_a_clear_error_and_gets_no_table() {
    let bare = support::Server::bare();
    let table = support::table("noext");
    let m = invalid(VectorStore::open(&spec(&bare.url, &table), 8).await);
    assert!(m.contains("CREATE EXTENSION vector"), "says what to do: {m}");
    let client = support::connect(&bare.url).await;
    let row = client.query_one("SELECT to_regclass($1)::text", &[&table]).await.expect("query");
    assert_eq!(row.get::<_, Option<String>>(0), None, "no table was created");
}

#[tokio::test]
#[ignore = "needs PostgreSQL with pgvector: scripts/with-pglite"]
async fn a_lost_connection_is_retryable_and_the_next_call_reconnects() {
    let url = support::url();
    let mut relay = support::Relay::start(&support::host_port(&url)).await;
    let via = url.replace(&support::host_port(&url), &format!("127.0.0.1:{}", relay.port));
    let store = VectorStore::open(&spec(&via, &support::table("relay")), 4).await.expect("open");
    assert_eq!(store.count().await.expect("count"), 0);
    relay.cut();
    match store.search(&[1.0, 0.0, 0.0, 0.0], 3).await {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(matches!(StageError::from(e), StageError::Retryable { .. }));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    relay.restore().await;
    assert!(store.search(&[1.0, 0.0, 0.0, 0.0], 3).await.expect("reconnected").is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable_and_the_password_never_shows() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("a").port();
    let url = format!("postgresql://sluice:hunter2-secret@127.0.0.1:{port}/rag?sslmode=disable");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pg-url");
    std::fs::write(&file, &url).expect("write the url secret");
    let spec = StoreSpec::Pgvector {
        url: PgUrl::Secret(sluice::config::SecretSource::File(file)),
        password: None,
        table: "kb".into(),
    };
    let err = VectorStore::open(&spec, 8).await.err().expect("nothing listens");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("refused"), "says why: {err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}/rag")) && !text.contains("hunter2"), "{text}");
    assert!(matches!(StageError::from(err), StageError::Retryable { .. }));
}

#[test]
fn an_inline_password_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = |store: &str| {
        format!(
            "pipeline: p
providers: {{ sim: {{ kind: simulated }} }}
models: {{ emb: {{ provider: sim, name: e }} }}
inputs: {{ docs: {{}} }}
stages:
  r: {{ kind: retrieve, input: docs, output: o, model: emb, retrieve: {{ store: {store} }} }}
"
        )
    };
    let path = dir.path().join("t.yaml");
    let inline = "{ kind: pgvector, url: 'postgresql://u:hunter2@db/rag', table: kb }";
    let err = compile(&path, &yaml(inline)).expect_err("refused").to_string();
    assert!(err.contains("url_env") && !err.contains("hunter2"), "{err}");
    let bad = "{ kind: pgvector, url: 'postgresql://db/rag', table: 'kb; drop table x' }";
    let err = compile(&path, &yaml(bad)).expect_err("refused").to_string();
    assert!(err.contains("not a table name"), "{err}");
    let ok = "{ kind: pgvector, url: 'postgresql://sluice@db/rag', password_env: PGPASSWORD, \
              table: rag.kb }";
    let t = compile(&path, &yaml(ok)).unwrap_or_else(|e| panic!("{e}"));
    let StageKindSpec::Retrieve { store, .. } = &t.stages[0].kind else { panic!("retrieve") };
    assert!(
        matches!(store, StoreSpec::Pgvector { password: Some(_), table, .. } if table == "rag.kb")
    );
}
