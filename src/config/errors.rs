//! Topology errors: every problem found while compiling a file, each located by file, stage and
//! field, so that one run of `sluice validate` lists them all.

use std::fmt;
use std::path::PathBuf;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The topology file.
    pub file: PathBuf,
    /// The stage the problem belongs to, if any.
    pub stage: Option<String>,
    /// Dotted path of the field, relative to the stage when there is one (`concurrency.per_partition`).
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(stage) = &self.stage {
            write!(f, "stage '{stage}': ")?;
        }
        write!(f, "field '{}': {}", self.field, self.message)
    }
}

/// All the problems of one topology file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in topology:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Collects errors while a file is compiled; the location prefix is carried by [`super::section::Section`].
#[derive(Debug)]
pub struct Errors {
    file: PathBuf,
    list: Vec<ConfigError>,
}

impl Errors {
    pub fn new(file: PathBuf) -> Self {
        Self { file, list: Vec::new() }
    }

    pub fn push(
        &mut self,
        stage: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            stage: stage.map(str::to_owned),
            field: field.into(),
            message: message.into(),
        });
    }

    /// The collected errors, for paths that cannot go on.
    pub fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.list)
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.list))
        }
    }
}
