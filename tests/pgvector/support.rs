//! What the pgvector tests share: the server's URL, unique table names, a second PGlite server
//! (one without pgvector) started and stopped through scripts/pglite, a TCP relay that can cut
//! its connections, and a synthetic knowledge base.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The PGlite server of scripts/with-pglite.
pub fn url() -> String {
    std::env::var("SLUICE_PG_URL")
        .expect("SLUICE_PG_URL is not set: run through scripts/with-pglite (see the file's doc)")
}

/// A table name no other test (or earlier run against the same server) uses.
pub fn table(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("kb_{test}_{}_{nanos}", std::process::id())
}

/// A raw connection for what the store must not do itself (creating odd tables, checking).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A second PGlite server, stopped on drop.
pub struct Server {
    state: tempfile::TempDir,
    pub url: String,
}

impl Server {
    /// PostgreSQL without the pgvector extension.
    pub fn bare() -> Self {
        let script =
            std::env::var("SLUICE_PGLITE_SCRIPT").expect("run through scripts/with-pglite");
        let state = tempfile::tempdir().expect("state dir");
        let out = Command::new(&script)
            .args(["start", state.path().to_str().expect("utf8"), "--bare"])
            .output()
            .expect("run scripts/pglite");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
        Self { state, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(script) = std::env::var("SLUICE_PGLITE_SCRIPT") {
            let _ = Command::new(script).arg("stop").arg(self.state.path()).status();
        }
    }
}

/// Relays loopback connections to `upstream`; [`Relay::cut`] closes every open one and
/// refuses new ones until [`Relay::restore`].
pub struct Relay {
    pub port: u16,
    upstream: String,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Self {
        let mut relay =
            Self { port: 0, upstream: upstream.to_owned(), links: Arc::default(), accept: None };
        relay.listen(0).await;
        relay
    }

    async fn listen(&mut self, port: u16) {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind relay");
        self.port = listener.local_addr().expect("addr").port();
        let (upstream, links) = (self.upstream.clone(), self.links.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links.lock().expect("links").push(link);
            }
        }));
    }

    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.links.lock().expect("links").drain(..).for_each(|l| l.abort());
    }

    pub async fn restore(&mut self) {
        // The aborted accept loop drops its listener on its next poll: wait for the port.
        for _ in 0..100 {
            if TcpListener::bind(("127.0.0.1", self.port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.listen(self.port).await;
    }
}

/// `host:port` of a postgres URL of scripts/pglite (`postgresql://u:p@host:port/db?...`).
pub fn host_port(url: &str) -> String {
    let rest = url.split('@').nth(1).expect("url with credentials");
    rest.split('/').next().expect("host:port").to_owned()
}

const WORDS: &[&str] = &[
    "refund",
    "invoice",
    "password",
    "account",
    "billing",
    "upload",
    "timeout",
    "export",
    "archive",
    "privacy",
    "deletion",
    "outage",
    "status",
    "single",
    "sign",
    "enterprise",
    "plan",
    "authentication",
    "recovery",
    "codes",
    "request",
    "limit",
    "minute",
    "header",
    "retry",
    "payment",
    "method",
    "business",
    "days",
    "confirm",
    "download",
    "email",
    "settings",
    "security",
    "app",
    "metadata",
    "provider",
    "administrator",
    "contract",
    "legal",
    "team",
    "report",
    "incident",
    "page",
    "update",
    "large",
    "file",
    "split",
    "resumable",
    "link",
    "monthly",
    "charge",
    "duplicate",
    "original",
    "customer",
    "support",
];

/// Deterministic pseudo-random word bags: `n` of them, 6 to 14 words each.
pub fn bags(seed: u64, n: usize) -> Vec<String> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = 6 + next() % 9;
            (0..len).map(|_| WORDS[next() % WORDS.len()]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The example knowledge base plus `extra` synthetic passages, as JSON lines at `path`.
pub fn knowledge_base(path: &Path, extra: usize) -> usize {
    let mut text = std::fs::read_to_string("examples/kb.jsonl").expect("example kb");
    for (i, bag) in bags(7, extra).iter().enumerate() {
        let line = serde_json::json!({ "id": format!("syn-{i:03}"), "text": bag, "source": "syn" });
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(path, &text).expect("write kb");
    text.lines().filter(|l| !l.trim().is_empty()).count()
}
