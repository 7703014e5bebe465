//! `POST /dead-letters/preview` (the dry run, with counts scoped to the selection) and
//! `POST /dead-letters/redrive` (the run). Letters of class PERMANENT or DECODE failed on what
//! they hold and fail again unless that changed: the preview warns, and the run refuses them
//! without the explicit confirmation (checked on the server, whatever the browser sent).

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::super::app::{App, FormData, Shared};
use super::super::auth::Session;
use super::super::html::{esc, url, Nav};
use super::selection::{every_tenant, Selection};
use crate::avro::DeadLetterClass;
use crate::ops::{redrive, RedriveReport};

/// The form field confirming that letters which failed on their content go back.
const CONFIRM: &str = "confirm_fails_again";

pub async fn preview(State(app): State<Shared>, headers: HeaderMap, form: FormData) -> Response {
    run(app, headers, form.0, false).await
}

pub async fn execute(State(app): State<Shared>, headers: HeaderMap, form: FormData) -> Response {
    run(app, headers, form.0, true).await
}

/// Letters of the plan that failed on their content (PERMANENT, DECODE).
fn failing_again(r: &RedriveReport) -> usize {
    let again = [DeadLetterClass::Permanent, DeadLetterClass::Decode].map(|c| c.symbol());
    r.plan
        .iter()
        .filter(|row| again.contains(&row.error_class.as_str()))
        .map(|row| row.records)
        .sum()
}

/// The plan and its counts, all scoped to the selection.
fn plan_table(r: &RedriveReport, sel: &Selection) -> String {
    let mut out = String::from(
        r#"<div class="scroll"><table id="redrive-plan"><thead><tr><th>Back to topic</th><th>Error class</th><th>Records</th></tr></thead><tbody>"#,
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
    // Finished letters are counted for the selection only with a position or the whole stage:
    // a class or document selection does not read again what earlier runs finished.
    let done = if sel.at.is_some() || sel.whole_stage() {
        format!(" · finished by earlier runs: {}", r.done_before)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        r#"</tbody></table></div><p class="muted" id="redrive-counts">In this selection: to redrive: {} · left in place by the loop guard: {} · cannot be redriven: {}{done}. Letters outside it are left alone; the position is kept in group <code>{}</code>.</p>"#,
        r.planned(),
        r.loop_guarded_count,
        r.unredrivable_count,
        esc(&r.group)
    );
    out
}

/// The warning and the confirmation a redrive of letters that fail again needs.
fn warning(n: usize) -> String {
    format!(
        r#"<div class="flash warn" id="redrive-warning"><p><b>{n} letter(s) of class PERMANENT or DECODE.</b> They failed on what they hold (bad input, a content policy, a schema), not on a passing fault: redriven unchanged, they will fail again and come back. Redrive them only once what made them fail has changed (prompt, model, schema, policy).</p><label class="check"><input type="checkbox" name="{CONFIRM}" value="yes" form="redrive-form" required> What made them fail has changed: redrive them anyway</label></div>"#
    )
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
    let stage = sel.stage_or_first(&app);
    let confirmed = form.get(CONFIRM).is_some_and(|v| v == "yes");
    let may_fail_again = sel.class.is_none_or(super::selection::fails_again);
    if execute && !confirmed && may_fail_again {
        // The server checks what the browser was asked to confirm: a dry run says whether any
        // letter of the selection would fail again.
        match redrive(&app.topology, &stage, &sel.options(false), |_| {}).await {
            Ok(r) if failing_again(&r) > 0 => {
                let flash = r#"<p class="flash error" id="redrive-refused">Nothing was redriven: confirm first that what made these letters fail has changed.</p>"#;
                return preview_page(&app, &session, &sel, Ok(r), flash);
            }
            Ok(_) => {}
            Err(e) => return preview_page(&app, &session, &sel, Err(e.to_string()), ""),
        }
    }
    if !execute {
        let r = redrive(&app.topology, &stage, &sel.options(false), |_| {}).await;
        return preview_page(&app, &session, &sel, r.map_err(|e| e.to_string()), "");
    }
    if !app.redrives.lock().expect("never poisoned").insert(stage.clone()) {
        let body = format!(
            r#"<p class="flash error">A redrive of stage {} is running in this console: wait for it, then preview again.</p>"#,
            esc(&stage)
        );
        return app.render("Redrive", Nav::DeadLetters, &session, &body).into_response();
    }
    // On a task of its own: a browser that goes away cannot cut a redrive short between
    // producing records and committing its position.
    let (runner, opts, s) = (app.clone(), sel.options(true), stage.clone());
    let report = tokio::spawn(async move {
        let report = redrive(&runner.topology, &s, &opts, |_| {}).await;
        runner.redrives.lock().expect("never poisoned").remove(&s);
        report
    })
    .await
    .expect("the redrive task does not panic");
    let mut body = format!("<p>Dead letters of {}.</p>", esc(&sel.describe(&app)));
    match report {
        Err(e) => {
            let _ = write!(body, r#"<p class="flash error">{}</p>"#, esc(&e.to_string()));
        }
        Ok(r) => {
            super::super::events::Redriven {
                reviewer: &session.reviewer,
                selection: &sel.describe(&app),
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
            body.push_str(&plan_table(&r, &sel));
        }
    }
    let _ = write!(
        body,
        r#"<p><a href="/dead-letters?stage={}">Back to the dead letters</a> — each letter there says what became of it.</p>"#,
        url(&stage)
    );
    app.render("Redrive", Nav::DeadLetters, &session, &body).into_response()
}

/// The dry run's page: the plan, the warning and confirmation when letters would fail again,
/// and the button that runs it — or why there is nothing to run.
fn preview_page(
    app: &App,
    session: &Session,
    sel: &Selection,
    report: Result<RedriveReport, String>,
    flash: &str,
) -> Response {
    let mut body = format!("{flash}<p>Dead letters of {}.</p>", esc(&sel.describe(app)));
    match report {
        Err(e) => {
            let _ = write!(body, r#"<p class="flash error">{}</p>"#, esc(&e));
        }
        Ok(r) => {
            body.push_str(&plan_table(&r, sel));
            if r.planned() == 0 {
                body.push_str(
                    r#"<p class="empty" id="redrive-nothing">Nothing to redrive in this selection: its letters were redriven or discarded already, or cannot be redriven.</p><p><button type="button" class="redrive-execute" disabled>Redrive 0 records</button></p>"#,
                );
            } else {
                let again = failing_again(&r);
                if again > 0 {
                    body.push_str(&warning(again));
                }
                let _ = write!(
                    body,
                    r#"<p>This is a dry run: nothing was produced. Redriving republishes the original records where only stage {} reads them, and it processes them again. It selects again when it runs: letters of this selection written since this preview go too.</p>
<form id="redrive-form" method="post" action="/dead-letters/redrive">{}<button type="submit" class="redrive-execute danger">Redrive {} record(s)</button></form>"#,
                    esc(&sel.stage_or_first(app)),
                    sel.hidden(app, session),
                    r.planned()
                );
            }
        }
    }
    let _ = write!(
        body,
        r#"<p><a href="/dead-letters?stage={}">Back to the dead letters</a></p>"#,
        url(&sel.stage_or_first(app))
    );
    app.render("Redrive preview", Nav::DeadLetters, session, &body).into_response()
}
