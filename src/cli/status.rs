//! `sluice status`: per stage, its group's members, lag, backlogs, dead letters and spend today.
//! Exit code 3 when a stage has no members, or (with `--watch`) when a stage's lag grew on
//! `--growth-samples` consecutive samples `--interval` apart; 1 when the cluster could not be
//! asked.

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
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!("pipeline {} at {}", r.pipeline, rfc3339(r.taken_ms));
    println!(
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
        println!(
            "{:<16} {:<18} {:>7} {:>9} {:>14} {:>10} {:>9} {:>9} {:>7} {:>8} {:>14}",
            s.stage,
            s.state,
            if s.members_known { s.members.len().to_string() } else { "?".into() },
            s.lag,
            s.worst_partition.map_or("-".into(), |p| format!("{p}: {}", s.worst_partition_lag)),
            s.oldest_unprocessed_age_s.map_or("-".into(), |a| format!("{a}s")),
            s.retry_backlog.iter().map(|b| b.records).sum::<i64>(),
            s.deferred_backlog.as_ref().map_or("-".into(), |b| b.records.to_string()),
            s.dead_letters_last_hour,
            s.dead_letters_last_day,
            format!("{} USD", s.spend_today_usd),
        );
    }
    for s in &r.stages {
        details(s);
    }
    if r.metering_skipped.count > 0 {
        println!(
            "{} metering record(s) today are not cost events and were skipped (spend may be \
             under-counted); first: {}",
            r.metering_skipped.count,
            r.metering_skipped.first.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn details(s: &StageStatus) {
    println!("{} (group {}, input {}):", s.stage, s.group, s.input);
    for m in &s.members {
        let assigned = if m.assigned.is_empty() { "-".into() } else { m.assigned.join(" ") };
        println!("  member {} on {}: {assigned}", m.client_id, m.host);
    }
    for b in &s.retry_backlog {
        let delay = b.delay.as_deref().unwrap_or("-");
        println!("  retry rung {} (after {delay}): {} waiting", b.topic, b.records);
    }
    for (tenant, micro) in &s.spend_today_by_tenant {
        println!("  spend today of tenant {tenant}: {} USD", sluice::metering::report::usd(*micro));
    }
}
