//! `sluice index`: embeds every passage of a JSON-lines knowledge base with a
//! retrieve stage's embedding model and upserts it into that stage's vector store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::config::{ModelChoice, StageKindSpec};
use sluice::policy::Gateway;
use sluice::stage::{index_knowledge_base, Models};
use sluice::store::VectorStore;

#[derive(clap::Args)]
pub struct Args {
    /// JSON lines with `id`, `text` and optional `source`.
    knowledge_base: PathBuf,
    #[arg(long)]
    topology: PathBuf,
    /// The retrieve stage whose store and model to use (default: the only one).
    #[arg(long)]
    stage: Option<String>,
}

pub async fn run(a: Args) -> Result<ExitCode> {
    let t = super::load_topology(&a.topology)?;
    let retrieves: Vec<_> = t
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKindSpec::Retrieve { .. }))
        .filter(|s| a.stage.as_ref().is_none_or(|n| *n == s.name))
        .collect();
    let [spec] = retrieves.as_slice() else {
        bail!("name one retrieve stage with --stage (found {})", retrieves.len())
    };
    let StageKindSpec::Retrieve { store, dimensions, .. } = &spec.kind else { unreachable!() };
    let choice: ModelChoice = spec.model.clone().context("the retrieve stage names no model")?;
    let gateway = Arc::new(Gateway::new(&t)?);
    let models = Models { gateway, choice };
    let store = VectorStore::open(store, *dimensions).await?;
    let total = std::fs::read_to_string(&a.knowledge_base)
        .with_context(|| format!("reading {}", a.knowledge_base.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} passages {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let n = index_knowledge_base(&models, &store, &a.knowledge_base, |done| {
        bar.set_position(done as u64)
    })
    .await?;
    bar.finish();
    outln!(
        "indexed {n} passages into stage '{}' ({} in the store)",
        spec.name,
        store.count().await?
    );
    Ok(ExitCode::SUCCESS)
}
