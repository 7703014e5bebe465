//! `sluice cost report`: the metering topic, duplicates removed by event id, grouped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use sluice::call::now_ms;
use sluice::metering::read_events;
use sluice::metering::report::{dedup, summarize, usd, GroupBy, Row};

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
            println!("{}", HEADERS.map(|h| h.to_lowercase().replace(' ', "_")).join(","));
            for r in &rows {
                println!("{}", cells(r).map(|c| csv(&c)).join(","));
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

const HEADERS: [&str; 11] = [
    "GROUP",
    "REQUESTS",
    "FAILED",
    "CACHED",
    "IN TOKENS",
    "OUT TOKENS",
    "USD",
    "P50 MS",
    "P95 MS",
    "FIRST SEEN",
    "LAST SEEN",
];
const WIDTHS: [usize; 11] = [24, 9, 7, 7, 12, 12, 14, 8, 8, 20, 20];

fn cells(r: &Row) -> [String; 11] {
    [
        r.group.clone(),
        r.requests.to_string(),
        r.failed.to_string(),
        r.cache_hits.to_string(),
        r.input_tokens.to_string(),
        r.output_tokens.to_string(),
        usd(r.cost_micro_usd),
        r.latency_p50_ms.to_string(),
        r.latency_p95_ms.to_string(),
        time(r.first_ms),
        time(r.last_ms),
    ]
}

/// Columns padded to their width: the group and times left-aligned, numbers right-aligned.
fn line(cells: &[String; 11]) -> String {
    let mut out = String::new();
    for (i, (c, w)) in cells.iter().zip(WIDTHS).enumerate() {
        match i {
            0 | 9 | 10 => out.push_str(&format!("{c:<w$} ")),
            _ => out.push_str(&format!("{c:>w$} ")),
        }
    }
    out.trim_end().to_owned()
}

fn table(rows: &[Row], by: GroupBy, events: usize) {
    let mut headers = HEADERS.map(str::to_owned);
    headers[0] = format!("{by:?}").to_uppercase();
    println!("{}", line(&headers));
    for r in rows {
        println!("{}", line(&cells(r)));
    }
    let total: u64 = rows.iter().map(|r| r.cost_micro_usd).sum();
    println!("{events} events after removing duplicates; total {} USD", usd(total));
}
