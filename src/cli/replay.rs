//! `sluice replay`: moves a stage's (or any group's) committed offsets, in the vocabulary of
//! `kafka-consumer-groups --reset-offsets`, and says what re-processing will cost. A dry run
//! unless `--execute`, which refuses while the group has members or assign-only holders, or when
//! its commits moved since the plan was made, and commits only the partitions that change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::Format;
use anyhow::{bail, Context, Result};
use sluice::config::KafkaSettings;
use sluice::ops::plan_csv;
use sluice::ops::replay::{execute, plan_async, Plan, ResetTo};
use sluice::ops::replay_cost::{estimate_plan, CostEstimate, DEFAULT_SAMPLE};
use sluice::time::{parse_datetime, parse_duration};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("reset").required(true).multiple(false)))]
#[command(group(clap::ArgGroup::new("target").required(true).args(["stage", "group"])))]
pub struct Args {
    /// The topology: connection settings, and with --stage the stage's group and input topic.
    #[arg(long, required_unless_present = "group")]
    topology: Option<PathBuf>,
    /// Replay this stage's input (its group, its input topic, its cost events).
    #[arg(long, requires = "topology", conflicts_with = "group")]
    stage: Option<String>,
    /// Any consumer group (with --topic) instead of a stage; without --topology the broker is
    /// KAFKA_BOOTSTRAP_SERVERS. No cost estimate.
    #[arg(long, requires = "topic")]
    group: Option<String>,
    /// The topic whose offsets --group moves.
    #[arg(long, requires = "group")]
    topic: Option<String>,
    /// To the first record at or after this time (ISO 8601; no zone means UTC).
    #[arg(long, group = "reset", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// To the first record at or after now minus this (ISO 8601 duration, e.g. PT2H).
    #[arg(long, group = "reset", value_parser = parse_duration)]
    by_duration: Option<Duration>,
    /// To this offset (clamped to the log).
    #[arg(long, group = "reset")]
    to_offset: Option<i64>,
    /// By this many records from the current offset (negative: back), clamped to the log.
    #[arg(long, group = "reset", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To the log start.
    #[arg(long, group = "reset")]
    to_earliest: bool,
    /// To the end (skips every record not yet processed).
    #[arg(long, group = "reset")]
    to_latest: bool,
    /// To the offsets of a plan file (`topic,partition,offset` lines, as --export writes).
    #[arg(long, group = "reset")]
    from_file: Option<PathBuf>,
    /// Only these partitions (e.g. 0,3); default: every partition (or every one in the file).
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<i32>>,
    /// Commit the changed offsets: refused while the group has members or an assign-only client
    /// (console, redrive) holds it, or if its commits moved since planning. Without it: a dry
    /// run.
    #[arg(long)]
    execute: bool,
    /// Records of the replayed window read for the cost estimate, spread across it.
    #[arg(long, default_value_t = DEFAULT_SAMPLE)]
    sample: u64,
    /// Write the plan as `topic,partition,offset` lines to this file.
    #[arg(long)]
    export: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl Args {
    fn reset(&self) -> Result<ResetTo> {
        Ok(if let Some(ms) = self.to_datetime {
            ResetTo::Datetime(ms)
        } else if let Some(d) = self.by_duration {
            ResetTo::Duration(d)
        } else if let Some(o) = self.to_offset {
            ResetTo::Offset(o)
        } else if let Some(n) = self.shift_by {
            ResetTo::ShiftBy(n)
        } else if self.to_earliest {
            ResetTo::Earliest
        } else if self.to_latest {
            ResetTo::Latest
        } else {
            let path = self.from_file.as_ref().expect("clap requires one reset scenario");
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ResetTo::File(plan_csv::parse(&text).with_context(|| path.display().to_string())?)
        })
    }
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let reset = args.reset()?;
    let topology = args.topology.as_deref().map(super::load_topology).transpose()?;
    let (kafka, group, topic, how_to_stop) = match (&topology, &args.stage, &args.group) {
        (Some(t), Some(name), _) => {
            let Some(spec) = t.stage(name) else {
                let names: Vec<&str> = t.stages.iter().map(|s| s.name.as_str()).collect();
                bail!("no stage '{name}' in {} (stages: {})", t.file.display(), names.join(", "));
            };
            let how = format!(
                "Stop every `sluice run --topology {} --stage {name}` process first (SIGTERM lets \
                 each drain and commit; under Kubernetes scale the stage's deployment to 0), \
                 wait until `sluice status` shows no members for '{name}' (a killed member is \
                 dropped after session.timeout.ms), then run this again.",
                t.file.display()
            );
            (t.kafka.clone(), spec.group.clone(), spec.input.clone(), how)
        }
        (_, _, Some(group)) => {
            let kafka = match &topology {
                Some(t) => t.kafka.clone(),
                None => bootstrap_only()?,
            };
            let topic = args.topic.clone().expect("clap requires --topic with --group");
            let how = format!(
                "Stop every consumer of group '{group}' first, and wait until \
                 `kafka-consumer-groups --describe --group {group}` shows no members."
            );
            (kafka, group.clone(), topic, how)
        }
        _ => unreachable!("clap requires --stage with --topology, or --group"),
    };
    let plan = plan_async(&kafka, &group, &topic, &reset, args.partitions.clone()).await?;
    let cost = match (&topology, &args.stage) {
        (Some(t), Some(name)) if plan.reprocessed() > 0 => {
            let spec = t.stage(name).expect("checked above");
            Some(estimate_plan(t, spec, &plan, args.sample).await?)
        }
        _ => None,
    };
    if let Some(path) = &args.export {
        std::fs::write(path, plan_csv::write(&plan.lines()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match args.format {
        Format::Json => {
            let executed = match args.execute {
                true => Some(execute(&kafka, &plan, &how_to_stop).await?),
                false => None,
            };
            let json = serde_json::json!({
                "plan": plan,
                "reprocessed": plan.reprocessed(),
                "skipped": plan.skipped(),
                "cost": cost,
                "executed": args.execute,
                "committed": executed,
            });
            outln!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Table => {
            print_plan(&plan);
            if let Some(c) = &cost {
                print_cost(c);
            }
            if let Some(path) = &args.export {
                outln!("plan written to {}", path.display());
            }
            if args.execute {
                let executed = execute(&kafka, &plan, &how_to_stop).await?;
                outln!(
                    "executed: group '{}' now resumes at the new offsets; start its consumers \
                     again to re-process {} records",
                    plan.group,
                    plan.reprocessed()
                );
                outln!("{}", executed.describe());
            } else {
                outln!(
                    "dry run: nothing changed. Add --execute to commit the changed offsets (the \
                     group must have no members, and its commits must still be the ones above)."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Connection settings from `KAFKA_BOOTSTRAP_SERVERS` alone, for `--group` without a topology.
fn bootstrap_only() -> Result<KafkaSettings> {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        bail!("--group without --topology needs KAFKA_BOOTSTRAP_SERVERS");
    };
    Ok(KafkaSettings {
        bootstrap_servers: bootstrap,
        properties: BTreeMap::new(),
        consumer: BTreeMap::new(),
        producer: BTreeMap::new(),
        partitions: 1,
        replication_factor: 1,
    })
}

fn print_plan(plan: &Plan) {
    outln!("replay plan for group '{}' on '{}' ({})", plan.group, plan.topic, plan.reset);
    outln!(
        "{:>9} {:>12} {:>12} {:>12} {:>10}  {:<24} LOG",
        "PARTITION",
        "COMMITTED",
        "CURRENT",
        "NEW",
        "RECORDS",
        "ON EXECUTE"
    );
    for p in &plan.partitions {
        let committed = p.committed.map_or("-".to_owned(), |c| c.to_string());
        let records = match p.records() {
            n if n > 0 => format!("+{n}"),
            n => n.to_string(),
        };
        let on_execute = if !p.changes() {
            "left alone (commit kept)"
        } else if p.drops_map() {
            "committed, map dropped"
        } else {
            "committed"
        };
        outln!(
            "{:>9} {:>12} {:>12} {:>12} {:>10}  {:<24} [{}, {})",
            p.partition,
            committed,
            p.current,
            p.new,
            records,
            on_execute,
            p.low,
            p.high
        );
    }
    outln!(
        "{} records to re-process, {} skipped (+: processed again, -: never processed)",
        plan.reprocessed(),
        plan.skipped()
    );
    for w in &plan.warnings {
        outln!("warning: {w}");
    }
}

fn print_cost(c: &CostEstimate) {
    outln!("what re-processing will cost (from the stage's cost events):");
    outln!(
        "  based on {} of {} records sampled across the window; {} of them ({:.0}%) with a cost \
         event of their own processing",
        c.sampled,
        c.records,
        c.metered,
        c.metered_share * 100.0
    );
    outln!("  without a cache: {}", c.without_cache.describe());
    if let (Some(kind), Some(with)) = (&c.cache, &c.with_cache) {
        outln!(
            "  with the response cache ({kind}; {} sampled answers on record): {}",
            c.cached,
            with.describe()
        );
    }
    for note in &c.notes {
        outln!("  note: {note}");
    }
}
