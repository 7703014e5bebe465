use std::path::PathBuf;
use std::process::ExitCode;

/// Compiles each file; prints every problem of every file; exit code 2 if any.
pub fn run(files: &[PathBuf]) -> ExitCode {
    if files.is_empty() {
        eprintln!("usage: sluice validate FILE...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in files {
        match sluice::config::load(file) {
            Ok(t) => println!(
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
