//! `sluice mock-provider`: the OpenAI/Anthropic-compatible mock server, for load tests.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use sluice::config::Price;
use sluice::mock_provider::{serve, LatencyDist, MockConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Base latency of every call.
    #[arg(long, default_value = "50ms", value_parser = sluice::time::parse_duration)]
    latency: Duration,
    /// Spread of the latency: the uniform range or the exponential mean.
    #[arg(long, default_value = "0ms", value_parser = sluice::time::parse_duration)]
    jitter: Duration,
    #[arg(long, value_enum, default_value_t = LatencyDist::Uniform)]
    latency_dist: LatencyDist,
    /// Fraction of calls answered 503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of calls answered 429 with --retry-after.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    #[arg(long, default_value = "1s", value_parser = sluice::time::parse_duration)]
    retry_after: Duration,
    /// Requests per minute accepted; beyond it calls get 429 with the time until a slot frees.
    #[arg(long)]
    rpm: Option<u32>,
    /// Dimension of the embeddings returned.
    #[arg(long, default_value_t = 64)]
    embedding_dim: usize,
    /// Require this environment variable's value as the API key (401 otherwise).
    #[arg(long)]
    api_key_env: Option<String>,
    /// Bill MODEL at INPUT and OUTPUT USD per million tokens in the ledger (repeatable),
    /// e.g. `--price gpt-4o-mini=0.15,0.60`.
    #[arg(long = "price", value_parser = parse_price)]
    prices: Vec<(String, Price)>,
}

fn parse_price(text: &str) -> Result<(String, Price), String> {
    let usage = || format!("'{text}': write MODEL=INPUT,OUTPUT (USD per million tokens)");
    let (model, rest) = text.split_once('=').ok_or_else(usage)?;
    let (input, output) = rest.split_once(',').ok_or_else(usage)?;
    let micro = |v: &str| -> Result<u64, String> {
        let usd: f64 = v.trim().parse().map_err(|_| usage())?;
        (usd >= 0.0 && usd.is_finite()).then(|| (usd * 1e6).round() as u64).ok_or_else(usage)
    };
    let (input, output) = (micro(input)?, micro(output)?);
    Ok((model.to_owned(), Price { input, output, cached_input: input, per_request: 0 }))
}

pub async fn run(a: Args) -> Result<ExitCode> {
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| anyhow::anyhow!("{var} is not set"))?),
        None => None,
    };
    let config = MockConfig {
        latency: a.latency,
        jitter: a.jitter,
        dist: a.latency_dist,
        error_rate: a.error_rate,
        rate_limit_rate: a.rate_limit_rate,
        retry_after: a.retry_after,
        rpm: a.rpm,
        embedding_dim: a.embedding_dim,
        api_key,
        prices: a.prices.into_iter().collect(),
    };
    let server = serve((a.host, a.port).into(), config).await?;
    outln!("mock provider listening on http://{}", server.addr);
    outln!("  OpenAI:    base_url: {}", server.openai_url());
    outln!("  Anthropic: base_url: {}", server.base_url());
    outln!("  ledger:    GET {}/mock/ledger", server.base_url());
    tokio::signal::ctrl_c().await?;
    let ledger = server.ledger();
    for (model, t) in &ledger.models {
        outln!(
            "{model}: {} calls, {} errors, {} rate-limited, {} input and {} output tokens, {} USD",
            t.calls,
            t.errors,
            t.rate_limited,
            t.input_tokens,
            t.output_tokens,
            sluice::metering::report::usd(t.cost_micro_usd)
        );
    }
    Ok(ExitCode::SUCCESS)
}
