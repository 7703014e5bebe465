//! The test kit every test binary shares. Each binary uses a different subset.
//!
//! - [`topology`]: unique topic and group names, and the one-stage topology most runner tests use.
//! - [`harness`]: the embedded broker and dev registry with a compiled topology; producing records.
//! - [`read`]: reading topics, committed offsets and Avro fields back.
//! - [`run`]: the one way to drive a runner: start it, wait for a condition with a deadline, stop.
//! - [`stage`]: a scripted test stage that records its calls and its peak concurrency.
//! - [`faults`]: several brokers, a feed that keeps producing through a fault, leaders, counters.
//! - [`handover`]: a second member joining mid-stream, and the redos the broker's positions allow.
//! - [`oracle`]: where every input id ended (output or dead letter), duplicates counted.
//! - [`stalls`]: how long each input partition went without output, from the outputs' timestamps.
//! - [`watch`]: a group's committed positions, read by the test from the broker through a run.
//! - [`procs`], [`qdrant`], [`redis`]: worker processes and real servers on loopback.
#![allow(dead_code, unused_imports, reason = "each test binary uses a different subset")]

pub mod browser;
pub mod console;
pub mod crash;
pub mod faults;
pub mod handover;
pub mod harness;
pub mod hostile;
pub mod letters;
pub mod oracle;
pub mod procs;
pub mod qdrant;
pub mod raw_headers;
pub mod read;
pub mod redis;
pub mod run;
pub mod stage;
pub mod stalls;
pub mod topology;
pub mod watch;

pub use harness::{mock_provider, Harness};
pub use oracle::Oracle;
pub use read::{committed, each_record, field, raw_headers};
pub use run::{wait_until, Running, StopOnDrop};
pub use stage::{Script, TestStage};
pub use topology::{document, ids, unique, OneStage};
// The exactly-once suite (tests/exactly_once.rs): a read_committed reader, and its runs.
pub mod billing;
pub mod committed;
pub mod exactly;
pub mod figures;
