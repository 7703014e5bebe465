//! Shutdown in two phases: `request` (SIGINT/SIGTERM: stop fetching, drain in-flight records up
//! to the grace period, commit) and `stop` (grace is over: abandon what is left; its offsets were
//! never stored, so it is redelivered).

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Stopped,
}

#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::channel(Phase::Running).0) }
    }

    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// Begins a graceful shutdown.
    pub fn request(&self) {
        self.tx.send_if_modified(|p| {
            let change = *p == Phase::Running;
            if change {
                *p = Phase::Draining;
            }
            change
        });
    }

    /// Ends the grace period: in-flight work is abandoned.
    pub fn stop(&self) {
        self.tx.send_replace(Phase::Stopped);
    }

    /// Resolves once the phase is at least `phase`.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Requests shutdown on the first SIGINT or SIGTERM; a second one stops at once.
    pub fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            for _ in 0..2 {
                wait_for_signal().await;
                if this.phase() == Phase::Running {
                    crate::telemetry::ShutdownSignalled { forced: false }.emit();
                    this.request();
                } else {
                    crate::telemetry::ShutdownSignalled { forced: true }.emit();
                    this.stop();
                }
            }
        });
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
