use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use sluice::avro::{check_registered, register_all};
use sluice::kafka::registry_settings;
use sluice::pipeline::schema_pairs;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Register every topic's schema (idempotent; the registry checks compatibility).
    Register {
        #[arg(long)]
        topology: PathBuf,
    },
    /// Check that the registry holds every topic's schema.
    Check {
        #[arg(long)]
        topology: PathBuf,
    },
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.action {
        Action::Register { topology } => {
            let t = super::load_topology(&topology)?;
            for (subject, id) in register_all(&registry_settings(&t), &schema_pairs(&t)).await? {
                outln!("{subject}\tid {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Check { topology } => {
            let t = super::load_topology(&topology)?;
            match check_registered(&registry_settings(&t), &schema_pairs(&t)).await {
                Ok(()) => {
                    outln!("all {} subjects registered", schema_pairs(&t).len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    errors.iter().for_each(|e| eprintln!("  - {e}"));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
