//! The one way tests drive a runner: start a stage ([`Harness::start_stage`]) or the whole
//! pipeline ([`Harness::start_pipeline`]) in the background, wait for a condition with a deadline
//! ([`Running::until`]), stop it ([`Running::stop`]) — or all three at once with
//! [`Running::run_until`]. A runner still running when a test ends (by panic too) is stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::pipeline::{run_stages, PipelineError};
use sluice::runner::{self, RunError, RunReport};
use sluice::shutdown::Shutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Harness, Script, TestStage};

/// How long a runner may take to drain and stop once asked.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// Stops a runner when dropped, so a failing test fails instead of hanging on the runner's
/// poll thread.
pub struct StopOnDrop(pub Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A runner working in the background; `T` is what it returns.
pub struct Running<T> {
    pub shutdown: Shutdown,
    _stop: StopOnDrop,
    task: JoinHandle<T>,
}

pub type StageRun = Running<Result<RunReport, RunError>>;
pub type PipelineRun = Running<Result<Vec<RunReport>, PipelineError>>;

impl<T: Send + 'static> Running<T> {
    fn spawn(shutdown: Shutdown, run: impl Future<Output = T> + Send + 'static) -> Self {
        Self { _stop: StopOnDrop(shutdown.clone()), shutdown, task: tokio::spawn(run) }
    }

    /// Waits until `condition` holds; panics naming `what` if `timeout` passes first or the
    /// runner ends before.
    pub async fn until<F, Fut>(&self, timeout: Duration, what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let held = wait_until(timeout, || {
            let check = condition();
            async { self.task.is_finished() || check.await }
        })
        .await;
        assert!(!self.task.is_finished(), "the runner ended before: {what}");
        assert!(held, "not within {timeout:?}: {what}");
    }

    /// Asks the runner to stop (drain, commit) and returns what it returned.
    pub async fn stop(self) -> T {
        self.shutdown.request();
        self.finished().await
    }

    /// Waits for the runner to end by itself (a fatal error) and returns what it returned.
    pub async fn finished(self) -> T {
        tokio::time::timeout(STOP_DEADLINE, self.task)
            .await
            .expect("the runner stops within its deadline")
            .expect("runner task")
    }

    /// [`Running::until`], then [`Running::stop`].
    pub async fn run_until<F, Fut>(self, timeout: Duration, what: &str, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.until(timeout, what, condition).await;
        self.stop().await
    }
}

impl Harness {
    /// Runs `stage` as the topology's first stage, through the generic runner.
    pub async fn start_stage(&self, stage: TestStage) -> StageRun {
        let codec = Arc::new(self.codec().await);
        let (spec, topology) = (self.topology.stages[0].clone(), self.topology.clone());
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        Running::spawn(shutdown, async move {
            let permits = Arc::new(Semaphore::new(10_000));
            runner::run(stage, &spec, &topology, codec, permits, s).await
        })
    }

    /// Runs `script` as the topology's first stage until every id of `inputs` reached its
    /// output or dead-letter topic (or `timeout` passed: a failure), then stops it.
    pub async fn run_to_end(
        &self,
        script: Script,
        inputs: &[String],
        timeout: Duration,
    ) -> TestStage {
        let stage = TestStage::new(script);
        self.start_stage(stage.clone())
            .await
            .run_until(timeout, "every record ended", || async {
                self.oracle(inputs.to_vec()).await.all_ended()
            })
            .await
            .expect("run");
        stage
    }

    /// Runs every stage of the topology, as `sluice run` does.
    pub fn start_pipeline(&self) -> PipelineRun {
        let shutdown = Shutdown::new();
        let (t, s) = (self.topology.clone(), shutdown.clone());
        Running::spawn(shutdown, async move { run_stages(&t, &[], s).await })
    }
}
