//! The labelled pairs of `tests/fixtures/semantic/pairs.jsonl`, and their embeddings taken the way
//! a semantic lookup takes them: sluice's gateway and its `openai` provider, against the
//! all-MiniLM-L6-v2 server of `scripts/with-embedder`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice::config::compile;
use sluice::policy::Gateway;
use sluice::provider::{CallKey, EmbedRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Should share an answer.
    Paraphrase,
    /// Must not share an answer.
    NearMiss,
    /// The same question from two tenants: must not share under `scope: tenant`.
    OtherTenant,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pair {
    pub id: String,
    pub label: Label,
    /// Paraphrases: `light` (the same words with a greeting, typo or filler) or `reworded`.
    pub style: Option<String>,
    /// Near misses: what differs (`identifier`, `negation`, `action`, …).
    pub differs: Option<String>,
    /// Other-tenant pairs: `identical` or `reworded`.
    pub variant: Option<String>,
    pub tenant_a: String,
    pub a: String,
    pub tenant_b: String,
    pub b: String,
}

impl Pair {
    /// The pair's row in the tables: `paraphrase/light`, `near_miss/negation`, ….
    pub fn category(&self) -> String {
        let (label, kind) = match self.label {
            Label::Paraphrase => ("paraphrase", &self.style),
            Label::NearMiss => ("near_miss", &self.differs),
            Label::OtherTenant => ("other_tenant", &self.variant),
        };
        format!("{label}/{}", kind.as_deref().unwrap_or("-"))
    }
}

pub const PAIRS: &str = "tests/fixtures/semantic/pairs.jsonl";

pub fn load() -> Vec<Pair> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PAIRS);
    let text = std::fs::read_to_string(&path).expect("the labelled pairs are in the repository");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{PAIRS}: {e}: {l}")))
        .collect()
}

/// What embedding the set cost.
pub struct Embedded {
    pub vectors: HashMap<String, Vec<f32>>,
    pub calls: usize,
    pub elapsed: Duration,
}

/// Embeds every distinct text of `pairs` through a gateway whose model `mini` is the `openai`
/// provider at `url`, 64 texts per call.
pub async fn embed(url: &str, model: &str, pairs: &[Pair]) -> Embedded {
    let yaml = format!(
        r#"
pipeline: semantic-bench
providers:
  embedder: {{ kind: openai, base_url: "{url}", timeout: 120s }}
models:
  mini: {{ provider: embedder, name: "{model}" }}
prices:
  set_on: 2026-12-01
  models:
    mini: {{ input: 0, output: 0 }}
inputs: {{ docs: {{}} }}
stages:
  e: {{ kind: embed, input: docs, output: out, model: mini }}
"#
    );
    let topology =
        compile(Path::new("semantic-bench.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::new(&topology).expect("gateway");
    let texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let started = Instant::now();
    let mut vectors = HashMap::new();
    let mut calls = 0;
    for (i, batch) in texts.chunks(64).enumerate() {
        let request = EmbedRequest { model: String::new(), inputs: batch.to_vec() };
        let id = format!("batch-{i}");
        let served = gateway
            .embed("mini", &request, CallKey::new(&id, "e", 1))
            .await
            .unwrap_or_else(|e| panic!("embedding through the openai provider at {url}: {e}"));
        assert_eq!(served.value.vectors.len(), batch.len(), "one vector per text");
        calls += 1;
        vectors.extend(batch.iter().cloned().zip(served.value.vectors));
    }
    Embedded { vectors, calls, elapsed: started.elapsed() }
}
