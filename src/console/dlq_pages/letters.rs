//! `GET /dead-letters`: the overview, then one stage's letters (newest first, filtered by class)
//! with what became of each, and a redrive of the whole selection when anything in it is
//! outstanding. Empty states say what is going on.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::super::app::{App, Shared};
use super::super::auth::Session;
use super::super::html::{esc, options, Nav};
use super::card::{self, Card};
use super::overview::{self, StageLetters};
use super::selection::{every_tenant, Selection};
use crate::avro::{Codec, DeadLetterClass};
use crate::kafka::registry_settings;
use crate::ops::dlq::read::{document_id, original_json, redrive_count};
use crate::ops::dlq::{fate::fates_with, At};

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
        Ok(sel) => page(&app, &session, sel).await.unwrap_or_else(|e| {
            format!(r#"<p class="flash error">Reading dead letters: {}</p>"#, esc(&e))
        }),
        Err(e) => format!(r#"<p class="flash error">{}</p>"#, esc(&e)),
    };
    app.render("Dead letters", Nav::DeadLetters, &session, &body).into_response()
}

async fn page(app: &App, session: &Session, mut sel: Selection) -> Result<String, String> {
    let t = &app.topology;
    let codec = Codec::connect(&registry_settings(t), &[]).await.map_err(|e| e.to_string())?;
    let stages = overview::read(app, &codec).await;
    if sel.stage.is_none() {
        sel.stage = overview::opening(&stages).map(str::to_owned);
    }
    let current = sel.stage_or_first(app);
    let mut out = overview::render(&stages, &current);
    let Some(s) = stages.iter().find(|s| s.stage == current) else {
        return Ok(out);
    };
    let names = t.stages.iter().map(|s| s.name.clone());
    let classes = DeadLetterClass::ALL.iter().map(|c| c.symbol().to_owned());
    let _ = write!(
        out,
        r#"<form id="dlq-filter" method="get" action="/dead-letters" class="row">
<label>Stage <select name="stage">{}</select></label><label>Error class <select name="class">{}</select></label>
<button type="submit">Show</button></form>"#,
        options("first stage", names, Some(&current)),
        options("all classes", classes, sel.class.map(|c| c.symbol())),
    );
    out.push_str(&stage_letters(app, session, &sel, s, &codec).await?);
    Ok(out)
}

async fn stage_letters(
    app: &App,
    session: &Session,
    sel: &Selection,
    s: &StageLetters,
    codec: &Codec,
) -> Result<String, String> {
    let t = &app.topology;
    let spec = t.stage(&s.stage).ok_or("no such stage")?;
    let stage = esc(&s.stage);
    if let Some(e) = &s.error {
        return Ok(format!(r#"<p class="flash error">{}</p>"#, esc(e)));
    }
    if s.letters.all == 0 {
        return Ok(format!(
            r#"<p class="empty" id="dlq-empty">No dead letters for {stage}: <code>{}</code> is empty.</p>"#,
            esc(&s.topic)
        ));
    }
    let selected: Vec<_> = s
        .records
        .iter()
        .filter(|r| {
            r.letter
                .as_ref()
                .map_or(sel.class.is_none(), |l| sel.class.is_none_or(|c| c == l.error_class))
        })
        .collect();
    let outstanding =
        selected.iter().filter(|r| !s.is_done(At::new(r.partition, r.offset))).count();
    let of_class = sel.class.map_or(String::new(), |c| format!(" of class {}", c.symbol()));
    let mut out = format!(
        r#"<p id="dlq-summary"><b>{}</b> letter(s) on <code>{}</code>, <b class="outstanding">{}</b> outstanding (not redriven or discarded); the newest {} read{}: {} shown, {} of them outstanding.</p>"#,
        s.letters.all,
        esc(&s.topic),
        s.letters.outstanding,
        s.records.len(),
        of_class,
        selected.len(),
        outstanding,
    );
    // Outside what was read, letters of the selection may be outstanding: the whole read decides.
    let read_all = s.records.len() as i64 >= s.letters.all;
    let nothing = s.letters.outstanding == 0 || (read_all && outstanding == 0);
    let whole = Selection { stage: Some(s.stage.clone()), class: sel.class, doc: None, at: None };
    if nothing {
        let _ = write!(
            out,
            r#"<p class="row"><button type="button" class="redrive-all" disabled>Redrive every letter of this selection…</button> <span class="muted">Nothing outstanding{of_class}: every letter was redriven or discarded.</span></p>"#,
        );
    } else {
        let _ = write!(
            out,
            r#"<form method="post" action="/dead-letters/preview" class="row">{}<button type="submit" class="redrive-all">Redrive every outstanding letter of this selection… (preview)</button></form>"#,
            whole.hidden(app, session),
        );
    }
    if selected.is_empty() {
        let _ = write!(
            out,
            r#"<p class="empty" id="dlq-empty">No dead letters{of_class} for {stage} among the newest {} read.</p>"#,
            s.records.len()
        );
        return Ok(out);
    }
    // Over every letter read: a letter's newer letter may be of another class.
    let fates = fates_with(t, spec, &s.records, &s.parts).await.map_err(|e| e.to_string())?;
    // Every letter read is shown: the read is the bound, not the rendering.
    for r in selected {
        let at = At::new(r.partition, r.offset);
        let l = match &r.letter {
            Ok(l) => l,
            Err(why) => {
                let _ = write!(
                    out,
                    r#"<article class="letter card" id="letter-{}-{}" data-doc="" data-at="{at}" data-offset="{}"><p class="flash error"><code>{at}</code> is not a dead letter: {}</p></article>"#,
                    r.partition,
                    r.offset,
                    r.offset,
                    esc(why)
                );
                continue;
            }
        };
        let doc = document_id(codec, l).await.map_err(|e| e.to_string())?.unwrap_or_default();
        let original = original_json(codec, l.original_value.as_deref()).await;
        let pretty = serde_json::to_string_pretty(&original).unwrap_or_default();
        let one = Selection {
            stage: Some(s.stage.clone()),
            class: Some(l.error_class),
            doc: (!doc.is_empty()).then(|| doc.clone()),
            at: Some(at),
        };
        let card = Card {
            at,
            letter: l,
            doc: &doc,
            original: &pretty,
            fate: fates.get(&at),
            redriven_before: redrive_count(&l.original_headers),
            hidden: one.hidden(app, session),
        };
        out.push_str(&card::render(&card, spec));
    }
    Ok(out)
}
