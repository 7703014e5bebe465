//! The embedded development stack: a Kafka-protocol broker (librdkafka's mock cluster) and a
//! development schema registry, both on loopback, for `sluice dev`, `sluice demo` and tests.

pub mod kafka;
pub mod registry;

use std::net::SocketAddr;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

pub use kafka::MockKafka;
pub use registry::DevRegistry;

use crate::config::Topology;

/// A running dev stack; the broker lives as long as this value.
pub struct DevStack {
    pub kafka: MockKafka,
    pub registry: DevRegistry,
}

#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    #[error("mock broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dev registry: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
}

impl DevStack {
    /// Starts the broker and registry, points `topology` at them, creates every topic and
    /// registers every schema.
    pub async fn start(
        topology: &mut Topology,
        registry_addr: SocketAddr,
    ) -> Result<Self, DevStackError> {
        let kafka = MockKafka::start(1)?;
        let registry = registry::serve(registry_addr).await?;
        topology.kafka.bootstrap_servers = kafka.bootstrap_servers().to_owned();
        topology.schema_registry.url = registry.url();
        for t in topology.topics() {
            kafka.create_topic(&t.name, t.partitions)?;
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
