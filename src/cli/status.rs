//! `sluice status`: per stage, its group's members, lag, backlogs, dead letters and spend today.
//! Exit codes, for scripts and probes:
//! - 0: every row read, nothing unhealthy;
//! - 1: nothing could be read (the cluster did not answer, or has no admin API);
//! - 3: unhealthy — a stage has no members, or (with `--watch`) a stage's lag grew on
//!   `--growth-samples` consecutive samples `--interval` apart;
//! - 4: incomplete — part of some row could not be read (a topic that does not exist, a group
//!   that could not be described). Every row is still printed, the missing parts marked on it.
//!   It wins over 3: a probe must not report "only unhealthy" when it could not see everything,
//!   and a missing topic is a deployment fault to fix first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::Format;
use anyhow::Result;
use sluice::ops::spend_today::SpendToday;
use sluice::ops::status::{report_with, LagTrend, Report, StageStatus};
use sluice::time::rfc3339;

/// The exit code of an unhealthy pipeline (distinct from 1, a failure to ask).
const UNHEALTHY: u8 = 3;
/// The exit code of a report with parts that could not be read (a missing topic).
const INCOMPLETE: u8 = 4;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Sample again every --interval until Ctrl-C, --count samples, or a stage fails a rule.
    #[arg(long)]
    watch: bool,
    /// Time between samples with --watch.
    #[arg(long, default_value = "10s", value_parser = sluice::time::parse_duration)]
    interval: Duration,
    /// With --watch, fail when a stage's lag grew on this many consecutive samples.
    #[arg(long, default_value_t = 3)]
    growth_samples: usize,
    /// With --watch, stop after this many samples (exit 0 if no rule failed).
    #[arg(long)]
    count: Option<usize>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let mut trend = LagTrend::new(args.growth_samples);
    let mut taken = 0;
    // Kept across --watch samples: each reads only the metering records written since the last.
    let mut spend = SpendToday::new();
    loop {
        let r = report_with(&t, &mut spend).await?;
        taken += 1;
        let mut problems = r.problems();
        if args.watch {
            for s in &r.stages {
                let (grew, failed) = trend.push(&s.stage, s.lag);
                if failed {
                    problems.push(format!(
                        "stage '{}': lag grew on {grew} consecutive samples {} apart (now {})",
                        s.stage,
                        humantime::format_duration(args.interval),
                        s.lag
                    ));
                }
            }
        }
        show(&r, args.format)?;
        let incomplete = r.incomplete();
        if !incomplete.is_empty() {
            for p in &incomplete {
                eprintln!("incomplete: {p}");
            }
            for p in &problems {
                eprintln!("unhealthy: {p}");
            }
            return Ok(ExitCode::from(INCOMPLETE));
        }
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("unhealthy: {p}");
            }
            return Ok(ExitCode::from(UNHEALTHY));
        }
        if !args.watch || args.count.is_some_and(|n| taken >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn show(r: &Report, format: Format) -> Result<()> {
    if format == Format::Json {
        // One JSON document per sample, on one line with --watch too.
        outln!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    outln!("pipeline {} at {}", r.pipeline, rfc3339(r.taken_ms));
    outln!(
        "{:<16} {:<18} {:>7} {:>9} {:>14} {:>10} {:>9} {:>9} {:>7} {:>8} {:>14}",
        "STAGE",
        "STATE",
        "MEMBERS",
        "LAG",
        "WORST PART",
        "OLDEST",
        "RETRY",
        "DEFERRED",
        "DLQ 1H",
        "DLQ 24H",
        "SPEND TODAY"
    );
    for s in &r.stages {
        let missing = |topic: &str| s.missing_topics.iter().any(|m| m == topic);
        let or_missing = |topic: &str, figure: String| {
            if missing(topic) {
                "missing".to_owned()
            } else {
                figure
            }
        };
        outln!(
            "{:<16} {:<18} {:>7} {:>9} {:>14} {:>10} {:>9} {:>9} {:>7} {:>8} {:>14}",
            s.stage,
            s.state,
            if s.members_known { s.members.len().to_string() } else { "?".into() },
            or_missing(&s.input, s.lag.to_string()),
            s.worst_partition.map_or("-".into(), |p| format!("{p}: {}", s.worst_partition_lag)),
            s.oldest_unprocessed_age_s.map_or("-".into(), |a| format!("{a}s")),
            s.retry_backlog.iter().map(|b| b.records).sum::<i64>(),
            s.deferred_backlog.as_ref().map_or("-".into(), |b| b.records.to_string()),
            or_missing(&s.dead_letter_topic, s.dead_letters_last_hour.to_string()),
            or_missing(&s.dead_letter_topic, s.dead_letters_last_day.to_string()),
            format!("{} USD", s.spend_today_usd),
        );
    }
    for s in &r.stages {
        details(s);
    }
    if r.metering_skipped.count > 0 {
        outln!(
            "{} metering record(s) today are not cost events and were skipped (spend may be \
             under-counted); first: {}",
            r.metering_skipped.count,
            r.metering_skipped.first.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn details(s: &StageStatus) {
    outln!("{} (group {}, input {}):", s.stage, s.group, s.input);
    for topic in &s.missing_topics {
        outln!("  topic {topic} does not exist: its figures are missing from the row");
    }
    for e in &s.errors {
        outln!("  could not read: {e}");
    }
    for m in &s.members {
        let assigned = if m.assigned.is_empty() { "-".into() } else { m.assigned.join(" ") };
        outln!("  member {} on {}: {assigned}", m.client_id, m.host);
    }
    for b in &s.retry_backlog {
        let delay = b.delay.as_deref().unwrap_or("-");
        outln!("  retry rung {} (after {delay}): {} waiting", b.topic, b.records);
    }
    for (tenant, micro) in &s.spend_today_by_tenant {
        outln!("  spend today of tenant {tenant}: {} USD", sluice::metering::report::usd(*micro));
    }
}
