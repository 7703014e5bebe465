//! The `sluice` binary as users run it: validate, demo, dev with external produce/consume and cost
//! reports, index, and the mock provider.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::Worker as Dev;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn sluice(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("RUST_LOG", "warn");
    c
}

#[test]
fn validate_exits_zero_for_good_files_and_two_with_every_problem() {
    let ok = sluice(&["validate", "topologies/support-rag.yaml", "topologies/backfill-embed.yaml"])
        .output()
        .expect("run");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = sluice(&["validate", "tests/fixtures/bad-topology.yaml"]).output().expect("run");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.starts_with("20 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("bad-topology.yaml: stage 'embed': field 'colour': unknown key"),
        "{stderr}"
    );
}

#[test]
fn validate_takes_files_with_or_without_topology_like_every_command() {
    let both = sluice(&[
        "validate",
        "--topology",
        "topologies/support-rag.yaml",
        "topologies/backfill-embed.yaml",
        "--topology",
        "tests/fixtures/bad-topology.yaml",
    ])
    .output()
    .expect("run");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&both.stdout), String::from_utf8_lossy(&both.stderr));
    assert_eq!(both.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("topologies/support-rag.yaml: ok"), "{stdout}");
    assert!(stdout.contains("topologies/backfill-embed.yaml: ok"), "{stdout}");
    assert!(stderr.contains("bad-topology.yaml: stage 'embed'"), "{stderr}");
    let one =
        sluice(&["validate", "--topology", "topologies/support-rag.yaml"]).output().expect("run");
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let none = sluice(&["validate"]).output().expect("run");
    assert_eq!(none.status.code(), Some(2), "no file is a usage error");
}

#[test]
fn demo_runs_every_example_document_to_a_final_topic() {
    // As a first-time user runs it: no RUST_LOG, so demo's own default (warnings only) applies.
    let out = sluice(&["demo"]).env_remove("RUST_LOG").output().expect("run demo");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("INFO"), "demo logs at WARN unless RUST_LOG asks for more:\n{stderr}");
    // Every column ends before the next begins: two spaces before the answer column.
    let header = stdout.lines().find(|l| l.starts_with("DOCUMENT ")).expect("result table");
    let answer_at = header.find("ANSWER / REASON").expect("answer column");
    for row in stdout.lines().filter(|l| l.starts_with("doc-")) {
        let before: String = row.chars().skip(answer_at - 2).take(2).collect();
        assert_eq!(before, "  ", "a column runs into the answer:\n{header}\n{row}");
    }
    assert!(stdout
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")));
    for i in 1..=8 {
        assert!(stdout.contains(&format!("doc-00{i}")), "doc-00{i} missing:\n{stdout}");
    }
    let line = stdout.lines().find(|l| l.starts_with("doc-008")).expect("doc-008 row");
    assert!(line.contains("dead letter (classify)") && line.contains("empty"), "{line}");
    let approved =
        stdout.lines().filter(|l| l.starts_with("doc-") && l.contains("approved")).count();
    assert!(approved >= 3, "most answers are approved:\n{stdout}");
    let review = stdout.lines().find(|l| l.starts_with("review ")).expect("stage counts");
    assert!(review.split_whitespace().nth(1) == Some("7"), "7 documents passed review: {review}");
    // Costs from the metering topic: one generate call per answered document, priced.
    let costs = stdout.split("\nCOST ").nth(1).expect("cost table");
    let generate = costs.lines().find(|l| l.starts_with("generate ")).expect("generate costs");
    let cols: Vec<&str> = generate.split_whitespace().collect();
    assert_eq!(cols[1], "7", "{generate}");
    assert!(cols[5].parse::<f64>().is_ok_and(|usd| usd > 0.0), "{generate}");
}

#[test]
fn dev_stack_serves_external_producers_and_consumers_and_stops_on_sigterm() {
    let mut child = sluice(&["dev", "--topology", "topologies/support-rag.yaml"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let dev = Dev(child);
    let env: Vec<(String, String)> = (0..2)
        .map(|_| lines.next().expect("env line").expect("utf-8"))
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("KEY=VALUE"))
        .collect();
    assert_eq!(env[0].0, "KAFKA_BOOTSTRAP_SERVERS");
    assert_eq!(env[1].0, "SCHEMA_REGISTRY_URL");
    let with_env = |args: &[&str]| {
        let mut c = sluice(args);
        c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.output().expect("run")
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("docs.jsonl");
    std::fs::write(
        &file,
        "{\"id\":\"x1\",\"tenant\":\"t\",\"content\":\"I was billed twice, refund please\"}\n\
         {\"id\":\"x2\",\"tenant\":\"t\"}\n\
         not json\n\
         {\"id\":\"x3\",\"tenant\":\"t\",\"content\":\"reset my password\",\"metadata\":{\"lang\":\"en\"}}\n",
    )
    .expect("write");
    let produced = with_env(&[
        "produce",
        "--topology",
        "topologies/support-rag.yaml",
        file.to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&produced.stderr);
    assert_eq!(produced.status.code(), Some(1), "bad lines make the exit code 1: {stderr}");
    assert!(
        stderr.contains("docs.jsonl:2: skipped: $.content: missing required field"),
        "{stderr}"
    );
    assert!(stderr.contains("docs.jsonl:3: skipped: not JSON"), "{stderr}");
    assert!(String::from_utf8_lossy(&produced.stdout).contains("produced 2 record(s)"));

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < 2 {
        seen.clear();
        for topic in ["support.answers", "support.needs-human", "support.rejected"] {
            let out = with_env(&[
                "consume",
                "--topology",
                "topologies/support-rag.yaml",
                "--topic",
                topic,
                "--from-beginning",
                "--exit-at-end",
            ]);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).expect("one JSON object per line");
                assert!(
                    v["partition"].is_i64() && v["offset"].is_i64() && v["headers"].is_object()
                );
                seen.push(v["key"].as_str().expect("key").to_owned());
                let version = v["value"]["answer"]["prompt_version"].as_str();
                assert!(matches!(version, Some("answer@1" | "answer@2")), "{version:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    seen.sort();
    assert_eq!(seen, ["x1", "x3"]);

    // Creating topics needs the admin API: on the embedded broker the command says so at once
    // and names the alternative; on a real broker (`sluice dev` under scripts/with-kafka) every
    // topic already exists. (Before, the request waited for librdkafka's 60 s timeout.)
    let asked = Instant::now();
    let create = with_env(&["topics", "create", "--topology", "topologies/support-rag.yaml"]);
    let (out, err) =
        (String::from_utf8_lossy(&create.stdout), String::from_utf8_lossy(&create.stderr));
    if std::env::var("KAFKA_BOOTSTRAP_SERVERS").is_ok_and(|s| !s.is_empty()) {
        assert!(create.status.success(), "{err}");
        assert!(out.starts_with("created 0 of "), "sluice dev created every topic: {out}");
    } else {
        assert!(!create.status.success());
        assert!(err.contains("embedded broker") && err.contains("scripts/with-kafka"), "{err}");
        assert!(asked.elapsed() < Duration::from_secs(30), "refused at once, not after a timeout");
    }

    let listed = with_env(&["topics", "list", "--topology", "topologies/support-rag.yaml"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("support-rag.review.dlq")
            && l.contains("dead-letter of stage 'review'")),
        "{listing}"
    );

    let report = with_env(&[
        "cost",
        "report",
        "--topology",
        "topologies/support-rag.yaml",
        "--by",
        "template",
        "--format",
        "json",
    ]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&report.stdout).expect("the report is JSON");
    let classify = rows.iter().find(|r| r["group"] == "classify@1").expect("classify@1 row");
    let n = |field: &str| classify[field].as_u64().unwrap_or(0);
    // One paid call per document: made now, or made by an earlier run and re-emitted by the
    // response cache (a fresh dev broker has not seen it). Simulated failures add failed ones.
    assert_eq!(n("requests") - n("failed"), 2, "two documents classified: {classify}");
    assert!(rows.iter().any(|r| r["group"] == "judge@builtin"), "{rows:?}");
    let table =
        with_env(&["cost", "report", "--topology", "topologies/support-rag.yaml", "--by", "stage"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("STAGE ") && table.contains("FIRST SEEN"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("generate ")), "{table}");
    assert!(table.trim_end().ends_with(" USD"), "{table}");

    let pid = dev.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let mut dev = dev;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = dev.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "clean exit after draining: {status:?}");
}

#[test]
fn index_embeds_a_knowledge_base_into_the_stages_store() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("topologies")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("examples")).expect("mkdir");
    let topology = dir.path().join("topologies/support-rag.yaml");
    std::fs::copy("topologies/support-rag.yaml", &topology).expect("copy topology");
    let kb = dir.path().join("examples/kb.jsonl");
    std::fs::copy("examples/kb.jsonl", &kb).expect("copy kb");
    let out = sluice(&[
        "index",
        "--topology",
        topology.to_str().expect("utf8"),
        kb.to_str().expect("utf8"),
    ])
    .output()
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("indexed 10 passages into stage 'retrieve' (10 in the store)"),
        "{stdout}"
    );
    let vectors = dir.path().join(".sluice/support-rag-kb/vectors.f32");
    assert_eq!(std::fs::metadata(vectors).expect("store written").len(), 10 * 64 * 4);
}

#[tokio::test]
async fn mock_provider_serves_openai_calls_and_bills_them_in_its_ledger() {
    let mut child =
        sluice(&["mock-provider", "--port", "0", "--latency", "0ms", "--price", "cls=1,2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mock-provider");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let _guard = Dev(child);
    let base = first.rsplit(' ').next().expect("address").to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "model": "cls",
        "messages": [{ "role": "user", "content": "refund my invoice please" }],
        "max_tokens": 20,
    });
    let answer: serde_json::Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("chat call")
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(answer["object"], "chat.completion");
    let (input, output) = (
        answer["usage"]["prompt_tokens"].as_u64().expect("usage"),
        answer["usage"]["completion_tokens"].as_u64().expect("usage"),
    );
    let ledger: serde_json::Value = client
        .get(format!("{base}/mock/ledger"))
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("JSON");
    let cls = &ledger["models"]["cls"];
    assert_eq!(cls["calls"], 1);
    // 1 and 2 USD per million tokens, rounded up to a whole micro-dollar.
    assert_eq!(cls["cost_micro_usd"].as_u64(), Some(input + 2 * output));
}

#[test]
fn console_refuses_to_listen_off_loopback_without_a_token_before_connecting() {
    // No broker listens at the address given: the refusal names the address, not the broker.
    let out =
        sluice(&["console", "--topology", "topologies/support-rag.yaml", "--addr", "0.0.0.0:0"])
            .env_remove("SLUICE_CONSOLE_TOKEN")
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .output()
            .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("SLUICE_CONSOLE_TOKEN"),
        "{stderr}"
    );
    let missing = sluice(&[
        "console",
        "--topology",
        "topologies/support-rag.yaml",
        "--token-file",
        "/nonexistent",
    ])
    .output()
    .expect("run");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("reading the access file /nonexistent")
    );
}
