//! The embedded broker: librdkafka's mock cluster, which speaks the real Kafka protocol on
//! loopback ports, so sluice's own clients and external ones (kcat, confluent-kafka) connect to
//! it like to any broker. It is not `Send`: keep it on the thread that created it.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl MockKafka {
    pub fn start(brokers: i32) -> Result<Self, rdkafka::error::KafkaError> {
        let cluster = MockCluster::new(brokers)?;
        let bootstrap = cluster.bootstrap_servers();
        Ok(Self { cluster, bootstrap })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic (replication is capped at the broker count).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.create_topic(name, partitions, 1)
    }

    /// The underlying cluster, for fault injection in tests.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
