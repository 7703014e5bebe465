//! Events of the telemetry exporters themselves: spans the trace exporter could not keep (its
//! bounded queue was full, or the collector refused or never answered). A slow collector must
//! never slow records, so spans are dropped instead, and counted here.

use std::sync::OnceLock;

use prometheus::IntCounter;

use super::metrics;

/// `sluice_trace_spans_dropped_total`, registered in the one registry on first use (the metrics
/// page touches it, so it reads 0 before any span is dropped).
pub(super) fn spans_dropped() -> &'static IntCounter {
    static DROPPED: OnceLock<IntCounter> = OnceLock::new();
    DROPPED.get_or_init(|| {
        let c = IntCounter::new(
            "trace_spans_dropped_total",
            "Spans the trace exporter dropped (queue full, collector slow, down or refusing).",
        )
        .expect("valid");
        metrics().registry.register(Box::new(c.clone())).expect("unique metric");
        c
    })
}

/// The trace exporter dropped `count` spans; `first`: the first drop of the process, which is
/// logged (a dead collector would otherwise write a line per record).
pub struct SpansDropped {
    pub count: u64,
    pub first: bool,
}

impl SpansDropped {
    pub fn emit(self) {
        if self.count == 0 {
            return;
        }
        spans_dropped().inc_by(self.count);
        if self.first {
            tracing::warn!(
                "the trace export queue is full: spans are dropped (counted in \
                 sluice_trace_spans_dropped_total) until the collector keeps up"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_spans_are_counted_and_shown_before_any_drop() {
        assert!(super::super::render().contains("sluice_trace_spans_dropped_total "));
        let before = spans_dropped().get();
        SpansDropped { count: 3, first: false }.emit();
        SpansDropped { count: 0, first: false }.emit();
        assert_eq!(spans_dropped().get(), before + 3);
    }
}
