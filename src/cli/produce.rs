use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::avro::Codec;
use sluice::kafka::registry_settings;
use sluice::records_io::produce_json_lines;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Topic to write (default: the topology's first input topic).
    #[arg(long)]
    topic: Option<String>,
    /// JSON lines, one record per line.
    file: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let topic = match args.topic {
        Some(topic) => topic,
        None => t
            .inputs
            .first()
            .map(|i| i.name.clone())
            .context("the topology declares no input topic; pass --topic")?,
    };
    let Some(kind) = t.schema_of(&topic) else {
        bail!("topic '{topic}' is not part of the topology")
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let codec = Codec::connect(&registry_settings(&t), &[(topic.clone(), kind)]).await?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec}").expect("template"),
    );
    let report = produce_json_lines(&t.kafka, &codec, &topic, kind, &text, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .await?;
    bar.finish_and_clear();
    for bad in &report.bad {
        eprintln!("{}:{}: skipped: {}", args.file.display(), bad.line, bad.error);
    }
    outln!("produced {} record(s) to {topic}; skipped {}", report.produced, report.bad.len());
    Ok(if report.bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
