//! The stage, class, document and letter a dead-letter page or a redrive is about, read from a
//! query or a form (hostile input: checked against the topology, positions parsed as `P:O`).

use std::collections::HashMap;
use std::fmt::Write;

use super::super::app::{App, Refusal};
use super::super::auth::Session;
use super::super::html::{csrf_field, esc};
use crate::avro::DeadLetterClass;
use crate::ops::dlq::At;
use crate::ops::{parse_class, Filter, RedriveOptions};

/// What a page or a redrive is about.
pub struct Selection {
    /// `None` when the query names no stage: the page opens on the one with letters.
    pub stage: Option<String>,
    pub class: Option<DeadLetterClass>,
    pub doc: Option<String>,
    /// One letter: its position in the dead-letter topic.
    pub at: Option<At>,
}

impl Selection {
    pub fn of(app: &App, q: &HashMap<String, String>) -> Result<Self, String> {
        let given = |name: &str| q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let stage = match given("stage") {
            Some(s) if app.topology.stage(s).is_some() => Some(s.to_owned()),
            Some(s) => return Err(format!("no stage '{s}' in this topology")),
            None => None,
        };
        let class = given("class").map(parse_class).transpose()?;
        let doc = given("doc").map(str::to_owned);
        let at = given("at").map(At::parse).transpose()?;
        Ok(Self { stage, class, doc, at })
    }

    /// The stage named, or the topology's first.
    pub fn stage_or_first(&self, app: &App) -> String {
        self.stage.clone().unwrap_or_else(|| {
            app.topology.stages.first().map(|s| s.name.clone()).unwrap_or_default()
        })
    }

    /// The selection as hidden form fields, with the CSRF token.
    pub fn hidden(&self, app: &App, session: &Session) -> String {
        format!(
            r#"{}<input type="hidden" name="stage" value="{}"><input type="hidden" name="class" value="{}"><input type="hidden" name="doc" value="{}"><input type="hidden" name="at" value="{}">"#,
            csrf_field(session),
            esc(&self.stage_or_first(app)),
            self.class.map_or("", |c| c.symbol()),
            esc(self.doc.as_deref().unwrap_or_default()),
            self.at.map_or(String::new(), |a| a.to_string())
        )
    }

    pub fn options(&self, execute: bool) -> RedriveOptions {
        let filter = Filter {
            error_class: self.class,
            ids: self.doc.iter().cloned().collect(),
            at: self.at.map(At::pair).into_iter().collect(),
            ..Filter::default()
        };
        RedriveOptions { filter, execute, ..RedriveOptions::default() }
    }

    /// Whether the selection is the stage's every letter.
    pub fn whole_stage(&self) -> bool {
        self.class.is_none() && self.doc.is_none() && self.at.is_none()
    }

    pub fn describe(&self, app: &App) -> String {
        let mut out = format!("stage {}", self.stage_or_first(app));
        if let Some(c) = self.class {
            let _ = write!(out, ", class {}", c.symbol());
        }
        if let Some(d) = &self.doc {
            let _ = write!(out, ", document {d}");
        }
        if let Some(at) = self.at {
            let _ = write!(out, ", the letter at {at}");
        }
        out
    }
}

/// Dead letters hold records of every tenant: only reviewers of every tenant see or redrive them.
pub fn every_tenant(session: Session) -> Result<Session, Refusal> {
    super::super::app::every_tenant(
        session,
        "dead letters hold every tenant's records: only reviewers of every tenant see them",
    )
}

/// Classes whose letters failed on what they hold: redriven unchanged, they fail again.
pub fn fails_again(class: DeadLetterClass) -> bool {
    matches!(class, DeadLetterClass::Permanent | DeadLetterClass::Decode)
}
