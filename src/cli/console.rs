//! `sluice console`: the web console for reviewers and on-call engineers (see
//! [`sluice::console`]). Listens on loopback unless told otherwise; elsewhere it needs reviewers'
//! tokens (an access file) or a trusted proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice::console::access::{Access, Proxy};
use sluice::console::{self, ConsoleOptions, Limits};
use sluice::kafka::ready::{self, Missing};
use sluice::shutdown::Shutdown;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    /// Where to listen. Anything but a loopback address needs an access file or a trusted proxy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The reviewers: one a line, `<name> <token or -> [tenant,tenant,...]`; each token at
    /// least 24 characters (see `sluice::console::access`).
    #[arg(long, alias = "token-file")]
    access_file: Option<PathBuf>,
    /// The address of a proxy that authenticates reviewers and names them in a header; that
    /// header is trusted on requests from this address only.
    #[arg(long)]
    trusted_proxy: Option<std::net::IpAddr>,
    /// The header the trusted proxy names the reviewer in.
    #[arg(long, default_value = console::access::DEFAULT_USER_HEADER)]
    proxy_user_header: String,
    /// The origin reviewers open the console at (`https://review.example.com`), when a proxy in
    /// front of it rewrites the Host header (nginx's default): forms from it pass the Origin
    /// check, and the session cookie is `Secure` when it is https.
    #[arg(long, env = "SLUICE_CONSOLE_PUBLIC_ORIGIN", value_parser = console::access::parse_origin)]
    public_origin: Option<String>,
    /// Needs-human records held in memory per review stage; more wait in Kafka.
    #[arg(long, default_value_t = Limits::default().queue_items)]
    max_queue_items: usize,
    /// Dead letters read for one view of the dead-letter page (over all partitions).
    #[arg(long, default_value_t = Limits::default().dlq_letters)]
    max_dlq_letters: usize,
    /// Sessions at once; a login past it ends the oldest.
    #[arg(long, default_value_t = Limits::default().sessions)]
    max_sessions: usize,
    /// Failed logins from one address in a minute before it is refused for the minute.
    #[arg(long, default_value_t = Limits::default().login_failures_per_minute)]
    max_login_failures: u32,
    /// How long a reviewer holds a claimed item before others may take it.
    #[arg(long, default_value = "10m", value_parser = sluice::time::parse_duration)]
    claim_ttl: Duration,
    /// A decision a stopped console left without its record is finished by this one after
    /// this long (more than a decision's produce timeout, 30 s, and read-back wait, 10 s).
    #[arg(long, default_value = "60s", value_parser = sluice::time::parse_duration)]
    finish_after: Duration,
    /// A stage process's Prometheus endpoint (`http://host:9464/metrics`), for records in flight
    /// and breaker states on the pipeline page; repeatable.
    #[arg(long = "metrics")]
    metrics: Vec<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let mut access = match &args.access_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the access file {}", path.display()))?;
            Access::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Access::default(),
    };
    access.proxy = args
        .trusted_proxy
        .map(|addr| Proxy { addr, header: args.proxy_user_header.to_ascii_lowercase() });
    access.public_origin = args.public_origin;
    let opts = ConsoleOptions {
        addr: args.addr,
        access,
        claim_ttl: args.claim_ttl,
        finish_after: args.finish_after,
        metrics: args.metrics,
        limits: Limits {
            queue_items: args.max_queue_items,
            dlq_letters: args.max_dlq_letters,
            sessions: args.max_sessions,
            login_failures_per_minute: args.max_login_failures,
        },
    };
    // A broker still coming up is waited for (missing topics are the pages' to show) — unless
    // the console will refuse its address anyway, which it says before contacting anything.
    if opts.addr.ip().is_loopback() || !opts.access.is_open() {
        let topics = t.topics().into_iter().map(|t| t.name).collect();
        ready::wait_ready(&t.kafka, topics, Missing::Skip).await?;
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let console = console::start_until(&t, opts, shutdown).await?;
    eprintln!(
        "sluice console: http://{} ({} review queue(s)); Ctrl-C to stop",
        console.addr,
        console.app.queues.len()
    );
    // Serves until a signal; then the server and every loop end, each queue commits what is
    // done and leaves its presence.
    console.stopped().await;
    Ok(ExitCode::SUCCESS)
}
