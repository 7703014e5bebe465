//! The console's observable occurrences as typed events: each `emit()` writes the one log line
//! (and, where there is one, updates the metric with it). The rest of `console/` does not call
//! `tracing`'s macros (the test below reads every file of the folder), so log lines keep one
//! shape and never carry a token, a session id or a record's content.
//!
//! Not clippy's `disallowed-macros`: clippy 0.1.95 consults that lint's level at the crate root
//! only, so a crate-wide allow (the rest of the crate logs through `crate::telemetry`) cannot be
//! narrowed to a deny for this folder.

/// A reviewer logged in.
pub struct LoggedIn<'a> {
    pub reviewer: &'a str,
    /// `token`, `proxy` or `name` (loopback without an access file).
    pub via: &'static str,
}

impl LoggedIn<'_> {
    pub fn emit(self) {
        tracing::info!(reviewer = self.reviewer, via = self.via, "console login");
    }
}

/// A login was refused; `reason` is the refusal shown to the user (never the token tried).
pub struct LoginRefused<'a> {
    pub reason: &'a str,
    pub peer: std::net::IpAddr,
}

impl LoginRefused<'_> {
    pub fn emit(self) {
        tracing::warn!(reason = self.reason, peer = %self.peer, "console login refused");
    }
}

/// The HTTP server stopped with an error.
pub struct ServeFailed<'a> {
    pub error: &'a str,
}

impl ServeFailed<'_> {
    pub fn emit(self) {
        tracing::error!(error = self.error, "console stopped serving");
    }
}

/// A redrive executed from the console.
pub struct Redriven<'a> {
    pub reviewer: &'a str,
    pub selection: &'a str,
    pub redriven: usize,
}

impl Redriven<'_> {
    pub fn emit(self) {
        tracing::info!(
            reviewer = self.reviewer,
            selection = self.selection,
            redriven = self.redriven,
            "console redrive"
        );
    }
}

/// A review-claims record that does not decode, skipped by every replica alike.
pub struct ClaimSkipped<'a> {
    pub stage: &'a str,
    pub offset: i64,
    pub error: &'a str,
}

impl ClaimSkipped<'_> {
    pub fn emit(self) {
        tracing::warn!(
            stage = self.stage,
            offset = self.offset,
            error = self.error,
            "review claim skipped"
        );
    }
}

/// One of a review queue's background loops failed a round; it tries again.
pub struct QueueTrouble<'a> {
    pub stage: &'a str,
    /// `read`, `commit`, `finish` or `partitions`.
    pub what: &'static str,
    pub error: &'a str,
}

impl QueueTrouble<'_> {
    pub fn emit(self) {
        tracing::warn!(stage = self.stage, what = self.what, error = self.error, "review queue");
    }
}

/// A partition added to the needs-human topic is read from now on.
pub struct PartitionFollowed<'a> {
    pub stage: &'a str,
    pub partition: i32,
}

impl PartitionFollowed<'_> {
    pub fn emit(self) {
        tracing::info!(
            stage = self.stage,
            partition = self.partition,
            "review queue reads a new partition"
        );
    }
}

/// The queue holds as many records as it may: a partition stops being read until decisions
/// make room.
pub struct QueueFull<'a> {
    pub stage: &'a str,
    pub partition: i32,
    pub capacity: usize,
}

impl QueueFull<'_> {
    pub fn emit(self) {
        tracing::info!(
            stage = self.stage,
            partition = self.partition,
            capacity = self.capacity,
            "review queue full: partition parked until decisions make room"
        );
    }
}

/// An operator discarded a needs-human record that cannot be decoded.
pub struct Discarded<'a> {
    pub stage: &'a str,
    /// `partition/offset` of the needs-human record.
    pub item: &'a str,
    pub reviewer: &'a str,
    pub error: &'a str,
}

impl Discarded<'_> {
    pub fn emit(self) {
        tracing::warn!(
            stage = self.stage,
            item = self.item,
            reviewer = self.reviewer,
            error = self.error,
            "undecodable review record discarded"
        );
    }
}

/// The pipeline page's background sample could not read the cluster: logged when sampling
/// starts failing, not on every failed sample (the page shows the error and the last figures).
pub struct SampleFailed<'a> {
    pub error: &'a str,
}

impl SampleFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = self.error, "pipeline sample failed; tried again every 5 s");
    }
}

/// Sampling stopped for good: the broker has no admin API (the embedded broker).
pub struct SamplingStopped<'a> {
    pub bootstrap: &'a str,
}

impl SamplingStopped<'_> {
    pub fn emit(self) {
        tracing::info!(
            bootstrap = self.bootstrap,
            "pipeline page: the embedded broker has no admin API, no samples are taken"
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every file of `src/console/` but this one logs through these events, never directly.
    #[test]
    fn no_other_console_file_calls_tracings_macros() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
        let (mut dirs, mut offenders, mut checked) = (vec![root], Vec::new(), 0);
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("a console folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let is_rust = path.extension().is_some_and(|e| e == "rs");
                if !is_rust || path.file_name().is_some_and(|n| n == "events.rs") {
                    continue;
                }
                checked += 1;
                let text = std::fs::read_to_string(&path).expect("readable");
                let macros = ["trace!", "debug!", "info!", "warn!", "error!", "event!"];
                for (n, line) in text.lines().enumerate() {
                    let direct = macros.iter().any(|m| line.contains(&format!("tracing::{m}")));
                    if direct || line.trim_start().starts_with("use tracing") {
                        offenders.push(format!("{}:{}", path.display(), n + 1));
                    }
                }
            }
        }
        assert!(checked > 10, "the console's files were read");
        assert!(offenders.is_empty(), "log through crate::console::events: {offenders:?}");
    }
}
