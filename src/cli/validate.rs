//! `sluice validate`: compiles topology files and reports every problem of every file.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Topology files to check.
    files: Vec<PathBuf>,
    /// A topology file to check, as every other command names it (repeatable; adds to FILES).
    #[arg(long = "topology", value_name = "FILE")]
    topology: Vec<PathBuf>,
}

/// Compiles each file; prints every problem of every file; exit code 2 if any.
pub fn run(args: Args) -> ExitCode {
    let files: Vec<PathBuf> = args.topology.into_iter().chain(args.files).collect();
    if files.is_empty() {
        eprintln!("usage: sluice validate [--topology] FILE...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in &files {
        match sluice::config::load(file) {
            Ok(t) => outln!(
                "{}: ok ({} stages, {} topics)",
                file.display(),
                t.stages.len(),
                t.topics().len()
            ),
            Err(errors) => {
                failed = true;
                eprint!("{errors}");
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
