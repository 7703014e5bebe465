//! The cost events of a record's model calls as records for the metering topic. They are
//! outputs like any other — the offset waits for their acknowledgement — and a record that will
//! not finish here still has its billed calls metered (see `Worker::meter_anyway`).

use super::disposition::OutRecord;
use super::inbound::Inbound;
use crate::avro::Codec;
use crate::call::CallLog;
use crate::retry::state::HeaderPair;
use crate::telemetry::CostEventUnencodable;

/// Every event in `log` (taken from it), encoded for `topic`; `Err` (logged) if one cannot be
/// encoded: the record must then not finish, or a billed call would go unmetered.
pub(super) fn records(
    codec: &Codec,
    topic: &str,
    stage: &str,
    inbound: &Inbound,
    log: &CallLog,
) -> Result<Vec<OutRecord>, String> {
    let trace: Vec<HeaderPair> = inbound
        .traceparent()
        .map(|v| ("traceparent".to_owned(), Some(v.to_vec())))
        .into_iter()
        .collect();
    log.take()
        .into_iter()
        .map(|event| {
            let payload = event
                .to_value()
                .map_err(|e| e.to_string())
                .and_then(|v| codec.encode(topic, &v).map_err(|e| e.to_string()))
                .map_err(|error| {
                    CostEventUnencodable { stage, error: &error }.emit();
                    format!("cannot encode a cost event: {error}")
                })?;
            Ok(OutRecord {
                topic: topic.to_owned(),
                key: Some(event.event_id.into_bytes()),
                payload,
                headers: trace.clone(),
            })
        })
        .collect()
}
