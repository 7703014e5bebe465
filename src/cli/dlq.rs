//! `sluice dlq inspect`, `sluice dlq redrive` and `sluice dlq discard`: printing what [`sluice::ops`] returns, as a
//! table or as JSON for scripts.

use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Format;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use sluice::avro::DeadLetterClass;
use sluice::call::now_ms;
use sluice::ops::{self, Filter, Inspection, RedriveOptions, RedriveReport, Skipped};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Counts by error class and message (first and last seen), and the newest records decoded.
    Inspect(InspectArgs),
    /// Republish dead letters where only their stage reads them — its first retry rung, or its
    /// input when no other stage reads it (a dry run unless --execute); resumable, with a loop
    /// guard.
    Redrive(RedriveArgs),
    /// Acknowledge dead letters without republishing them, so the redrive position moves past
    /// them (a dry run unless --execute); same filters and position as redrive.
    Discard(DiscardArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The topology file.
    #[arg(long)]
    topology: PathBuf,
    /// The stage whose dead-letter topic to read.
    #[arg(long)]
    stage: String,
    /// Only dead letters that failed since then: a duration back (24h, PT24H) or a date-time.
    #[arg(long, value_parser = instant)]
    since: Option<i64>,
    /// Only this error class: DECODE, PERMANENT or RETRIES_EXHAUSTED.
    #[arg(long, value_parser = ops::parse_class)]
    error_class: Option<DeadLetterClass>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
struct InspectArgs {
    #[command(flatten)]
    common: Common,
    /// How many of the newest dead letters to show decoded.
    #[arg(long, default_value_t = 3)]
    samples: usize,
}

/// The selection redrive and discard share.
#[derive(clap::Args)]
struct Selection {
    #[command(flatten)]
    common: Common,
    /// Only dead letters that failed before then: a duration back (1h, PT1H) or a date-time.
    #[arg(long, value_parser = instant)]
    until: Option<i64>,
    /// Only these documents (the record key or the document id); repeatable.
    #[arg(long = "id", value_name = "DOC", num_args = 1..)]
    ids: Vec<String>,
    /// Only the dead letter at this position of the dead-letter topic; repeatable.
    #[arg(long, value_name = "PARTITION:OFFSET", value_parser = position)]
    at: Vec<(i32, i64)>,
    /// Act and commit; without it, only show the plan.
    #[arg(long)]
    execute: bool,
}

impl Selection {
    fn filter(&self) -> Filter {
        Filter {
            error_class: self.common.error_class,
            since_ms: self.common.since,
            until_ms: self.until,
            ids: self.ids.clone(),
            at: self.at.clone(),
        }
    }
}

#[derive(clap::Args)]
struct DiscardArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(clap::Args)]
struct RedriveArgs {
    #[command(flatten)]
    selection: Selection,
    /// Republish at most this many records per second, e.g. 50/s.
    #[arg(long, value_parser = rate)]
    rate: Option<NonZeroU32>,
    /// Leave a dead letter in place once it was redriven this many times.
    #[arg(long, default_value_t = 3)]
    max_redrives: u32,
}

fn instant(text: &str) -> Result<i64, String> {
    ops::parse_instant(text, now_ms())
}

fn position(text: &str) -> Result<(i32, i64), String> {
    ops::dlq::At::parse(text).map(ops::dlq::At::pair)
}

fn rate(text: &str) -> Result<NonZeroU32, String> {
    let n = text.trim().strip_suffix("/s").unwrap_or(text.trim());
    n.parse().map_err(|_| format!("'{text}' is not a rate like 50/s"))
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Inspect(a) => inspect(a).await,
        Command::Redrive(a) => redrive(a).await,
        Command::Discard(a) => discard(a).await,
    }
}

async fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let t = super::load_topology(&a.common.topology)?;
    let filter =
        Filter { error_class: a.common.error_class, since_ms: a.common.since, ..Filter::default() };
    let found = ops::inspect(&t, &a.common.stage, &filter, a.samples).await?;
    match a.common.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&found)?),
        Format::Table => print_inspection(&found),
    }
    Ok(ExitCode::SUCCESS)
}

async fn redrive(a: RedriveArgs) -> Result<ExitCode> {
    let opts = RedriveOptions {
        filter: a.selection.filter(),
        max_redrives: a.max_redrives,
        rate_per_second: a.rate,
        execute: a.selection.execute,
        ..RedriveOptions::default()
    };
    walk(&a.selection, &opts, false).await
}

async fn discard(a: DiscardArgs) -> Result<ExitCode> {
    let opts = RedriveOptions {
        filter: a.selection.filter(),
        execute: a.selection.execute,
        ..RedriveOptions::default()
    };
    walk(&a.selection, &opts, true).await
}

/// Runs a redrive or a discard over the selection, printing the report.
async fn walk(sel: &Selection, opts: &RedriveOptions, discard: bool) -> Result<ExitCode> {
    let t = super::load_topology(&sel.common.topology)?;
    let bar = if sel.common.format == Format::Table && std::io::stderr().is_terminal() {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters read {msg}")
                .expect("template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let show = |p: ops::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.read);
        bar.set_message(format!("{} finished", p.redriven));
    };
    let report = match discard {
        true => ops::discard(&t, &sel.common.stage, opts, show).await?,
        false => ops::redrive(&t, &sel.common.stage, opts, show).await?,
    };
    bar.finish_and_clear();
    match sel.common.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print_redrive(&report, opts.max_redrives),
    }
    Ok(if report.stopped.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Milliseconds since the epoch (read from a letter: any value) as an RFC 3339 time.
fn time(ms: i64) -> String {
    sluice::time::rfc3339_short(ms)
}

/// A position as every command writes it, `P:O`.
fn at(partition: i32, offset: i64) -> ops::dlq::At {
    ops::dlq::At::new(partition, offset)
}

fn print_inspection(i: &Inspection) {
    outln!(
        "{}: {} dead letter(s) selected of {} record(s), {} outstanding (stage {}){}",
        i.dead_letter_topic,
        i.selected,
        i.records,
        i.outstanding,
        i.stage,
        if i.undecodable > 0 { format!("; {} not dead letters", i.undecodable) } else { "".into() }
    );
    if i.selected == 0 {
        return;
    }
    outln!("\n{:<18} {:>7}", "ERROR CLASS", "COUNT");
    for c in &i.by_class {
        outln!("{:<18} {:>7}", c.error_class, c.count);
    }
    outln!(
        "\n{:<18} {:>7} {:<20} {:<20} MESSAGE",
        "ERROR CLASS",
        "COUNT",
        "FIRST SEEN",
        "LAST SEEN"
    );
    for m in &i.by_message {
        let (first, last) = (time(m.first_seen_ms), time(m.last_seen_ms));
        outln!("{:<18} {:>7} {first:<20} {last:<20} {}", m.error_class, m.count, m.message);
    }
    outln!("\nnewest {}:", i.samples.len());
    for s in &i.samples {
        outln!(
            "- {} key {} from {} {}: {} after {} attempt(s) at {}; {}",
            at(s.partition, s.offset),
            s.key.as_deref().unwrap_or("-"),
            s.original_topic,
            at(s.original_partition, s.original_offset),
            s.error_class,
            s.attempts,
            time(s.failed_at_ms),
            s.fate.as_ref().map_or("fate unknown".to_owned(), ops::dlq::Fate::describe),
        );
        outln!("  error: {}", s.error_message);
        outln!(
            "  model: {}  prompt version: {}  redriven before: {}",
            s.model.as_deref().unwrap_or("-"),
            s.prompt_version.as_deref().unwrap_or("-"),
            s.redrive_count.map_or("?".to_owned(), |c| c.to_string())
        );
        outln!("  value: {}", s.original_value);
    }
}

fn print_skipped(title: &str, skipped: &[Skipped], count: usize) {
    if skipped.is_empty() {
        return;
    }
    let shown = if count > skipped.len() {
        format!(" (the first {})", skipped.len())
    } else {
        String::new()
    };
    outln!("\n{title}: {count}{shown}");
    for s in skipped {
        let key = s.key.as_deref().unwrap_or("-");
        outln!("- {} key {key}: {}", at(s.partition, s.offset), s.reason);
    }
}

fn print_redrive(r: &RedriveReport, max_redrives: u32) {
    let (verb, done) = match r.action {
        "discard" => ("discard", r.discarded),
        _ => ("redrive", r.redriven),
    };
    if !r.executed {
        outln!("DRY RUN: nothing is produced or committed; add --execute to {verb}.");
    }
    outln!("{} (stage {}, position in group {})", r.dead_letter_topic, r.stage, r.group);
    if let Some(to) = &r.republish_to {
        outln!("republishing to {to}, which only stage {} reads", r.stage);
    }
    if r.executed {
        outln!(
            "{}",
            match r.transactional {
                true => "each batch commits with the position in one Kafka transaction",
                false =>
                    "embedded broker (no transactions): a crash between a batch's \
                          acknowledgement and its commit republishes that batch",
            }
        );
    }
    outln!("\n{:<40} {:<18} {:>8}", "ORIGINAL TOPIC", "ERROR CLASS", "RECORDS");
    for row in &r.plan {
        outln!("{:<40} {:<18} {:>8}", row.original_topic, row.error_class, row.records);
    }
    outln!("{:<40} {:<18} {:>8}", "total", "", r.planned());
    print_skipped(
        &format!("left in place by the loop guard (--max-redrives {max_redrives})"),
        &r.loop_guarded,
        r.loop_guarded_count,
    );
    print_skipped("unredrivable", &r.unredrivable, r.unredrivable_count);
    outln!(
        "\n{verb}: {done}, skipped by the loop guard {}, unredrivable {}, not selected {}, \
         done by earlier runs {}, remaining {}",
        r.loop_guarded_count,
        r.unredrivable_count,
        r.passed_over,
        r.done_before,
        r.remaining
    );
    if let Some(why) = &r.stopped {
        outln!("stopped early: {why}");
    }
}
