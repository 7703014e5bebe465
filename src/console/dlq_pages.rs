//! Dead letters: browse a stage's dead-letter topic by error class (newest first, with the
//! decoded original, the error history and the attempts), and redrive one record or the
//! filtered set through [`crate::ops::redrive`] — the code and loop guard of
//! `sluice dlq redrive` — always previewing the dry run first.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::app::{App, FormData, Refusal, Shared};
use super::auth::Session;
use super::html::{csrf_field, esc, options, time, Nav};
use crate::avro::{Codec, DeadLetterClass};
use crate::kafka::registry_settings;
use crate::ops::dlq_read::{document_id, original_json, read_newest, redrive_count};
use crate::ops::{parse_class, redrive, Filter, RedriveOptions, RedriveReport};

const CLASSES: [DeadLetterClass; 3] = DeadLetterClass::ALL;

/// The stage, class and document a page or a redrive is about.
struct Selection {
    stage: String,
    class: Option<DeadLetterClass>,
    doc: Option<String>,
    /// One letter: its partition and offset in the dead-letter topic.
    at: Option<(i32, i64)>,
}

impl Selection {
    fn of(app: &App, q: &HashMap<String, String>) -> Result<Self, String> {
        let stage = match q.get("stage").filter(|s| !s.is_empty()) {
            Some(s) if app.topology.stage(s).is_some() => s.clone(),
            Some(s) => return Err(format!("no stage '{s}' in this topology")),
            None => app.topology.stages.first().map(|s| s.name.clone()).unwrap_or_default(),
        };
        let class = q.get("class").filter(|c| !c.is_empty()).map(|c| parse_class(c)).transpose()?;
        let doc = q.get("doc").filter(|d| !d.is_empty()).cloned();
        let at = match q.get("at").filter(|a| !a.is_empty()) {
            Some(a) => {
                let bad = || format!("'{a}' is not a position like 0:42");
                let (p, o) = a.split_once(':').ok_or_else(bad)?;
                Some((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?))
            }
            None => None,
        };
        Ok(Self { stage, class, doc, at })
    }

    fn hidden(&self, session: &Session) -> String {
        format!(
            r#"{}<input type="hidden" name="stage" value="{}"><input type="hidden" name="class" value="{}"><input type="hidden" name="doc" value="{}"><input type="hidden" name="at" value="{}">"#,
            csrf_field(session),
            esc(&self.stage),
            self.class.map_or("", |c| c.symbol()),
            esc(self.doc.as_deref().unwrap_or_default()),
            self.at.map_or(String::new(), |(p, o)| format!("{p}:{o}"))
        )
    }

    fn options(&self, execute: bool) -> RedriveOptions {
        let filter = Filter {
            error_class: self.class,
            ids: self.doc.iter().cloned().collect(),
            at: self.at.into_iter().collect(),
            ..Filter::default()
        };
        RedriveOptions { filter, execute, ..RedriveOptions::default() }
    }

    fn describe(&self) -> String {
        let mut out = format!("stage {}", self.stage);
        if let Some(c) = self.class {
            let _ = write!(out, ", class {}", c.symbol());
        }
        if let Some(d) = &self.doc {
            let _ = write!(out, ", document {d}");
        }
        if let Some((p, o)) = self.at {
            let _ = write!(out, ", the letter at {p}:{o}");
        }
        out
    }
}

/// Dead letters hold records of every tenant: only reviewers of every tenant see or redrive them.
fn every_tenant(session: Session) -> Result<Session, Refusal> {
    super::app::every_tenant(
        session,
        "dead letters hold every tenant's records: only reviewers of every tenant see them",
    )
}

pub async fn list(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let session = match app.viewer(&headers).and_then(every_tenant) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let body = match Selection::of(&app, &q) {
        Ok(sel) => letters(&app, &session, &sel).await.unwrap_or_else(|e| {
            format!(r#"<p class="flash error">Reading dead letters: {}</p>"#, esc(&e))
        }),
        Err(e) => format!(r#"<p class="flash error">{}</p>"#, esc(&e)),
    };
    app.render("Dead letters", Nav::DeadLetters, &session, &body).into_response()
}

async fn letters(app: &App, session: &Session, sel: &Selection) -> Result<String, String> {
    let t = &app.topology;
    let spec = t.stage(&sel.stage).ok_or("no such stage")?;
    let codec = Codec::connect(&registry_settings(t), &[]).await.map_err(|e| e.to_string())?;
    // The newest `dlq_letters` over all partitions (one each at least): what one view holds.
    let cap = app.limits.dlq_letters.max(1);
    let (kafka, topic) = (t.kafka.clone(), spec.dead_letter_topic.clone());
    let partitions =
        tokio::task::spawn_blocking(move || crate::ops::groups::watermarks(&kafka, &topic))
            .await
            .expect("the metadata thread does not panic")
            .map_err(|e| e.to_string())?
            .len()
            .max(1);
    let per_partition = (cap / partitions).max(1) as i64;
    let (total, mut records) = read_newest(t, &codec, &spec.dead_letter_topic, per_partition)
        .await
        .map_err(|e| e.to_string())?;
    // Newest first over every partition: by failure time, then position.
    records.sort_by_key(|r| {
        let failed = r.letter.as_ref().map_or(0, |l| l.failed_at_ms);
        (std::cmp::Reverse(failed), std::cmp::Reverse(r.offset), r.partition)
    });
    let stages = t.stages.iter().map(|s| s.name.clone());
    let classes = CLASSES.iter().map(|c| c.symbol().to_owned());
    let mut out = format!(
        r#"<form id="dlq-filter" method="get" action="/dead-letters" class="row">
<label>Stage <select name="stage">{}</select></label><label>Error class <select name="class">{}</select></label>
<button type="submit">Show</button></form>"#,
        options("first stage", stages, Some(&sel.stage)),
        options("all classes", classes, sel.class.map(|c| c.symbol())),
    );
    let selected: Vec<_> = records
        .iter()
        .filter(|r| {
            r.letter
                .as_ref()
                .map_or(sel.class.is_none(), |l| sel.class.is_none_or(|c| c == l.error_class))
        })
        .collect();
    let _ = write!(
        out,
        r#"<p>{} record(s) on <code>{}</code>; the newest {} shown{}.</p>
<form method="post" action="/dead-letters/preview" class="row">{}<button type="submit" class="redrive-all">Redrive every letter of this selection… (preview)</button></form>"#,
        total,
        esc(&spec.dead_letter_topic),
        selected.len(),
        sel.class.map_or(String::new(), |c| format!(" of class {}", c.symbol())),
        Selection { stage: sel.stage.clone(), class: sel.class, doc: None, at: None }
            .hidden(session),
    );
    // Every letter read is shown: the read is the bound, not the rendering.
    for r in selected {
        let Ok(l) = &r.letter else {
            let _ = write!(
                out,
                r#"<article class="letter card" data-doc="" data-offset="{}"><p class="flash error">{}/{}: not a dead letter: {}</p></article>"#,
                r.offset,
                r.partition,
                r.offset,
                esc(r.letter.as_ref().err().map_or("", String::as_str))
            );
            continue;
        };
        let doc = document_id(&codec, l).await.map_err(|e| e.to_string())?.unwrap_or_default();
        let original = original_json(&codec, l.original_value.as_deref()).await;
        let pretty = serde_json::to_string_pretty(&original).unwrap_or_default();
        let redriven = redrive_count(&l.original_headers).map_or_else(|e| e, |n| n.to_string());
        let _ = write!(
            out,
            r#"<article class="letter card" data-doc="{doc}" data-offset="{offset}">
<header><b>{class}</b> <span class="muted">{p}/{offset} · failed {failed} · from {ot} {op}/{oo} · redriven {redriven}×</span></header>
<p>{message}</p><p class="muted">document {doc_text} · model {model} · prompt {prompt}</p>
<details><summary>Attempts ({n}) and the original record</summary><table><thead><tr><th>#</th><th>At</th><th>Class</th><th>Message</th></tr></thead><tbody>"#,
            doc = esc(&doc),
            offset = r.offset,
            p = r.partition,
            class = l.error_class.symbol(),
            failed = time(Some(l.failed_at_ms)),
            ot = esc(&l.original_topic),
            op = l.original_partition,
            oo = l.original_offset,
            message = esc(&l.error_message),
            doc_text = esc(if doc.is_empty() { "(undecodable)" } else { &doc }),
            model = esc(l.model.as_deref().unwrap_or("—")),
            prompt = esc(l.prompt_version.as_deref().unwrap_or("—")),
            n = l.attempts.len(),
        );
        for a in &l.attempts {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.attempt,
                time(Some(a.at_ms)),
                esc(&a.error_class),
                esc(&a.message)
            );
        }
        let _ = write!(out, "</tbody></table><pre>{}</pre></details>", esc(&pretty));
        // The letter by its position: the document may have failed more than once.
        let one = Selection {
            stage: sel.stage.clone(),
            class: Some(l.error_class),
            doc: (!doc.is_empty()).then_some(doc),
            at: Some((r.partition, r.offset)),
        };
        let _ = write!(
            out,
            r#"<form method="post" action="/dead-letters/preview">{}<button type="submit" class="redrive-preview">Redrive this letter… (preview)</button></form>"#,
            one.hidden(session)
        );
        out.push_str("</article>");
    }
    Ok(out)
}

fn plan_table(r: &RedriveReport) -> String {
    let mut out = String::from(
        r#"<table id="redrive-plan"><thead><tr><th>Back to topic</th><th>Error class</th><th>Records</th></tr></thead><tbody>"#,
    );
    for row in &r.plan {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row.original_topic),
            esc(&row.error_class),
            row.records
        );
    }
    let _ = write!(
        out,
        r#"</tbody></table><p class="muted">Left in place by the loop guard: {} · cannot be redriven: {} · not selected: {} · finished by earlier runs: {} · position kept in group <code>{}</code>.</p>"#,
        r.loop_guarded_count,
        r.unredrivable_count,
        r.passed_over,
        r.done_before,
        esc(&r.group)
    );
    out
}

pub async fn preview(State(app): State<Shared>, headers: HeaderMap, form: FormData) -> Response {
    run(app, headers, form.0, false).await
}

pub async fn execute(State(app): State<Shared>, headers: HeaderMap, form: FormData) -> Response {
    run(app, headers, form.0, true).await
}

async fn run(
    app: Shared,
    headers: HeaderMap,
    form: HashMap<String, String>,
    execute: bool,
) -> Response {
    let session = match app.actor(&headers, &form).and_then(every_tenant) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let sel = match Selection::of(&app, &form) {
        Ok(s) => s,
        Err(e) => {
            let body = format!(r#"<p class="flash error">{}</p>"#, esc(&e));
            return app.render("Redrive", Nav::DeadLetters, &session, &body).into_response();
        }
    };
    let report = if execute {
        if !app.redrives.lock().expect("never poisoned").insert(sel.stage.clone()) {
            let body = format!(
                r#"<p class="flash error">A redrive of stage {} is running in this console: wait for it, then preview again.</p>"#,
                esc(&sel.stage)
            );
            return app.render("Redrive", Nav::DeadLetters, &session, &body).into_response();
        }
        // On a task of its own: a browser that goes away cannot cut a redrive short between
        // producing records and committing its position.
        let (runner, stage, opts) = (app.clone(), sel.stage.clone(), sel.options(true));
        let run = tokio::spawn(async move {
            let report = redrive(&runner.topology, &stage, &opts, |_| {}).await;
            runner.redrives.lock().expect("never poisoned").remove(&stage);
            report
        });
        run.await.expect("the redrive task does not panic")
    } else {
        redrive(&app.topology, &sel.stage, &sel.options(false), |_| {}).await
    };
    let mut body = format!("<p>Dead letters of {}.</p>", esc(&sel.describe()));
    match report {
        Err(e) => {
            let _ = write!(body, r#"<p class="flash error">{}</p>"#, esc(&e.to_string()));
        }
        Ok(r) if !execute => {
            body.push_str(&plan_table(&r));
            if r.planned() == 0 {
                body.push_str(r#"<p class="empty">Nothing to redrive with this selection.</p>"#);
            } else {
                let _ = write!(
                    body,
                    r#"<p>This is a dry run: nothing was produced. Redriving republishes the original records to their topics, where the stage processes them again. It selects again when it runs: letters of this selection written since this preview go too.</p>
<form method="post" action="/dead-letters/redrive">{}<button type="submit" class="redrive-execute danger">Redrive {} record(s)</button></form>"#,
                    sel.hidden(&session),
                    r.planned()
                );
            }
        }
        Ok(r) => {
            super::events::Redriven {
                reviewer: &session.reviewer,
                selection: &sel.describe(),
                redriven: r.redriven,
            }
            .emit();
            let _ = write!(
                body,
                r#"<p id="redrive-result" class="flash">redriven {} of {} planned{}</p>"#,
                r.redriven,
                r.planned(),
                r.stopped.as_deref().map_or(String::new(), |s| format!("; stopped: {}", esc(s)))
            );
            body.push_str(&plan_table(&r));
        }
    }
    let _ = write!(
        body,
        r#"<p><a href="/dead-letters?stage={}">Back to the dead letters</a></p>"#,
        super::html::url(&sel.stage)
    );
    let title = if execute { "Redrive" } else { "Redrive preview" };
    app.render(title, Nav::DeadLetters, &session, &body).into_response()
}
