//! Call identity, below every module that makes, meters or caches a model call: the stable hash
//! that ids and routing derive from, the wall clock in milliseconds, a record's [`CallLog`] with
//! its [`Origin`] and deterministic event ids, and the [`CostEvent`] record itself. It depends on
//! nothing in the crate but the Avro schemas.

mod clock;
mod event;
mod hash;
mod log;
mod trace;

pub use clock::now_ms;
pub use event::CostEvent;
pub use hash::stable_hash;
pub use log::{event_id, CallLog, CallSite, Origin};
pub use trace::trace_id_of;
