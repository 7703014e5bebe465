use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use sluice::devstack::{ApacheKafka, DevBroker, DevStack, MockKafka};
use sluice::kafka::BrokerKind;
use sluice::pipeline::run_stages;
use sluice::shutdown::{Phase, Shutdown};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// The broker to run on: `embedded` (librdkafka's mock cluster, in this process; serves
    /// librdkafka-based clients: sluice, kcat, confluent-kafka) or `apache` (Apache Kafka on
    /// loopback, started and stopped with the stack; serves every client, Java ones included;
    /// needs Java 17+). Without --broker, KAFKA_BOOTSTRAP_SERVERS names a broker to use instead
    /// of the embedded one.
    #[arg(long, value_enum)]
    broker: Option<Broker>,
    /// Address of the development schema registry.
    #[arg(long, default_value = "127.0.0.1:0")]
    registry_addr: SocketAddr,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Broker {
    Embedded,
    Apache,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut t = super::load_topology(&args.topology)?;
    let external = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty());
    let embedded = matches!((args.broker, &external), (Some(Broker::Embedded), _) | (None, None));
    if embedded {
        // Before anything starts: the embedded broker has no transactions.
        if let Some(refused) = super::run::refused_delivery(&t, &[], BrokerKind::Embedded) {
            return Ok(refused);
        }
    }
    // Before any broker starts: Ctrl-C while Apache Kafka starts must still stop it.
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let kafka = match (args.broker, external) {
        (Some(Broker::Apache), _) => {
            eprintln!("sluice dev: starting Apache Kafka (10-20 s; Java clients work on it)");
            let started = tokio::task::spawn_blocking(ApacheKafka::start);
            let started = started.await.expect("the broker start does not panic");
            if shutdown.phase() != Phase::Running {
                // Ctrl-C while it started (the script ends with it): what started is stopped.
                return Ok(ExitCode::SUCCESS);
            }
            DevBroker::Apache(started?)
        }
        (Some(Broker::Embedded), _) | (None, None) => DevBroker::Embedded(MockKafka::start(1)?),
        (None, Some(bootstrap)) => DevBroker::External(bootstrap),
    };
    let on_external = matches!(kafka, DevBroker::External(_));
    let stack = DevStack::start_with(&mut t, args.registry_addr, kafka).await?;
    if on_external {
        // KAFKA_BOOTSTRAP_SERVERS may name another process's embedded broker.
        if let Some(refused) = super::run::refuse_unsupported_delivery(&t, &[]).await? {
            return Ok(refused);
        }
    }
    if let Some(addr) = args.metrics_addr {
        super::run::serve_metrics(addr, &t).await?;
    }
    // Shell-sourceable: `eval "$(sluice dev ... | head -2)"` or copy them into another shell.
    outln!("{}", stack.env_lines());
    eprintln!(
        "sluice dev: {} stages running; produce to {} (Ctrl-C to stop)",
        t.stages.len(),
        t.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    if embedded {
        eprintln!(
            "sluice dev: the embedded broker serves librdkafka-based clients (sluice, kcat, \
             confluent-kafka); for Java clients run `sluice dev --broker apache`"
        );
    }
    run_stages(&t, &[], shutdown).await?;
    drop(stack);
    Ok(ExitCode::SUCCESS)
}
