//! Running a topology's stages in one process: schema checks at startup, one runner per stage,
//! one process-wide bound on records in flight.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::avro::{check_registered, Codec, RegistryError, SchemaKind};
use crate::budget::{Budgets, LedgerError};
use crate::config::{StageSpec, Topology};
use crate::policy::semantic::{IndexLimits, SemanticStore, StoreError};
use crate::policy::{Gateway, GatewayError};
use crate::runner::{self, RunError, RunReport};
use crate::shutdown::Shutdown;
use crate::stage::{AnyStage, BuildError};

/// The registry settings live with the other client settings in [`crate::kafka`]; re-exported
/// for callers that still name them here.
use crate::kafka::{group_protocol, registry_settings};
use crate::telemetry::{GroupProtocolChosen, SemanticCacheRead};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown stage '{0}'")]
    UnknownStage(String),
    #[error("schemas missing from the registry:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Schemas(Vec<RegistryError>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Semantic(#[from] StoreError),
}

/// Every (topic, schema) pair of the topology, for registration.
pub fn schema_pairs(topology: &Topology) -> Vec<(String, SchemaKind)> {
    topology.topics().into_iter().filter_map(|t| Some((t.name, t.schema?))).collect()
}

/// The (topic, schema) pairs a stage reads or writes.
pub fn stage_schema_pairs(topology: &Topology, spec: &StageSpec) -> Vec<(String, SchemaKind)> {
    let mut topics: Vec<&str> = spec.output_topics();
    topics.push(&spec.dead_letter_topic);
    topics.push(&spec.input);
    topics.push(&topology.metering_topic);
    if let Some(b) = &topology.budgets {
        topics.push(&spec.deferred_topic);
        topics.push(&b.ledger_topic);
    }
    topics.into_iter().filter_map(|t| topology.schema_of(t).map(|k| (t.to_owned(), k))).collect()
}

/// Runs the named stages (all of them when `names` is empty) until `shutdown`.
pub async fn run_stages(
    topology: &Topology,
    names: &[String],
    shutdown: Shutdown,
) -> Result<Vec<RunReport>, PipelineError> {
    let specs: Vec<&StageSpec> = if names.is_empty() {
        topology.stages.iter().collect()
    } else {
        names
            .iter()
            .map(|n| topology.stage(n).ok_or_else(|| PipelineError::UnknownStage(n.clone())))
            .collect::<Result<_, _>>()?
    };
    let topology = &with_group_protocol(topology).await;
    let settings = registry_settings(topology);
    let pairs: Vec<(String, SchemaKind)> =
        specs.iter().flat_map(|s| stage_schema_pairs(topology, s)).collect();
    check_registered(&settings, &pairs).await.map_err(PipelineError::Schemas)?;
    let codec = Arc::new(Codec::connect(&settings, &pairs).await?);
    let permits = Arc::new(Semaphore::new(topology.process_max_in_flight));
    // One gateway per process: every stage shares its rate limits and breakers.
    let budgets =
        Budgets::open(topology, codec.clone(), crate::budget::replica_id()).await?.map(Arc::new);
    let semantic = open_semantic_cache(topology).await?;
    let gateway = Arc::new(Gateway::new(topology)?.with_budgets(budgets).with_semantic(semantic));
    let mut tasks = Vec::new();
    for spec in specs {
        let stage = AnyStage::build(spec, topology, gateway.clone()).await?;
        let (spec, topology, codec, permits, shutdown) =
            (spec.clone(), topology.clone(), codec.clone(), permits.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let result =
                runner::run(stage, &spec, &topology, codec, permits, shutdown.clone()).await;
            if result.is_err() {
                // One stage failing stops the process: its siblings drain and commit too.
                shutdown.request();
            }
            result
        }));
    }
    let mut reports = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await.expect("stage task does not panic") {
            Ok(r) => reports.push(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(reports),
    }
}

/// The semantic cache's entries, read to their end (when a stage has a semantic cache).
pub async fn open_semantic_cache(
    topology: &Topology,
) -> Result<Option<Arc<SemanticStore>>, StoreError> {
    let Some(topic) = &topology.semantic_cache_topic else { return Ok(None) };
    let store = SemanticStore::open(&topology.kafka, topic, IndexLimits::default()).await?;
    let rebuild = store.rebuild();
    SemanticCacheRead {
        topic,
        records: rebuild.records,
        entries: rebuild.entries,
        elapsed: rebuild.elapsed,
    }
    .emit();
    Ok(Some(Arc::new(store)))
}

/// The topology with its stages' group protocol decided (see [`group_protocol`]): the
/// topology's own choice, else KIP-848 where the broker offers it, else classic. Logged.
async fn with_group_protocol(topology: &Topology) -> Topology {
    let kafka = topology.kafka.clone();
    let choice = tokio::task::spawn_blocking(move || group_protocol::choose(&kafka))
        .await
        .expect("protocol probe does not panic");
    GroupProtocolChosen {
        protocol: choice.protocol.as_str(),
        reason: &choice.reason,
        broker_session_timeout_ms: choice.broker_session_timeout.map(|d| d.as_millis() as u64),
    }
    .emit();
    let mut topology = topology.clone();
    group_protocol::apply(&mut topology.kafka, &choice);
    topology
}
