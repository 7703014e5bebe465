//! The embedded development stack: a Kafka-protocol broker (librdkafka's mock cluster) and a
//! development schema registry, both on loopback, for `sluice dev`, `sluice demo` and tests.

pub mod registry;
