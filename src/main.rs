//! The `sluice` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if let Some(filter) = args.command.default_log_filter() {
        if std::env::var_os("RUST_LOG").is_none() {
            // Still single-threaded: nothing else reads the environment yet.
            std::env::set_var("RUST_LOG", filter);
        }
    }
    // Flushes the last spans when main returns, after the runtime (declared later) has stopped.
    let _traces = match sluice::telemetry::init(args.log_json) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
            }))
            .enable_all()
            .build()
            .expect("tokio runtime");
    match runtime.block_on(cli::dispatch(args.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
