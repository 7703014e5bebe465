//! `sluice demo`: the whole pipeline offline. Starts the embedded broker and registry, runs every
//! stage, produces the example documents, waits until each one reached a final topic (an output
//! no stage reads, or a dead-letter topic) and prints where each ended up. Logs stay at WARN unless
//! `RUST_LOG` asks for more (see `Command::default_log_filter`): the user sees a progress line and
//! the tables.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value as Json;
use sluice::avro::Codec;
use sluice::config::{compile, Topology};
use sluice::devstack::DevStack;
use sluice::kafka::{registry_settings, BrokerKind};
use sluice::pipeline::run_stages;
use sluice::records_io::{produce_json_lines, reader, record_json};
use sluice::shutdown::Shutdown;

const TOPOLOGY: &str = include_str!("../../topologies/support-rag.yaml");
const KNOWLEDGE_BASE: &str = include_str!("../../examples/kb.jsonl");
const DOCUMENTS: &str = include_str!("../../examples/documents.jsonl");

#[derive(clap::Args)]
pub struct Args {
    /// Topology to run (default: the built-in copy of topologies/support-rag.yaml).
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Documents to feed, as JSON lines (default: the built-in examples/documents.jsonl).
    #[arg(long)]
    documents: Option<PathBuf>,
    /// Give up waiting for results after this long.
    #[arg(long, default_value = "120s", value_parser = sluice::config::parse_duration)]
    timeout: Duration,
}

/// The built-in topology, written next to its knowledge base so relative paths resolve.
fn builtin_topology() -> Result<Topology> {
    let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("topologies"))?;
    std::fs::create_dir_all(dir.join("examples"))?;
    std::fs::write(dir.join("examples/kb.jsonl"), KNOWLEDGE_BASE)?;
    let path = dir.join("topologies/support-rag.yaml");
    std::fs::write(&path, TOPOLOGY)?;
    compile(&path, TOPOLOGY).map_err(|e| anyhow::anyhow!("built-in topology: {e}"))
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut t = match &args.topology {
        Some(path) => super::load_topology(path)?,
        None => builtin_topology()?,
    };
    let documents = match &args.documents {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => DOCUMENTS.to_owned(),
    };
    let Some(input) = t.inputs.first().map(|i| i.name.clone()) else {
        bail!("the topology declares no input topic")
    };
    // The demo runs on the embedded broker, which has no transactions.
    if let Some(refused) = super::run::refused_delivery(&t, &[], BrokerKind::Embedded) {
        return Ok(refused);
    }
    let stack = DevStack::start(&mut t, "127.0.0.1:0".parse()?).await?;
    outln!("{}", stack.env_lines());

    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let pipeline = tokio::spawn({
        let (t, shutdown) = (t.clone(), shutdown.clone());
        async move { run_stages(&t, &[], shutdown).await }
    });

    let codec = Codec::connect(
        &registry_settings(&t),
        &[(input.clone(), sluice::avro::SchemaKind::Document)],
    )
    .await?;
    let report = produce_json_lines(
        &t.kafka,
        &codec,
        &input,
        sluice::avro::SchemaKind::Document,
        &documents,
        |_, _| {},
    )
    .await?;
    for bad in &report.bad {
        eprintln!("documents:{}: skipped: {}", bad.line, bad.error);
    }
    let expected: HashSet<String> = documents
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter_map(|j| j.get("id").and_then(Json::as_str).map(str::to_owned))
        .collect();
    outln!("produced {} documents to {input}; waiting for results…", report.produced);

    let results = collect_results(&t, &codec, &expected, args.timeout).await?;
    shutdown.request();
    pipeline.await?.context("pipeline")?;
    let events = sluice::metering::read_events(&t).await.context("reading the metering topic")?;
    drop(stack);

    print_table(&results);
    print_stage_counts(&t);
    print_costs(&events);
    let missing: Vec<&String> = expected.iter().filter(|id| !results.contains_key(*id)).collect();
    if !missing.is_empty() {
        eprintln!("no result within {:?} for: {missing:?}", args.timeout);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Topics where a document's journey ends: outputs no stage reads, and dead-letter topics.
fn final_topics(t: &Topology) -> Vec<String> {
    let read: HashSet<&str> = t.stages.iter().map(|s| s.input.as_str()).collect();
    let mut out: Vec<String> = t
        .stages
        .iter()
        .flat_map(|s| s.output_topics())
        .filter(|o| !read.contains(o))
        .map(str::to_owned)
        .collect();
    out.extend(t.stages.iter().map(|s| s.dead_letter_topic.clone()));
    out
}

/// Reads the final topics until every expected id has a record (keyed by document id).
async fn collect_results(
    t: &Topology,
    codec: &Codec,
    expected: &HashSet<String>,
    timeout: Duration,
) -> Result<BTreeMap<String, Json>> {
    let topics = final_topics(t);
    let kafka = t.kafka.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let deadline = Instant::now() + timeout;
    let reading = tokio::task::spawn_blocking(move || -> Result<()> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let reader = reader(&kafka, &names, true)?;
        reader.drain(
            None,
            false,
            deadline.saturating_duration_since(Instant::now()),
            || tx.is_closed(),
            |m| tx.blocking_send(m.detach()).is_ok(),
        )?;
        Ok(())
    });
    // Drawn on stderr, and only on a terminal.
    let bar = ProgressBar::new(expected.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} documents finished {elapsed}")
            .expect("template"),
    );
    let mut results = BTreeMap::new();
    while results.len() < expected.len() {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await else {
            break;
        };
        let json = record_json(codec, &message).await;
        if let Some(id) = json["key"].as_str().filter(|id| expected.contains(*id)) {
            results.insert(id.to_owned(), json);
            bar.set_position(results.len() as u64);
        }
    }
    bar.finish_and_clear();
    drop(rx);
    let _ = reading.await;
    Ok(results)
}

/// One row of the result table.
struct Row {
    id: String,
    tenant: String,
    result: String,
    label: String,
    model: String,
    detail: String,
}

impl Row {
    fn of(id: &str, r: &Json) -> Self {
        let v = &r["value"];
        let text = |j: &Json| j.as_str().unwrap_or("-").to_owned();
        let (result, detail) = if v.get("error_class").is_some() {
            (
                format!("dead letter ({})", v["stage"].as_str().unwrap_or("?")),
                v["error_message"].as_str().unwrap_or("").to_owned(),
            )
        } else {
            let verdict = v["review"]["verdict"].as_str().unwrap_or("OUTPUT").to_lowercase();
            (verdict, v["answer"]["text"].as_str().unwrap_or("").to_owned())
        };
        let tenant = v["document"]["tenant"]
            .as_str()
            .or_else(|| v["original_value"]["decoded"]["tenant"].as_str())
            .unwrap_or("-")
            .to_owned();
        Self {
            id: id.to_owned(),
            tenant,
            result,
            label: text(&v["classification"]["label"]),
            model: text(&v["answer"]["model"]),
            detail: detail.chars().take(60).collect(),
        }
    }
}

/// The result table; every column as wide as its longest value, so none runs into the next.
fn print_table(results: &BTreeMap<String, Json>) {
    let rows: Vec<Row> = results.iter().map(|(id, r)| Row::of(id, r)).collect();
    let width = |header: &str, cell: fn(&Row) -> &str| {
        rows.iter().map(|r| cell(r).chars().count()).chain([header.len()]).max().unwrap_or(0)
    };
    let w = [
        width("DOCUMENT", |r| &r.id),
        width("TENANT", |r| &r.tenant),
        width("RESULT", |r| &r.result),
        width("LABEL", |r| &r.label),
        width("MODEL", |r| &r.model),
    ];
    outln!(
        "\n{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  ANSWER / REASON",
        "DOCUMENT",
        "TENANT",
        "RESULT",
        "LABEL",
        "MODEL",
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3],
        w4 = w[4],
    );
    for r in &rows {
        outln!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}",
            r.id,
            r.tenant,
            r.result,
            r.label,
            r.model,
            r.detail,
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
        );
    }
}

fn print_stage_counts(t: &Topology) {
    let m = sluice::telemetry::metrics();
    outln!("\n{:<10} {:>6} {:>14} {:>16}", "STAGE", "OK", "DEAD-LETTERED", "FAILED ATTEMPTS");
    for s in &t.stages {
        let count = |outcome: &str| m.records.with_label_values(&[s.name.as_str(), outcome]).get();
        let failed: u64 = ["retryable", "permanent", "fatal"]
            .iter()
            .map(|c| m.attempt_failures.with_label_values(&[s.name.as_str(), c]).get())
            .sum();
        outln!("{:<10} {:>6} {:>14} {:>16}", s.name, count("ok"), count("dead_lettered"), failed);
    }
}

fn print_costs(events: &[sluice::metering::CostEvent]) {
    use sluice::metering::report::{dedup, summarize, usd, GroupBy};
    let events = dedup(events.iter().cloned());
    outln!(
        "\n{:<10} {:>6} {:>7} {:>10} {:>11} {:>12}",
        "COST",
        "CALLS",
        "CACHED",
        "IN TOKENS",
        "OUT TOKENS",
        "USD"
    );
    for r in summarize(&events, &[GroupBy::Stage]) {
        outln!(
            "{:<10} {:>6} {:>7} {:>10} {:>11} {:>12}",
            r.key.joined(),
            r.requests,
            r.cache_hits,
            r.input_tokens,
            r.output_tokens,
            usd(r.cost_micro_usd)
        );
    }
}
