//! Topologies: the YAML file that names the Kafka connection, the schema registry, the model
//! providers and the stages. Compiled in two phases ([`section`] reads, [`compile`] checks) into
//! a [`Topology`] that the runtime uses without further checks.

mod budgets;
mod compile;
mod crossref;
pub mod defaults;
mod delivery;
mod errors;
mod groups;
mod kinds;
mod model;
mod policy;
mod prices;
mod providers;
mod section;
mod semantic;
mod stage;
mod store_pg;
mod topics;
mod values;

pub use compile::{compile, load};
pub use crossref::chain as fallback_chain;
pub use errors::{ConfigError, ConfigErrors};
pub use model::*;
pub use policy::*;
pub use providers::placeholders;
pub use topics::{output_schema, PlannedTopic, TopicRole};
pub use values::parse_duration;

/// Environment variables that override the topology's connection settings, so one file runs
/// against the dev stack, a local broker or a production cluster.
pub const ENV_BOOTSTRAP: &str = "KAFKA_BOOTSTRAP_SERVERS";
pub const ENV_REGISTRY: &str = "SCHEMA_REGISTRY_URL";

impl Topology {
    /// Applies `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL` when set and non-empty.
    pub fn apply_env_overrides(&mut self) {
        if let Some(v) = std::env::var(ENV_BOOTSTRAP).ok().filter(|v| !v.is_empty()) {
            self.kafka.bootstrap_servers = v;
        }
        if let Some(v) = std::env::var(ENV_REGISTRY).ok().filter(|v| !v.is_empty()) {
            self.schema_registry.url = v;
        }
    }

    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }
}
