//! The development stack: a Kafka-protocol broker — the embedded one (librdkafka's mock cluster),
//! Apache Kafka started for it ([`apache`]), or a real one the caller names — and a development
//! schema registry on loopback, for `sluice dev`, `sluice demo` and tests.

pub mod apache;
pub mod kafka;
pub mod registry;

use std::net::SocketAddr;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

pub use apache::{ApacheError, ApacheKafka};
pub use kafka::MockKafka;
pub use registry::DevRegistry;

use crate::config::Topology;
use crate::kafka::ready::{self, Missing};

/// A running dev stack; an embedded broker lives as long as this value.
pub struct DevStack {
    pub kafka: DevBroker,
    pub registry: DevRegistry,
}

/// The broker a dev stack runs on.
pub enum DevBroker {
    Embedded(MockKafka),
    /// A real cluster at this bootstrap address; topics are created through its admin API.
    External(String),
    /// Apache Kafka started for this stack (stopped when dropped); topics as on `External`.
    Apache(ApacheKafka),
}

impl DevBroker {
    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Self::Embedded(k) => k.bootstrap_servers(),
            Self::External(bootstrap) => bootstrap,
            Self::Apache(k) => k.bootstrap_servers(),
        }
    }

    /// The embedded cluster, for fault injection; `None` on a real broker.
    pub fn cluster(
        &self,
    ) -> Option<&rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>
    {
        match self {
            Self::Embedded(k) => Some(k.cluster()),
            Self::External(_) | Self::Apache(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    #[error("mock broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dev registry: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
    #[error("creating topics on {bootstrap}: {error}")]
    Topics { bootstrap: String, error: crate::kafka::TopicAdminError },
    #[error(transparent)]
    Broker(#[from] crate::kafka::ready::ReadyError),
}

impl DevStack {
    /// Starts the embedded broker and the registry, points `topology` at them, creates every
    /// topic and registers every schema.
    pub async fn start(
        topology: &mut Topology,
        registry_addr: SocketAddr,
    ) -> Result<Self, DevStackError> {
        Self::start_on(topology, registry_addr, None).await
    }

    /// [`DevStack::start`] on the real broker at `external` when given (topics created through
    /// its admin API, existing ones kept), else on the embedded one.
    pub async fn start_on(
        topology: &mut Topology,
        registry_addr: SocketAddr,
        external: Option<String>,
    ) -> Result<Self, DevStackError> {
        let kafka = match external {
            Some(bootstrap) => DevBroker::External(bootstrap),
            None => DevBroker::Embedded(MockKafka::start(1)?),
        };
        Self::start_with(topology, registry_addr, kafka).await
    }

    /// [`DevStack::start`] on the given broker.
    pub async fn start_with(
        topology: &mut Topology,
        registry_addr: SocketAddr,
        kafka: DevBroker,
    ) -> Result<Self, DevStackError> {
        let registry = registry::serve(registry_addr).await?;
        topology.kafka.bootstrap_servers = kafka.bootstrap_servers().to_owned();
        topology.schema_registry.url = registry.url();
        match &kafka {
            DevBroker::Embedded(k) => {
                for t in topology.topics() {
                    k.create_topic(&t.name, t.partitions)?;
                }
            }
            DevBroker::External(_) | DevBroker::Apache(_) => {
                let bootstrap = kafka.bootstrap_servers();
                // Not there: say so at once. Still coming up: wait for it (see kafka::ready).
                let settings = topology.kafka.clone();
                tokio::task::spawn_blocking(move || ready::first_contact(&settings))
                    .await
                    .expect("the first contact does not panic")?;
                crate::kafka::create_planned_topics(&topology.kafka, &topology.topics())
                    .await
                    .map_err(|error| DevStackError::Topics {
                        bootstrap: bootstrap.to_owned(),
                        error,
                    })?;
                // Every partition answers for its offsets before the stack says it is up, so
                // clients started the moment it prints its address find leaders.
                let names = topology.topics().into_iter().map(|t| t.name).collect();
                ready::wait_ready(&topology.kafka, names, Missing::Refuse).await?;
            }
        }
        let settings = SrSettings::new(registry.url());
        crate::avro::register_all(&settings, &crate::pipeline::schema_pairs(topology)).await?;
        Ok(Self { kafka, registry })
    }

    /// Shell-sourceable connection lines for external clients.
    pub fn env_lines(&self) -> String {
        format!(
            "KAFKA_BOOTSTRAP_SERVERS={}\nSCHEMA_REGISTRY_URL={}",
            self.kafka.bootstrap_servers(),
            self.registry.url()
        )
    }
}
