use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use sluice::kafka::{create_planned_topics, existing_topics, require_admin_api};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create every topic of the topology that does not exist yet.
    Create {
        #[arg(long)]
        topology: PathBuf,
    },
    /// List every topic of the topology with its role and whether it exists.
    List {
        #[arg(long)]
        topology: PathBuf,
    },
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.action {
        Action::Create { topology } => {
            let t = super::load_topology(&topology)?;
            require_admin_api(&t.kafka, "`sluice topics create`").await?;
            let wanted = t.topics();
            let created = create_planned_topics(&t.kafka, &wanted).await?;
            outln!("created {} of {} topics", created.len(), wanted.len());
            for name in created {
                outln!("  {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::List { topology } => {
            let t = super::load_topology(&topology)?;
            let existing = tokio::task::spawn_blocking({
                let kafka = t.kafka.clone();
                move || existing_topics(&kafka)
            })
            .await??;
            outln!("{:<40} {:<44} {:>10}  SCHEMA", "TOPIC", "ROLE", "PARTITIONS");
            for p in t.topics() {
                let parts = existing
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map_or("missing".to_owned(), |(_, n)| n.to_string());
                outln!(
                    "{:<40} {:<44} {:>10}  {}",
                    p.name,
                    p.role.describe(),
                    parts,
                    p.schema.map_or("(sluice binary)", |s| s.full_name())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
