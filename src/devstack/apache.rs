//! Apache Kafka for `sluice dev --broker apache`: a single KRaft node on loopback, started and
//! stopped by `scripts/kafka-broker` (the script behind `scripts/with-kafka`, compiled into the
//! binary so an installed `sluice` has it too), with the jars it caches in
//! `~/.cache/sluice-tools`. Every Kafka client works against it — Java ones included, which the
//! embedded broker cannot serve (see docs/RUNBOOK.md, "Which clients work with the embedded
//! broker"). Needs Java 17 or newer, and Maven the first time (to fetch the jars).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The broker script and the Maven file naming the jars, as the script expects to find them.
const SCRIPT: &str = include_str!("../../scripts/kafka-broker");
const POM: &str = include_str!("../../tools/kafka/pom.xml");

#[derive(Debug, thiserror::Error)]
pub enum ApacheError {
    #[error(
        "`sluice dev --broker apache` runs Apache Kafka, which needs Java 17 or newer, and no \
         `java` is on PATH. Install a JRE (Debian/Ubuntu: `apt-get install \
         openjdk-17-jre-headless`; macOS: `brew install openjdk@17`), or run `sluice dev` \
         without --broker on the embedded broker (librdkafka-based clients only)"
    )]
    NoJava,
    #[error("Apache Kafka did not start (its output is above): {0}")]
    Start(String),
    #[error("preparing the broker's files in {path}: {error}")]
    Files { path: PathBuf, error: std::io::Error },
}

/// A running broker; dropping it stops the broker and removes its data.
pub struct ApacheKafka {
    script: PathBuf,
    state: PathBuf,
    bootstrap: String,
}

impl ApacheKafka {
    /// Starts a fresh broker and returns once it serves (blocking: 10–20 s, more the first time,
    /// when Maven fetches the jars). Its progress and any failure go to stderr.
    pub fn start() -> Result<Self, ApacheError> {
        if Command::new("java").arg("-version").stderr(Stdio::null()).status().is_err() {
            return Err(ApacheError::NoJava);
        }
        let script = install_script()?;
        let state = std::env::temp_dir().join(format!(
            "sluice-dev-kafka.{}-{:08x}",
            std::process::id(),
            getrandom::u32().expect("the operating system's random source")
        ));
        let files = |error| ApacheError::Files { path: state.clone(), error };
        std::fs::create_dir_all(&state).map_err(files)?;
        // From here on, dropping the guard stops whatever was started and removes the state.
        let mut broker = Self { script, state, bootstrap: String::new() };
        let out = Command::new("bash")
            .arg(&broker.script)
            .arg("start")
            .arg(&broker.state)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| ApacheError::Start(format!("running bash: {e}")))?;
        if !out.status.success() {
            return Err(ApacheError::Start(format!("scripts/kafka-broker {}", out.status)));
        }
        broker.bootstrap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        let stopped = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            eprintln!("sluice dev: stopping Apache Kafka from {} failed", self.state.display());
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Writes the script and the Maven file where the script looks for each other
/// (`<dir>/scripts/kafka-broker`, `<dir>/tools/kafka/pom.xml`), next to the jars' cache.
fn install_script() -> Result<PathBuf, ApacheError> {
    let tools = std::env::var_os("SLUICE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
        home.join(".cache/sluice-tools")
    });
    let dir = tools.join("sluice-dev");
    let script = dir.join("scripts/kafka-broker");
    write_if_changed(&script, SCRIPT)?;
    write_if_changed(&dir.join("tools/kafka/pom.xml"), POM)?;
    Ok(script)
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), ApacheError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let files = |error| ApacheError::Files { path: path.to_owned(), error };
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).map_err(files)?;
    std::fs::write(path, text).map_err(files)
}
