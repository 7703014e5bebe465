//! `sluice cost report`: the metering topic, duplicates removed by event id, in a time window,
//! grouped by one or more keys, with latency percentiles per group.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use sluice::call::now_ms;
use sluice::metering::read_events;
use sluice::metering::report::{dedup, summarize, GroupBy};
use sluice::metering::report_format::{csv, table};
use sluice::metering::report_window::Window;
use sluice::time::{parse_datetime, parse_duration};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Requests, tokens, USD and p50/p95/p99 latency per tenant, stage, model or prompt template
    /// (or several at once), in a time window.
    #[command(after_help = EXAMPLE)]
    Report(ReportArgs),
}

const EXAMPLE: &str = "Which prompt versions were live at 14:23 UTC, against which models, and \
                       their p95:\n  sluice cost report --topology T --since \
                       2026-11-26T14:23:00Z --until 2026-11-26T14:24:00Z --by template,model\n\n\
                       Latency percentiles are nearest-rank over model calls; cache hits are \
                       not model calls and are left out of them.";

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
    /// Only events at or after this: a duration back from now (24h, 90m) or an RFC 3339 /
    /// ISO 8601 time (2026-11-26T14:00:00Z; no zone means UTC). Default: the topic's start.
    #[arg(long, value_parser = bound)]
    since: Option<Bound>,
    /// Only events before this (exclusive), in the same forms as --since. Default: the topic's
    /// end.
    #[arg(long, value_parser = bound)]
    until: Option<Bound>,
    /// The keys to group by, comma-separated, e.g. template,model.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tenant")]
    by: Vec<GroupBy>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One end of the window as typed: a duration back from now, or an instant (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Ago(Duration),
    At(i64),
}

impl Bound {
    fn at(self, now_ms: i64) -> i64 {
        match self {
            Self::Ago(d) => now_ms.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
            Self::At(ms) => ms,
        }
    }
}

fn bound(text: &str) -> Result<Bound, String> {
    if let Ok(d) = parse_duration(text) {
        return Ok(Bound::Ago(d));
    }
    parse_datetime(text).map(Bound::At).map_err(|_| {
        format!(
            "'{text}' is neither a duration back from now (24h, 90m, 7d) nor an RFC 3339 / ISO \
             8601 time (2026-11-26T14:23:00Z, 2026-11-26T15:23:00+01:00)"
        )
    })
}

/// The keys in the order given; a key named twice is refused.
fn keys(by: &[GroupBy]) -> Result<Vec<GroupBy>> {
    for (i, b) in by.iter().enumerate() {
        if by[..i].contains(b) {
            bail!("--by names '{}' twice", b.name());
        }
    }
    Ok(by.to_vec())
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let Command::Report(a) = args.command;
    let by = keys(&a.by)?;
    let now = now_ms();
    let window = Window::new(a.since.map(|b| b.at(now)), a.until.map(|b| b.at(now)))?;
    let t = super::load_topology(&a.topology)?;
    let events: Vec<_> = dedup(read_events(&t).await?)
        .into_iter()
        .filter(|e| window.contains(e.timestamp_ms))
        .collect();
    let rows = summarize(&events, &by);
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => out!("{}", csv(&rows, &by)),
        Format::Table => out!("{}", table(&rows, &by, &window, events.len())),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_durations_back_or_instants_with_or_without_a_zone() {
        assert_eq!(bound("24h"), Ok(Bound::Ago(Duration::from_secs(86_400))));
        assert_eq!(bound("90m").unwrap().at(10_000_000), 10_000_000 - 5_400_000);
        let utc = 1_795_702_980_000; // 2026-11-26T14:23:00Z
        assert_eq!(bound("2026-11-26T14:23:00Z"), Ok(Bound::At(utc)));
        assert_eq!(bound("2026-11-26T14:23:00"), Ok(Bound::At(utc)));
        assert_eq!(bound("2026-11-26T15:23:00+01:00"), Ok(Bound::At(utc)));
        assert_eq!(bound("2026-11-26T14:23:00.250Z"), Ok(Bound::At(utc + 250)));
        assert_eq!(bound("2026-11-26T14:23:00Z").unwrap().at(0), utc, "an instant ignores now");
    }

    #[test]
    fn a_bound_that_is_neither_names_both_forms() {
        for bad in ["yesterday", "14:23", "2026-11-26T14:23:00+1", "2026-13-01T00:00:00Z", ""] {
            let e = bound(bad).unwrap_err();
            assert!(e.contains("duration back from now") && e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_key_named_twice_is_refused() {
        let ok = keys(&[GroupBy::Template, GroupBy::Model]).unwrap();
        assert_eq!(ok, [GroupBy::Template, GroupBy::Model]);
        let twice = keys(&[GroupBy::Model, GroupBy::Stage, GroupBy::Model]).unwrap_err();
        assert_eq!(twice.to_string(), "--by names 'model' twice");
    }
}
