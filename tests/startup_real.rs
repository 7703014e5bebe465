//! Starting on Apache Kafka as people do: `sluice dev` the moment a fresh broker says it started
//! (leaders still being elected), and `sluice dev --broker apache`, which starts one itself. Each
//! test starts a fresh broker of its own (about 10 s; needs Java 17+ and the jars
//! `scripts/kafka-broker` fetches), so both are #[ignore]d outside the kafka step:
//!   scripts/with-kafka cargo test --test startup_real -- --include-ignored

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const TOPOLOGY: &str = "topologies/support-rag.yaml";

/// A process that is stopped with SIGTERM (so `sluice dev --broker apache` stops its broker)
/// and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn terminate(&mut self) -> bool {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.0.wait().expect("reaped").success()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// A fresh broker from scripts/kafka-broker, stopped and removed when dropped.
struct Broker {
    state: tempfile::TempDir,
    bootstrap: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-broker")
}

impl Broker {
    /// Returns as soon as the script says the broker started.
    fn start() -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        let out = Command::new(script()).arg("start").arg(state.path()).output().expect("start");
        assert!(out.status.success(), "broker: {}", String::from_utf8_lossy(&out.stderr));
        let bootstrap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self { state, bootstrap }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(self.state.path()).status();
    }
}

/// Starts `sluice dev` with `args` and returns it with its two env lines, read as soon as it
/// prints them (it has said the stack is up).
fn dev(args: &[&str], bootstrap: Option<&str>) -> (Proc, Vec<(String, String)>) {
    let mut c = Command::new(BIN);
    c.args(["dev", "--topology", TOPOLOGY]).args(args).env("RUST_LOG", "info,librdkafka=off");
    match bootstrap {
        Some(b) => c.env("KAFKA_BOOTSTRAP_SERVERS", b),
        None => c.env_remove("KAFKA_BOOTSTRAP_SERVERS"),
    };
    let mut child = c.stdout(Stdio::piped()).spawn().expect("start sluice dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let proc = Proc(child);
    let env = (0..2)
        .map(|_| lines.next().expect("sluice dev printed its env lines").expect("utf-8"))
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("K=V"))
        .collect();
    (proc, env)
}

fn sluice(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run sluice")
}

/// What every client started the moment the stack is up must be able to do at once: read each
/// topic (its partitions' leaders elected), from the beginning to its end.
fn assert_serves(env: &[(String, String)]) {
    for topic in ["support.documents", "support.answers", "support-rag.budgets"] {
        let args = ["consume", "--topology", TOPOLOGY, "--topic", topic];
        let out = sluice(env, &[&args[..], &["--from-beginning", "--exit-at-end"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "consume {topic} right after the stack said it was up:\n{stderr}"
        );
    }
    // `status` describes the groups and reads every watermark: 0 (healthy) or 3 (a stage has no
    // members yet), never 1 (nothing read) or 4 (a row incomplete) on a broker that is up.
    let out = sluice(env, &["status", "--topology", TOPOLOGY]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 3)),
        "status right after the stack said it was up exited {code:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "starts Apache Kafka (Java 17+): run by scripts/test's kafka step"]
fn dev_on_a_broker_that_just_started_comes_up_and_serves_clients_at_once() {
    let broker = Broker::start();
    let (mut stack, env) = dev(&[], Some(&broker.bootstrap));
    assert_eq!(env[0], ("KAFKA_BOOTSTRAP_SERVERS".into(), broker.bootstrap.clone()));
    assert_serves(&env);
    assert!(stack.terminate(), "sluice dev ended well on SIGTERM");
}

#[test]
#[ignore = "starts Apache Kafka (Java 17+): run by scripts/test's kafka step"]
fn dev_broker_apache_serves_librdkafka_and_java_clients_and_stops_its_broker() {
    let before = dev_brokers();
    let (mut stack, env) = dev(&["--broker", "apache"], Some("127.0.0.1:1"));
    let bootstrap = env[0].1.clone();
    assert_ne!(bootstrap, "127.0.0.1:1", "--broker apache runs on its own broker");
    assert_serves(&env);
    // A Kafka Java client, which the embedded broker cannot serve, gets the topic's partitions.
    let jars = Command::new(script()).arg("fetch").output().expect("fetch");
    let jars = String::from_utf8_lossy(&jars.stdout).trim().to_owned();
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/JavaClientProbe.java");
    let java = Command::new("java")
        .args(["-cp", &format!("{jars}/*")])
        .arg(&probe)
        .args([&bootstrap, "support.documents"])
        .output()
        .expect("java");
    let stdout = String::from_utf8_lossy(&java.stdout);
    assert!(stdout.contains("partitions: 6"), "{stdout}{}", String::from_utf8_lossy(&java.stderr));
    assert!(stack.terminate(), "sluice dev ended well on SIGTERM");
    assert_eq!(dev_brokers(), before, "the broker's state is removed when sluice dev stops");
}

/// The state directories of brokers `sluice dev --broker apache` started and has not removed.
fn dev_brokers() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sluice-dev-kafka."))
        })
        .collect();
    found.sort();
    found
}
