//! `sluice cost report`: the metering topic, duplicates removed by event id, grouped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use sluice::metering::report::{dedup, summarize, usd, GroupBy, Row};
use sluice::metering::{now_ms, read_events};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Requests, tokens, USD and p50/p95 latency per tenant, stage, model or prompt template.
    Report(ReportArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[arg(long)]
    topology: PathBuf,
    /// Only events from this far back (e.g. 24h, 7d); default: everything on the topic.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    #[arg(long, value_enum, default_value_t = GroupBy::Tenant)]
    by: GroupBy,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let Command::Report(a) = args.command;
    let t = super::load_topology(&a.topology)?;
    let from = a.since.map_or(i64::MIN, |d| now_ms() - d.as_millis() as i64);
    let events: Vec<_> =
        dedup(read_events(&t).await?).into_iter().filter(|e| e.timestamp_ms >= from).collect();
    let rows = summarize(&events, a.by);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => {
            println!(
                "group,requests,failed,cache_hits,input_tokens,output_tokens,usd,p50_ms,p95_ms"
            );
            for r in &rows {
                println!(
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    csv(&r.group),
                    r.requests,
                    r.failed,
                    r.cache_hits,
                    r.input_tokens,
                    r.output_tokens,
                    usd(r.cost_micro_usd),
                    r.latency_p50_ms,
                    r.latency_p95_ms,
                    time(r.first_ms),
                    time(r.last_ms)
                );
            }
        }
        Format::Table => table(&rows, a.by, events.len()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds since the epoch as an RFC 3339 time in seconds.
fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn table(rows: &[Row], by: GroupBy, events: usize) {
    let name = format!("{by:?}").to_uppercase();
    println!(
        "{name:<24} {:>9} {:>7} {:>7} {:>12} {:>12} {:>14} {:>8} {:>8}  {:<20}  {:<20}",
        "REQUESTS",
        "FAILED",
        "CACHED",
        "IN TOKENS",
        "OUT TOKENS",
        "USD",
        "P50 MS",
        "P95 MS",
        "FIRST SEEN",
        "LAST SEEN"
    );
    let mut total = 0;
    for r in rows {
        total += r.cost_micro_usd;
        println!(
            "{:<24} {:>9} {:>7} {:>7} {:>12} {:>12} {:>14} {:>8} {:>8}  {:<20}  {:<20}",
            r.group,
            r.requests,
            r.failed,
            r.cache_hits,
            r.input_tokens,
            r.output_tokens,
            usd(r.cost_micro_usd),
            r.latency_p50_ms,
            r.latency_p95_ms,
            time(r.first_ms),
            time(r.last_ms)
        );
    }
    println!("{events} events after removing duplicates; total {} USD", usd(total));
}
