//! Phase one for the settings of each stage kind (`classify:`, `embed:`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::defaults as d;
use super::model::{JudgeSpec, StageKindSpec, StoreSpec};
use super::policy::{AbSplit, ModelSpec};
use super::providers::{model_ref, secret};
use super::section::Section;
use super::values::{duration, limit};

pub fn classify(s: &mut Section<'_>) -> Option<StageKindSpec> {
    let labels: Vec<String> = s.req("labels").unwrap_or_default();
    if labels.is_empty() {
        s.error("labels", "at least one label is required");
    }
    let mut seen = BTreeSet::new();
    for l in &labels {
        if !seen.insert(l) {
            s.error("labels", format!("label '{l}' is listed twice"));
        }
    }
    let raw: BTreeMap<String, Vec<String>> = s.or("rules", BTreeMap::new());
    for (label, patterns) in &raw {
        if !labels.contains(label) {
            s.error(&format!("rules.{label}"), "not one of the configured labels");
        }
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                s.error(
                    &format!("rules.{label}[{i}]"),
                    format!("not a valid regular expression: {e}"),
                );
            }
        }
    }
    // Rules are tried in the order of `labels`.
    let rules = labels.iter().filter_map(|l| raw.get(l).map(|p| (l.clone(), p.clone()))).collect();
    let fallback_label: String = s.or("fallback_label", d::CLASSIFY_FALLBACK_LABEL.to_owned());
    if !raw.is_empty() && !labels.contains(&fallback_label) {
        s.error(
            "fallback_label",
            format!("'{fallback_label}' (for documents no rule matches) is not one of the labels"),
        );
    }
    let prompt: Option<String> = s.opt("prompt");
    if prompt.is_some() && !raw.is_empty() {
        s.error("prompt", "rule-based classification calls no model: drop the prompt or the rules");
    }
    Some(StageKindSpec::Classify { labels, rules, fallback_label, prompt })
}

pub fn embed(s: &mut Section<'_>) -> Option<StageKindSpec> {
    let chunk_tokens = limit(s, "chunk_tokens", d::CHUNK_TOKENS, 8, 65_536);
    let chunk_overlap = limit(s, "chunk_overlap", d::CHUNK_OVERLAP, 0, 65_536);
    if chunk_overlap >= chunk_tokens {
        s.error("chunk_overlap", format!("must be smaller than chunk_tokens ({chunk_tokens})"));
    }
    let batch_size = limit(s, "batch_size", d::EMBED_BATCH_SIZE, 1, 2048);
    let linger = duration(s, "linger", d::EMBED_LINGER);
    let dimensions = limit(s, "dimensions", d::SIM_EMBEDDING_DIM, 1, 65_536);
    Some(StageKindSpec::Embed { chunk_tokens, chunk_overlap, batch_size, linger, dimensions })
}

pub fn retrieve(s: &mut Section<'_>, base_dir: &Path) -> Option<StageKindSpec> {
    let top_k = limit(s, "top_k", d::TOP_K, 1, 1000);
    let dimensions = limit(s, "dimensions", d::SIM_EMBEDDING_DIM, 1, 65_536);
    let knowledge_base = s.opt::<String>("knowledge_base").map(|kb| base_dir.join(kb));
    if let Some(kb) = knowledge_base.as_ref().filter(|kb| !kb.is_file()) {
        s.error("knowledge_base", format!("file '{}' does not exist", kb.display()));
    }
    let store = s.nested("store", |st| {
        let kind: String = st.or("kind", "embedded".to_owned());
        match kind.as_str() {
            "embedded" => {
                let path: Option<String> = st.req("path");
                Some(StoreSpec::Embedded { path: base_dir.join(path?) })
            }
            "qdrant" => {
                let url: Option<String> = st.req("url");
                let collection: Option<String> = st.req("collection");
                let api_key = secret(st, "api_key", base_dir);
                Some(StoreSpec::Qdrant {
                    url: url?.trim_end_matches('/').to_owned(),
                    collection: collection?,
                    api_key,
                })
            }
            "pgvector" => super::store_pg::pgvector(st, base_dir),
            other => {
                st.error(
                    "kind",
                    format!("unknown store kind '{other}' (expected embedded, qdrant, pgvector)"),
                );
                None
            }
        }
    });
    Some(StageKindSpec::Retrieve { store: store?, knowledge_base, top_k, dimensions })
}

pub fn generate(s: &mut Section<'_>) -> Option<StageKindSpec> {
    let prompt: Option<String> = s.req("prompt");
    let ab = match s.peek("ab") {
        None => None,
        Some(_) => s.nested("ab", |a| {
            let prompt: Option<String> = a.req("prompt");
            let weight: Option<f64> = a.req("weight");
            if weight.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
                a.error("weight", "must be between 0.0 and 1.0");
            }
            Some(AbSplit { prompt: prompt?, weight: weight? })
        }),
    };
    let max_output_tokens =
        limit(s, "max_output_tokens", d::MAX_OUTPUT_TOKENS as usize, 1, 1 << 20) as u32;
    Some(StageKindSpec::Generate { prompt: prompt?, ab, max_output_tokens })
}

/// The `review:` section; the topics are stage-level fields passed in.
pub fn review(
    s: &mut Section<'_>,
    implicit: &mut BTreeMap<String, ModelSpec>,
    needs_human_output: String,
    rejected_output: String,
) -> Option<StageKindSpec> {
    let blocked_terms: Vec<String> = s.or("blocked_terms", Vec::new());
    let judge = match s.peek("judge") {
        None => None,
        Some(_) => s.nested("judge", |j| {
            let model = model_ref(j, "model", implicit);
            if model.is_none() && j.peek("model").is_none() {
                j.error("model", "missing required field");
            }
            let threshold = j.opt::<f64>("threshold").unwrap_or(d::JUDGE_THRESHOLD);
            if !(0.0..=1.0).contains(&threshold) {
                j.error("threshold", "must be between 0.0 and 1.0");
            }
            Some(JudgeSpec { model: model?, threshold })
        }),
    };
    Some(StageKindSpec::Review { blocked_terms, judge, needs_human_output, rejected_output })
}
