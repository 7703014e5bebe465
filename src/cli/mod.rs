//! Subcommands. Every command that talks to Kafka takes `--topology FILE`;
//! `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL` override its connection settings.

/// `println!` for command output: a reader that went away (`sluice consume … | head -1`) ends the
/// process quietly (see [`write_out`]).
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

mod console;
mod consume;
mod cost;
mod demo;
mod dev;
mod dlq;
mod index;
mod mock_provider;
mod produce;
mod replay;
mod run;
mod schemas;
mod status;
mod topics;
mod validate;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice::config::{self, Topology};

#[derive(Parser)]
#[command(name = "sluice", version, about = "A streaming AI-inference pipeline on Kafka")]
pub struct Cli {
    /// Log JSON lines instead of text (filter with RUST_LOG).
    #[arg(long, global = true, env = "SLUICE_LOG_JSON")]
    pub log_json: bool,
    /// Async worker threads (default: one per core, at least 2).
    #[arg(long, global = true, env = "SLUICE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Compile topology files and report every problem (exit code 2 on any).
    Validate(validate::Args),
    /// Register or check the Avro schemas of every topic (subject `<topic>-value`).
    Schemas(schemas::Args),
    /// Create or list the topology's topics.
    Topics(topics::Args),
    /// Produce JSON lines as Avro records.
    Produce(produce::Args),
    /// Print records as JSON lines with partition, offset, key and headers (committed records
    /// only: never those of an open or aborted transaction).
    Consume(consume::Args),
    /// Run one stage (scale by starting more processes) or all of them.
    Run(run::Args),
    /// Run an embedded broker and schema registry with every stage, until Ctrl-C.
    Dev(dev::Args),
    /// Run the example documents through the pipeline offline and print where each ended up.
    Demo(demo::Args),
    /// Dead letters of a stage: inspect them, or redrive them to their original topic.
    Dlq(dlq::Args),
    /// Cost reports from the metering topic (duplicates removed by event id).
    Cost(cost::Args),
    /// Move a stage's (or any group's) committed offsets to re-process or skip records, with
    /// what re-processing will cost; a dry run unless --execute.
    Replay(replay::Args),
    /// Per stage: group members, lag, oldest unprocessed record, retry and deferred backlogs,
    /// dead letters and spend today; exit code 3 when a stage is unhealthy.
    Status(status::Args),
    /// Serve the web console: the review queue, dead letters with redrive, and the pipeline
    /// at a glance (loopback by default; elsewhere reviewers' own tokens or a trusted proxy).
    Console(console::Args),
    /// Embed a knowledge base (JSON lines) into a retrieve stage's vector store.
    Index(index::Args),
    /// Serve a mock model provider (OpenAI chat/embeddings, Anthropic messages) with latency,
    /// errors, 429s, a requests-per-minute limit and a billing ledger.
    MockProvider(mock_provider::Args),
}

impl Command {
    /// The log filter when `RUST_LOG` is not set: `demo` is for a first look and shows only
    /// warnings above its progress line and tables; every other command logs at INFO.
    pub fn default_log_filter(&self) -> Option<&'static str> {
        match self {
            Self::Demo(_) => Some("warn"),
            _ => None,
        }
    }
}

pub async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate(a) => Ok(validate::run(a)),
        Command::Schemas(a) => schemas::run(a).await,
        Command::Topics(a) => topics::run(a).await,
        Command::Produce(a) => produce::run(a).await,
        Command::Consume(a) => consume::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Dev(a) => dev::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Index(a) => index::run(a).await,
        Command::Cost(a) => cost::run(a).await,
        Command::Dlq(a) => dlq::run(a).await,
        Command::Replay(a) => replay::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Console(a) => console::run(a).await,
        Command::MockProvider(a) => mock_provider::run(a).await,
    }
}

/// How a report command prints: a table for people, or JSON for scripts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Loads a topology and applies the environment overrides; exits 2 with every problem listed.
pub fn load_topology(path: &Path) -> Result<Topology> {
    match config::load(path) {
        Ok(mut t) => {
            t.apply_env_overrides();
            Ok(t)
        }
        Err(errors) => {
            eprint!("{errors}");
            std::process::exit(2);
        }
    }
}

/// Writes command output to stdout. When the reader has gone away (`sluice consume … | head -1`)
/// the process ends at once, quietly and with status 0, as ripgrep does: the reader chose to stop,
/// nothing failed, and a `set -o pipefail` script goes on. (Not by restoring SIGPIPE, which would
/// give the shell's 141: the console and the registry clients write to sockets with `writev`,
/// which raises SIGPIPE when a peer hangs up, and that must not end a server.)
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}
