//! The command line as a shell user meets it, on the embedded dev stack: output piped into a
//! reader that stops early (`| head -1`) ends sluice quietly; a mistyped topic is named, with the
//! topics it may have meant; a log written to a file carries no terminal colours.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const TOPOLOGY: &str = "topologies/support-rag.yaml";

struct Dev {
    child: Child,
    env: Vec<(String, String)>,
    log: tempfile::NamedTempFile,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice dev` on the embedded broker, its log (stderr) going to a file as `2>dev.log` would.
fn dev() -> Dev {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = Command::new(BIN)
        .args(["dev", "--topology", TOPOLOGY])
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("start sluice dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let env = (0..2)
        .map(|_| lines.next().expect("env line").expect("utf-8"))
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("K=V"))
        .collect();
    Dev { child, env, log }
}

/// `sluice ARGS | head -c 0` under `set -o pipefail`: the reader is gone before sluice writes.
fn into_closed_pipe(dev: &Dev, args: &str) -> Output {
    Command::new("bash")
        .args(["-c", &format!("set -o pipefail; \"{BIN}\" {args} | head -c 0")])
        .env("RUST_LOG", "warn")
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("bash")
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly_and_a_mistyped_topic_is_named() {
    let dev = dev();
    let produce = Command::new(BIN)
        .args(["produce", "--topology", TOPOLOGY, "examples/documents.jsonl"])
        .env("RUST_LOG", "warn")
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("produce");
    assert!(produce.status.success(), "{}", String::from_utf8_lossy(&produce.stderr));

    for args in [
        format!("consume --topology {TOPOLOGY} --topic support.documents --from-beginning"),
        format!("cost report --topology {TOPOLOGY}"),
    ] {
        let out = into_closed_pipe(&dev, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "sluice {args} | head -c 0:\n{stderr}");
        assert_eq!(out.status.code(), Some(0), "sluice {args} | head -c 0:\n{stderr}");
    }

    let typo = Command::new(BIN)
        .args(["consume", "--topology", TOPOLOGY, "--topic", "support.documnets"])
        .args(["--from-beginning", "--exit-at-end"])
        .env("RUST_LOG", "warn")
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("consume");
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success(), "{stderr}");
    assert!(stderr.contains("topic 'support.documnets' does not exist"), "{stderr}");
    assert!(stderr.contains("did you mean 'support.documents'"), "{stderr}");

    let log = std::fs::read_to_string(dev.log.path()).expect("log");
    assert!(log.contains("stage running"), "the log file has the stages' lines:\n{log}");
    assert!(!log.contains('\u{1b}'), "no terminal colours in a log file:\n{log}");
}
