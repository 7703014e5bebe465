use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use sluice::devstack::DevStack;
use sluice::pipeline::run_stages;
use sluice::shutdown::Shutdown;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Address of the development schema registry.
    #[arg(long, default_value = "127.0.0.1:0")]
    registry_addr: SocketAddr,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut t = super::load_topology(&args.topology)?;
    // With KAFKA_BOOTSTRAP_SERVERS set, the stages run on that broker; otherwise on the
    // embedded one.
    let external = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty());
    let stack = DevStack::start_on(&mut t, args.registry_addr, external).await?;
    if let Some(addr) = args.metrics_addr {
        super::run::serve_metrics(addr, &t).await?;
    }
    // Shell-sourceable: `eval "$(sluice dev ... | head -2)"` or copy them into another shell.
    println!("{}", stack.env_lines());
    eprintln!(
        "sluice dev: {} stages running; produce to {} (Ctrl-C to stop)",
        t.stages.len(),
        t.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    run_stages(&t, &[], shutdown).await?;
    drop(stack);
    Ok(ExitCode::SUCCESS)
}
