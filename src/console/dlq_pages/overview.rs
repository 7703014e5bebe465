//! The overview atop the dead-letter page: per stage, its letters and how many are outstanding
//! (counted exactly, without reading them), and per error class among the newest letters read,
//! stages with the newest failure first; and which stage the page opens on when none is named
//! (the one whose outstanding letters failed last).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::super::app::App;
use super::super::html::{esc, time, url};
use crate::avro::Codec;
use crate::config::StageSpec;
use crate::ops::dlq::outstanding::{count, finished, Finished};
use crate::ops::dlq::read::{read_newest, DlqRecord};
use crate::ops::dlq::{At, Letters};

/// One stage's dead letters as the page read them.
pub struct StageLetters {
    pub stage: String,
    pub topic: String,
    /// Every letter on the topic, and the outstanding ones.
    pub letters: Letters,
    /// The redrive group's finished sets per partition.
    pub parts: BTreeMap<i32, Finished>,
    /// The newest records read (at most the page's limit over all partitions).
    pub records: Vec<DlqRecord>,
    /// Why the stage's letters could not be read, if they could not.
    pub error: Option<String>,
}

impl StageLetters {
    pub fn is_done(&self, at: At) -> bool {
        self.parts.get(&at.partition).is_some_and(|p| p.is_done(at.offset))
    }

    /// The newest failure among the letters read (outstanding ones only, when `outstanding`).
    fn newest(&self, outstanding: bool) -> Option<i64> {
        self.records
            .iter()
            .filter(|r| !outstanding || !self.is_done(At::new(r.partition, r.offset)))
            .filter_map(|r| r.letter.as_ref().ok().map(|l| l.failed_at_ms))
            .max()
    }
}

/// Reads every stage's dead letters: counts for all, the newest `limit` letters of those with any.
pub async fn read(app: &App, codec: &Codec) -> Vec<StageLetters> {
    let mut out = Vec::with_capacity(app.topology.stages.len());
    for spec in &app.topology.stages {
        out.push(match read_stage(app, codec, spec).await {
            Ok(s) => s,
            Err(e) => StageLetters {
                stage: spec.name.clone(),
                topic: spec.dead_letter_topic.clone(),
                letters: Letters::default(),
                parts: BTreeMap::new(),
                records: Vec::new(),
                error: Some(e),
            },
        });
    }
    out
}

async fn read_stage(app: &App, codec: &Codec, spec: &StageSpec) -> Result<StageLetters, String> {
    let (kafka, s) = (app.topology.kafka.clone(), spec.clone());
    let parts = tokio::task::spawn_blocking(move || finished(&kafka, &s))
        .await
        .expect("the offsets thread does not panic")
        .map_err(|e| e.to_string())?;
    let letters = count(&parts);
    let mut records = Vec::new();
    if letters.all > 0 {
        // The newest `dlq_letters` over all partitions (one each at least): what one view holds.
        let per_partition = (app.limits.dlq_letters.max(1) / parts.len().max(1)).max(1) as i64;
        let t = &app.topology;
        (_, records) = read_newest(t, codec, &spec.dead_letter_topic, per_partition)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Newest first over every partition: by failure time, then position.
    records.sort_by_key(|r| {
        let failed = r.letter.as_ref().map_or(0, |l| l.failed_at_ms);
        (std::cmp::Reverse(failed), std::cmp::Reverse(r.offset), r.partition)
    });
    Ok(StageLetters {
        stage: spec.name.clone(),
        topic: spec.dead_letter_topic.clone(),
        letters,
        parts,
        records,
        error: None,
    })
}

/// The stage the page opens on: the one whose outstanding letters failed last, else the one
/// whose letters failed last, else the first.
pub fn opening(stages: &[StageLetters]) -> Option<&str> {
    let by = |outstanding: bool| {
        stages
            .iter()
            .filter_map(|s| s.newest(outstanding).map(|n| (n, s)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, s)| s.stage.as_str())
    };
    by(true).or_else(|| by(false)).or_else(|| stages.first().map(|s| s.stage.as_str()))
}

/// Per class among the letters read: (letters, outstanding, newest failure).
fn by_class(s: &StageLetters) -> Vec<(&'static str, usize, usize, i64)> {
    let mut classes: BTreeMap<&'static str, (usize, usize, i64)> = BTreeMap::new();
    for r in &s.records {
        let (class, failed) = match &r.letter {
            Ok(l) => (l.error_class.symbol(), l.failed_at_ms),
            Err(_) => ("not a dead letter", 0),
        };
        let e = classes.entry(class).or_insert((0, 0, failed));
        e.0 += 1;
        if !s.is_done(At::new(r.partition, r.offset)) {
            e.1 += 1;
        }
        e.2 = e.2.max(failed);
    }
    let mut rows: Vec<_> = classes.into_iter().map(|(c, (n, o, at))| (c, n, o, at)).collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.3));
    rows
}

/// The overview table, the current stage marked.
pub fn render(stages: &[StageLetters], current: &str) -> String {
    let mut order: Vec<&StageLetters> = stages.iter().collect();
    order.sort_by_key(|s| (s.letters.all == 0, std::cmp::Reverse(s.newest(false))));
    let mut out = String::from(
        r#"<section id="dlq-overview" class="card"><h2>Overview</h2><table><thead><tr><th>Stage</th><th>Error class</th><th>Outstanding</th><th>Letters</th><th>Newest failure</th></tr></thead><tbody>"#,
    );
    for s in order {
        let link = |class: &str| {
            let class = if class.contains(' ') { String::new() } else { url(class) };
            format!("/dead-letters?stage={}&amp;class={class}", url(&s.stage))
        };
        let mark = if s.stage == current { r#" class="current""# } else { "" };
        let _ = write!(
            out,
            r#"<tr data-stage="{stage}"{mark}><th scope="row"><a href="{href}">{stage}</a></th><td class="muted">all classes</td><td class="outstanding">{o}</td><td>{n}</td><td>{newest}</td></tr>"#,
            stage = esc(&s.stage),
            href = link(""),
            o = s.letters.outstanding,
            n = s.letters.all,
            newest = time(s.newest(false)),
        );
        if let Some(e) = &s.error {
            let _ = write!(
                out,
                r#"<tr><td></td><td colspan="4" class="flash error">{}</td></tr>"#,
                esc(e)
            );
        }
        let read = s.records.len() as i64;
        for (class, n, o, at) in by_class(s) {
            let of = if read < s.letters.all { " (newest read)" } else { "" };
            let _ = write!(
                out,
                r#"<tr data-stage="{stage}" data-class="{class}" class="class-row"><td></td><td><a href="{href}">{class}</a></td><td>{o}</td><td>{n}<span class="muted">{of}</span></td><td>{newest}</td></tr>"#,
                stage = esc(&s.stage),
                class = esc(class),
                href = link(class),
                newest = time((at > 0).then_some(at)),
            );
        }
    }
    out.push_str("</tbody></table></section>");
    out
}
