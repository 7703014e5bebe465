//! The semantic cache's core: an earlier answer reused for a question that means the same.
//! [`key`] partitions the cache (stage, prompt version, model, embedding model, scope) so an
//! entry never answers another partition; [`guard`] refuses a reuse when the two texts differ in
//! a literal that changes the answer (an order number, a negation, a direction) however close
//! their embeddings are; [`index`] holds each partition's vectors in memory with TTL, capacity
//! and memory accounting; [`entry`] is the entry and its encoding on sluice's compacted topic,
//! read as hostile input; [`store`] shares the entries between replicas and restarts through
//! that topic.

pub mod entry;
pub mod guard;
pub mod index;
pub mod key;
mod lexicon;
pub mod store;

pub use entry::{record_key, unit_vector, DecodeError, SemanticEntry};
pub use guard::{compatible, Conflict, Literals};
pub use index::{Hit, IndexLimits, InsertError, Lookup, SemanticIndex};
pub use key::{Scope, SemanticKey};
pub use store::{Rebuild, SemanticStore, StoreError};
