//! `sluice console`: the web console for reviewers and on-call engineers (see
//! [`sluice::console`]). Listens on loopback unless told otherwise; elsewhere it needs a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice::console::{self, ConsoleOptions};
use sluice::shutdown::Shutdown;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Where to listen. Anything but a loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A file holding the login token (its first line). SLUICE_CONSOLE_TOKEN works too.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// How long a reviewer holds a claimed item before others may take it.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    claim_ttl: Duration,
    /// A decision a stopped console left without its record is finished by this one after
    /// this long (more than a decision's produce timeout, 30 s, and read-back wait, 10 s).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    finish_after: Duration,
    /// A stage process's Prometheus endpoint (`http://host:9464/metrics`), for records in flight
    /// and breaker states on the pipeline page; repeatable.
    #[arg(long = "metrics")]
    metrics: Vec<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_owned())
        }
        None => std::env::var("SLUICE_CONSOLE_TOKEN").ok(),
    }
    .filter(|t| !t.is_empty());
    let opts = ConsoleOptions {
        addr: args.addr,
        token,
        claim_ttl: args.claim_ttl,
        finish_after: args.finish_after,
        metrics: args.metrics,
    };
    let console = console::start(&t, opts).await?;
    eprintln!(
        "sluice console: http://{} ({} review queue(s)); Ctrl-C to stop",
        console.addr,
        console.app.queues.len()
    );
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    shutdown.reached(sluice::shutdown::Phase::Draining).await;
    Ok(ExitCode::SUCCESS)
}
