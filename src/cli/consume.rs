use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use sluice::avro::Codec;
use sluice::kafka::registry_settings;
use sluice::records_io::{reader, record_json};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Stop at the end of every partition instead of following.
    #[arg(long)]
    exit_at_end: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let codec = Codec::connect(&registry_settings(&t), &[]).await?;
    let kafka = t.kafka.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let reading = tokio::task::spawn_blocking(move || -> Result<usize> {
        let reader = reader(&kafka, &[args.topic.as_str()], args.from_beginning)?;
        let idle = if args.exit_at_end { Duration::from_secs(10) } else { Duration::MAX };
        Ok(reader.drain(
            args.max,
            args.exit_at_end,
            idle,
            || tx.is_closed(),
            |m| tx.blocking_send(m.detach()).is_ok(),
        )?)
    });
    while let Some(message) = rx.recv().await {
        println!("{}", record_json(&codec, &message).await);
    }
    reading.await??;
    Ok(ExitCode::SUCCESS)
}
