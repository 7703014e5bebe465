//! sluice: a streaming AI-inference pipeline on Kafka.
//!
//! Documents arrive on input topics; stateless stages (classify, embed, retrieve, generate,
//! review) each run as their own consumer group, joined by topics carrying Avro records in the
//! Confluent wire format. A stage's input offset is stored only after every output it owes is
//! acknowledged.
//!
//! # Layout
//! Dependencies point one way: [`config`] → [`provider`] → [`policy`] → [`stage`] → [`runner`] →
//! [`pipeline`] → `cli` (the binary), with shared leaf helpers ([`call`], [`avro`], [`tokens`],
//! [`telemetry`]) below all of them.
//!
//! - [`call`]: call identity, below everything that makes, meters or caches a model call: the
//!   stable hash, the millisecond clock, a record's call log and event ids, the cost event.
//! - [`config`]: topology files, compiled in two phases with every error reported.
//! - [`avro`]: the shipped schemas, record types, wire-format codec and registry calls.
//! - [`provider`]: model providers behind a closed enum: `openai` (any OpenAI-compatible
//!   server), `anthropic`, and `simulated` for offline runs.
//! - [`policy`]: the gateway stages call models through: routing, fallback chains, rate limits,
//!   circuit breakers, prompt templates, A/B splits, cost events and the response cache (on
//!   disk or in Redis).
//! - [`stage`]: the `Stage` trait and the five stage kinds, one file each; no Kafka in sight.
//! - [`store`]: vector stores for retrieval (embedded, Qdrant).
//! - [`budget`]: tenant budgets shared by replicas through a ledger topic.
//! - [`metering`]: the metering topic read back, and cost reports.
//! - [`pii`]: PII detection and redaction.
//! - [`tokens`]: token counting and chunking with tiktoken.
//! - [`mock_provider`]: an OpenAI- and Anthropic-compatible mock server for tests and load tests.
//! - [`runner`]: the generic at-least-once runner that owns consuming, producing and offsets.
//! - [`retry`]: what happens next to a record that did not simply succeed: backoff timings, the
//!   retry state carried in headers (read without trusting them), and the decision after a
//!   failed attempt.
//! - [`kafka`]: client configuration (Kafka and the schema registry), topic administration, and
//!   the probe that tells the embedded broker (no admin API) from a real one; `ready`, how a
//!   broker still coming up is waited out and one that is not there reported at once.
//! - [`pipeline`]: runs a topology's stages in one process.
//! - [`ops`]: the operator's side as library functions: replay plans, group members, stage
//!   status, dead-letter inspection and redrive.
//! - [`devstack`]: the embedded broker (or Apache Kafka, `--broker apache`) and development
//!   schema registry behind `sluice dev`.
//! - [`records_io`]: JSON lines to Avro records and back, for the CLI.
//! - [`time`]: RFC 3339 output and the one grammar for instants and durations on the command
//!   line.
//! - [`telemetry`]: typed events, logs and Prometheus metrics; `/healthz` and `/readyz`;
//!   OpenTelemetry traces when the `OTEL_*` variables name a collector.
//! - [`shutdown`]: the two-phase shutdown signal.

pub mod avro;
pub mod budget;
pub mod call;
pub mod config;
pub mod console;
pub mod devstack;
pub mod kafka;
pub mod metering;
pub mod mock_provider;
pub mod ops;
pub mod pii;
pub mod pipeline;
pub mod policy;
pub mod provider;
pub mod records_io;
pub mod retry;
pub mod runner;
pub mod shutdown;
pub mod stage;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tokens;
