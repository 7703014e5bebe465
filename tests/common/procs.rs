//! `sluice run` as a separate worker process, killed when the handle drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

pub struct Worker(pub Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Worker {
    /// SIGKILL: no drain, no commit, no goodbye to the group.
    pub fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM: drain, commit, leave the group; waits for the process to exit and returns
    /// whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success(), "SIGTERM to {pid}");
        self.0.wait().expect("reaped").success()
    }
}

/// Where a worker's log goes: the test's stderr, or with `SLUICE_WORKER_LOG_DIR` set, a file of
/// its own there (`worker-<n>.log`, numbered in start order), so interleaved processes' debug
/// logs can be told apart.
fn stderr() -> Stdio {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("SLUICE_WORKER_LOG_DIR") else { return Stdio::inherit() };
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(&dir).join(format!("worker-{n}.log"));
    std::fs::File::create(&path).map_or_else(|e| panic!("{}: {e}", path.display()), Stdio::from)
}

/// Runs stage `work` of `topology` against the given broker and registry.
pub fn start_worker(topology: &Path, bootstrap: &str, registry_url: &str) -> Worker {
    start_worker_with(topology, bootstrap, registry_url, &[])
}

/// [`start_worker`] with more arguments for `sluice run` (e.g. `--metrics-addr`).
pub fn start_worker_with(
    topology: &Path,
    bootstrap: &str,
    registry_url: &str,
    args: &[&str],
) -> Worker {
    let child = Command::new(BIN)
        .args(["run", "--topology", topology.to_str().expect("utf-8 path"), "--stage", "work"])
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("SCHEMA_REGISTRY_URL", registry_url)
        .env("RUST_LOG", std::env::var("SLUICE_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(stderr())
        .spawn()
        .expect("start worker");
    Worker(child)
}
