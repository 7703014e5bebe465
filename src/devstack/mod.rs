//! The development stack: a Kafka-protocol broker — the embedded one (librdkafka's mock cluster)
//! or a real one the caller names — and a development schema registry on loopback, for
//! `sluice dev`, `sluice demo` and tests.

pub mod kafka;
pub mod registry;

use std::net::SocketAddr;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

pub use kafka::MockKafka;
pub use registry::DevRegistry;

use crate::config::Topology;

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
}

impl DevBroker {
    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Self::Embedded(k) => k.bootstrap_servers(),
            Self::External(bootstrap) => bootstrap,
        }
    }

    /// The embedded cluster, for fault injection; `None` on a real broker.
    pub fn cluster(
        &self,
    ) -> Option<&rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>
    {
        match self {
            Self::Embedded(k) => Some(k.cluster()),
            Self::External(_) => None,
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
        let registry = registry::serve(registry_addr).await?;
        topology.kafka.bootstrap_servers = kafka.bootstrap_servers().to_owned();
        topology.schema_registry.url = registry.url();
        match &kafka {
            DevBroker::Embedded(k) => {
                for t in topology.topics() {
                    k.create_topic(&t.name, t.partitions)?;
                }
            }
            DevBroker::External(bootstrap) => {
                crate::kafka::create_planned_topics(&topology.kafka, &topology.topics())
                    .await
                    .map_err(|error| DevStackError::Topics {
                        bootstrap: bootstrap.clone(),
                        error,
                    })?;
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
