//! The operator's view, checked with the real tools of Debian's `prometheus` package (installed by
//! `scripts/bootstrap`; a missing binary fails the test and names the script, never skips it):
//! the alert rules pass `promtool check rules` and their unit tests; a running worker's `/metrics`
//! passes `promtool check metrics` and names every metric a rule or a dashboard panel queries; a
//! real Prometheus server scrapes the worker, answers queries for its series, evaluates every rule
//! without error, and runs every dashboard query.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::crash::Scenario;
use common::wait_until;
use serde_json::Value;

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/alerts_test.yml";
const DASHBOARD: &str = "deploy/grafana/sluice.json";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A binary of Debian's `prometheus` package, found on PATH.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()).unwrap_or_else(
        || {
            panic!(
                "`{name}` is not on PATH: run scripts/bootstrap (it installs Debian's prometheus \
                 package, which provides prometheus and promtool)"
            )
        },
    )
}

/// Runs promtool with `args` (and `stdin`); returns whether it succeeded and what it printed.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write to promtool");
    drop(input);
    let out = child.wait_with_output().expect("promtool");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", repo(ALERTS).to_str().expect("utf-8")], None);
    assert!(ok, "promtool check rules {ALERTS}:\n{out}");
    let (ok, out) = promtool(&["test", "rules", repo(ALERT_TESTS).to_str().expect("utf-8")], None);
    assert!(ok, "promtool test rules {ALERT_TESTS}:\n{out}");
}

/// The PromQL of every alert rule.
fn rule_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo(ALERTS)).expect("read alert rules");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("alert rules YAML");
    let groups = rules["groups"].as_sequence().expect("groups");
    let exprs: Vec<String> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| r["expr"].as_str().expect("every rule has an expr").to_owned())
        .collect();
    assert!(exprs.len() >= 7, "the rules of issue 12 are all there: {exprs:?}");
    exprs
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo(DASHBOARD)).expect("read dashboard");
    serde_json::from_str(&text).expect("dashboard JSON")
}

/// The PromQL of every dashboard panel, with Grafana's variables bound as a query of every
/// stage would bind them.
fn panel_queries() -> Vec<String> {
    let exprs: Vec<String> = dashboard()["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let targets = p["targets"].as_array();
            assert!(targets.is_some_and(|t| !t.is_empty()), "panel without a query: {p}");
            targets.expect("targets").iter().map(|t| t["expr"].as_str().expect("expr").to_owned())
        })
        .collect();
    assert!(exprs.len() >= 20, "a dashboard worth the name: {exprs:?}");
    exprs.iter().map(|e| e.replace("$__rate_interval", "1m").replace("$stage", ".*")).collect()
}

/// The queries of the dashboard's template variables (Grafana's `label_values(...)`).
fn variable_queries() -> Vec<String> {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().expect("templating").iter();
    variables.filter_map(|v| v["definition"].as_str().map(str::to_owned)).collect()
}

/// The sluice metric names a PromQL expression reads (histograms by their `_bucket` series).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("sluice_"))
        .map(str::to_owned)
        .collect()
}

/// The sample names of a Prometheus text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().expect("a sample line has a name").to_owned())
        .collect()
}

/// A free port on loopback (bound, read and released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

/// One stage that calls a priced, rate-limited, cached model that fails 30% of the time, with a
/// one-rung retry ladder: its records finish, fail, retry and dead-letter, so every family of the
/// dashboard has series. Statistics every 500 ms, for the lag gauge.
fn topology(cache: &Path) -> impl Fn(&str) -> String {
    let cache = cache.display().to_string();
    move |pipeline| {
        format!(
            r#"
pipeline: {pipeline}
kafka:
  partitions: 2
  consumer:
    statistics.interval.ms: "500"
    auto.commit.interval.ms: "200"
  producer:
    linger.ms: "2"
providers:
  sim:
    kind: simulated
    latency: 5ms
    jitter: 2ms
    failure_rate: 0.3
    limits:
      "*": {{ requests_per_second: 5000, burst: 500 }}
    breaker: {{ consecutive_failures: 1000, error_rate: 1.0, window: 1000, cool_down: 1s }}
models:
  small: {{ provider: sim, name: sim-small }}
prices:
  set_on: 2026-01-01
  models:
    small: {{ input: 1.0, output: 2.0 }}
cache:
  path: {cache}
inputs:
  {pipeline}.docs: {{ partitions: 2 }}
stages:
  work:
    kind: classify
    input: {pipeline}.docs
    output: {pipeline}.out
    model: small
    classify: {{ labels: [billing, technical, other] }}
    retry: {{ attempts: 1, initial_backoff: 5ms, max_backoff: 20ms, ladder: [1s] }}
    shutdown_grace: 2s
"#
        )
    }
}

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second as job `sluice` and evaluates the alert rules every second;
    /// its storage and log live in `dir`.
    fn start(dir: &Path, target: &str) -> Self {
        let config = dir.join("prometheus.yml");
        let rules = repo(ALERTS);
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        Self { child, url: format!("http://127.0.0.1:{port}"), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)
            .expect("a valid URL");
        reqwest::get(url).await.ok()?.json().await.ok()
    }

    /// The result vector of an instant query; panics on a query Prometheus refuses.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let answer = self.get("/api/v1/query", &[("query", promql)]).await;
        let answer = answer.unwrap_or_else(|| panic!("no answer to {promql}:\n{}", self.log()));
        assert_eq!(answer["status"], "success", "query {promql}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every rule with its health once all have been evaluated; `None` before.
    async fn rules(&self) -> Option<Vec<(String, String, String)>> {
        let answer = self.get("/api/v1/rules", &[]).await?;
        let rules: Vec<(String, String, String)> = answer["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
                (field("name"), field("health"), field("lastError"))
            })
            .collect();
        (!rules.is_empty() && rules.iter().all(|(_, health, _)| health != "unknown"))
            .then_some(rules)
    }
}

/// The value of the first sample of a query result.
fn first_value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_worker_exposing_every_metric_the_rules_and_dashboard_query() {
    let (promtool_path, prometheus_path) = (tool("promtool"), tool("prometheus"));
    assert!(promtool_path.is_file() && prometheus_path.is_file());
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = Scenario::start(60, 2, topology(&dir.path().join("cache"))).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _worker = sc.worker_with(&["--metrics-addr", &metrics_addr]);
    let prometheus = Prometheus::start(dir.path(), &metrics_addr);
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let scrape = || async {
        let response = reqwest::get(&metrics_url).await.ok()?;
        response.text().await.ok()
    };

    // Every metric a rule or a panel reads, on the worker's page once it has done its work.
    let rules = rule_queries();
    let panels = panel_queries();
    let variables = variable_queries();
    let queried: BTreeSet<String> =
        rules.iter().chain(&panels).chain(&variables).flat_map(|e| metric_names(e)).collect();
    assert!(queried.len() >= 18, "the rules and panels read the metrics of issue 12: {queried:?}");
    let missing = |text: &str| -> BTreeSet<String> {
        let exposed = exposed_names(text);
        queried.iter().filter(|name| !exposed.contains(*name)).cloned().collect()
    };
    let all_there = wait_until(Duration::from_secs(120), || async {
        scrape().await.is_some_and(|text| missing(&text).is_empty())
    })
    .await;
    let text = scrape().await.expect("the worker serves /metrics");
    assert!(all_there, "queried but not on the worker's /metrics: {:?}\n{text}", missing(&text));

    // The exposition passes Prometheus's own linter.
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics:\n{out}\n--- /metrics:\n{text}");

    // A real server scraped it: its query API returns the worker's series.
    let processed = wait_until(Duration::from_secs(60), || async {
        let result = prometheus.query(r#"sluice_records_total{stage="work",outcome="ok"}"#).await;
        first_value(&result).is_some_and(|v| v > 0.0)
    })
    .await;
    assert!(processed, "Prometheus has no processed records of stage work:\n{}", prometheus.log());
    let up = prometheus.query(r#"up{job="sluice"}"#).await;
    assert_eq!(first_value(&up), Some(1.0), "the worker is up: {up:?}");
    let lag = prometheus.query(r#"sluice_consumer_lag_records{stage="work"}"#).await;
    assert!(!lag.is_empty(), "lag per partition of stage work: {lag:?}");
    let cost = prometheus.query(r#"sum(sluice_model_cost_micro_usd_total{stage="work"})"#).await;
    assert!(first_value(&cost).is_some_and(|c| c > 0.0), "priced calls cost money: {cost:?}");

    // It evaluates every alert rule without error.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let evaluated = loop {
        match prometheus.rules().await {
            Some(rules) => break rules,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => panic!("the rules were never evaluated:\n{}", prometheus.log()),
        }
    };
    assert_eq!(evaluated.len(), rules.len());
    for (name, health, error) in &evaluated {
        assert_eq!(health, "ok", "rule {name} fails to evaluate: {error}");
    }

    // And it runs every dashboard query; the headline panels show the worker's data.
    for expr in &panels {
        prometheus.query(expr).await;
    }
    for headline in ["sum by (stage, outcome) (rate(sluice_records_total", "sluice_breaker_state"] {
        let expr = panels.iter().find(|e| e.contains(headline)).expect("headline panel");
        let shown = wait_until(Duration::from_secs(30), || async {
            !prometheus.query(expr).await.is_empty()
        })
        .await;
        assert!(shown, "panel query shows nothing: {expr}");
    }
}

#[test]
fn metric_names_are_read_from_promql_and_expositions() {
    let expr = r#"histogram_quantile(0.95, sum by (le) (rate(sluice_a_bucket{stage=~"x"}[1m]))) / on() sluice_b:ratio + up"#;
    assert_eq!(
        metric_names(expr),
        BTreeSet::from(["sluice_a_bucket".into(), "sluice_b:ratio".into()])
    );
    let text = "# HELP sluice_a x\n# TYPE sluice_a counter\nsluice_a{stage=\"w\"} 1\nsluice_b 2\n";
    assert_eq!(exposed_names(text), BTreeSet::from(["sluice_a".into(), "sluice_b".into()]));
}
