//! The bounded queue between finished spans and the exporter: a slow or dead collector never
//! slows a record. Ending a span only counts and hands it to the SDK's batch processor, whose
//! thread does the exporting; once `capacity` spans wait for it, further spans are dropped and
//! counted in `sluice_trace_spans_dropped_total`.
//!
//! The SDK's batch processor bounds its queue too but does not say how many spans it dropped, so
//! [`Bounded`] admits spans itself and [`Counted`] (around the exporter) gives their places back
//! as the processor's thread takes them: the processor's own queue never fills.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// Places in the queue: how many spans wait for the exporter, and how many were dropped.
#[derive(Debug)]
pub(super) struct Queue {
    capacity: usize,
    waiting: AtomicUsize,
    dropped: AtomicU64,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self { capacity, waiting: AtomicUsize::new(0), dropped: AtomicU64::new(0) })
    }

    /// Takes a place for one span; `false` (and the drop counted) when the queue is full.
    fn admit(&self) -> bool {
        if self.waiting.fetch_add(1, Ordering::AcqRel) < self.capacity {
            return true;
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let first = self.dropped.fetch_add(1, Ordering::Relaxed) == 0;
        super::SpansDropped { count: 1, first }.emit();
        false
    }

    /// The exporter took `n` spans: their places are free.
    fn taken(&self, n: usize) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some(w.saturating_sub(n)));
    }

    /// Spans dropped since this queue was made.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A span processor that admits finished spans to `inner` only while the queue has room.
#[derive(Debug)]
pub(super) struct Bounded<P> {
    pub inner: P,
    pub queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that frees the queue's places of the spans it is given.
#[derive(Debug)]
pub(super) struct Counted<E> {
    pub inner: E,
    pub queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.queue.taken(batch.len());
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Mutex;

    use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    use super::*;

    /// A processor that keeps what it is given and never exports.
    #[derive(Debug, Default, Clone)]
    struct Keeping(Arc<Mutex<Vec<String>>>);

    impl SpanProcessor for Keeping {
        fn on_start(&self, _: &mut Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().expect("kept").push(span.name.into_owned());
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn end_spans(provider: &SdkTracerProvider, n: usize) {
        let tracer = provider.tracer("test");
        for i in 0..n {
            tracer.start(format!("s{i}")).end();
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_until_the_exporter_takes_spans() {
        let kept = Keeping::default();
        let queue = Queue::new(2);
        let before = super::super::export_events::spans_dropped().get();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded { inner: kept.clone(), queue: queue.clone() })
            .build();
        end_spans(&provider, 5);
        assert_eq!(*kept.0.lock().expect("kept"), ["s0", "s1"]);
        assert_eq!(queue.dropped(), 3);
        assert!(
            super::super::export_events::spans_dropped().get() >= before + 3,
            "the metric counts them too"
        );
        queue.taken(2);
        end_spans(&provider, 1);
        assert_eq!(kept.0.lock().expect("kept").len(), 3, "a freed place admits the next span");
    }

    /// An exporter whose collector never answers until released.
    #[derive(Debug)]
    struct Stuck(Mutex<mpsc::Receiver<()>>);

    impl SpanExporter for Stuck {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.0.lock().expect("gate").recv();
            Ok(())
        }
    }

    #[test]
    fn a_stuck_collector_never_blocks_ending_spans() {
        let (release, gate) = mpsc::channel();
        let queue = Queue::new(4);
        let exporter = Counted { inner: Stuck(Mutex::new(gate)), queue: queue.clone() };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(4)
            .with_max_export_batch_size(4)
            .with_scheduled_delay(Duration::from_millis(1))
            .build();
        let processor = BatchSpanProcessor::new(exporter, config);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded { inner: processor, queue: queue.clone() })
            .build();
        end_spans(&provider, 100);
        // At most one batch is with the stuck exporter and one queue's worth waits for it.
        assert!(queue.dropped() >= 92, "dropped {}", queue.dropped());
        drop(release);
        provider.shutdown().expect("shuts down once the collector answers");
    }
}
