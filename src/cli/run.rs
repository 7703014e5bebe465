use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use sluice::config::Topology;
use sluice::kafka::ready::{self, Missing};
use sluice::kafka::{broker_kind, exactly_once_supported, BrokerKind};
use sluice::pipeline::{run_stages, stage_schema_pairs};
use sluice::shutdown::Shutdown;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Stage to run (repeatable). Start more processes to scale its consumer group.
    #[arg(long)]
    stage: Vec<String>,
    /// Run every stage of the topology in this process.
    #[arg(long, conflicts_with = "stage")]
    all: bool,
    /// Static group membership (KIP-345): a stable id per worker, e.g. the pod name of a
    /// StatefulSet. A restarted worker with the same id takes its partitions back at once instead
    /// of waiting for the session timeout and a rebalance.
    #[arg(long, env = "SLUICE_GROUP_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
    /// on this address (e.g. 0.0.0.0:9464).
    #[arg(long, env = "SLUICE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    if args.stage.is_empty() && !args.all {
        bail!("name a stage with --stage NAME, or run every stage with --all");
    }
    let mut t = super::load_topology(&args.topology)?;
    if let Some(id) = &args.instance_id {
        // Unique within each consumer group; every stage is its own group, so one id serves all.
        t.kafka.consumer.insert("group.instance.id".into(), id.clone());
    }
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, &t).await?;
    }
    wait_for_broker(&t, &args.stage).await?;
    if let Some(refused) = refuse_unsupported_delivery(&t, &args.stage).await? {
        return Ok(refused);
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let reports = run_stages(&t, &args.stage, shutdown).await?;
    let abandoned: usize = reports.iter().map(|r| r.abandoned).sum();
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "grace period ended with records in flight; they will be redelivered"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits while the broker is still coming up (electing the leaders of the stages' topics),
/// with a progress line; fails at once when no broker answers or a stage's input is missing.
pub async fn wait_for_broker(t: &Topology, stages: &[String]) -> Result<()> {
    let specs: Vec<_> =
        t.stages.iter().filter(|s| stages.is_empty() || stages.contains(&s.name)).collect();
    let inputs: Vec<String> = specs.iter().map(|s| s.input.clone()).collect();
    let mut others: Vec<String> = specs
        .iter()
        .flat_map(|s| stage_schema_pairs(t, s).into_iter().map(|(topic, _)| topic))
        .filter(|topic| !inputs.contains(topic))
        .collect();
    others.sort();
    others.dedup();
    ready::wait_ready(&t.kafka, inputs, Missing::Refuse).await?;
    Ok(ready::wait_ready(&t.kafka, others, Missing::Skip).await?)
}

/// Exit code 2, as for a topology that does not compile, with the reason on stderr, when a stage
/// that would start (all when `stages` is empty) wants exactly-once delivery and the broker is
/// the embedded one, which has no Kafka transactions; `None` to go on.
pub fn refused_delivery(t: &Topology, stages: &[String], kind: BrokerKind) -> Option<ExitCode> {
    let starting = t.stages.iter().filter(|s| stages.is_empty() || stages.contains(&s.name));
    let message = exactly_once_supported(kind, starting).err()?;
    eprintln!("error: {message}");
    Some(ExitCode::from(2))
}

/// [`refused_delivery`] on the broker the topology names, which is asked what it is only when a
/// stage that would start wants exactly-once delivery.
pub async fn refuse_unsupported_delivery(
    t: &Topology,
    stages: &[String],
) -> Result<Option<ExitCode>> {
    let mut starting = t.stages.iter().filter(|s| stages.is_empty() || stages.contains(&s.name));
    if starting.all(|s| s.delivery.transactions().is_none()) {
        return Ok(None);
    }
    let settings = t.kafka.clone();
    let kind = tokio::task::spawn_blocking(move || broker_kind(&settings))
        .await
        .expect("the broker probe does not panic")?;
    Ok(refused_delivery(t, stages, kind))
}

/// How often `/readyz`'s broker and registry checks run.
const REACHABILITY_EVERY: Duration = Duration::from_secs(5);

/// `GET /metrics` in Prometheus text format, `GET /healthz` and `GET /readyz`; starts the
/// broker and registry checks `/readyz` reports.
pub async fn serve_metrics(addr: SocketAddr, topology: &Topology) -> Result<()> {
    let bound = sluice::telemetry::http::serve(addr).await?;
    tracing::info!(addr = %bound, "serving metrics, /healthz and /readyz");
    sluice::kafka::watch_reachability(topology, REACHABILITY_EVERY);
    Ok(())
}
