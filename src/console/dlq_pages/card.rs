//! One dead letter on the page: why it failed, where it came from, what became of it, its
//! attempts and original record, and its redrive button — disabled, saying why, when a redrive
//! could do nothing (finished already, unredrivable, held by the loop guard).

use std::fmt::Write;

use super::super::html::{esc, time};
use super::selection::fails_again;
use crate::avro::DeadLetter;
use crate::config::StageSpec;
use crate::ops::dlq::{At, Fate};
use crate::ops::RedriveOptions;

/// What a card shows besides the letter.
pub struct Card<'a> {
    pub at: At,
    pub letter: &'a DeadLetter,
    /// The document id, empty when the value does not decode.
    pub doc: &'a str,
    /// The original value for people, pretty JSON.
    pub original: &'a str,
    pub fate: Option<&'a Fate>,
    /// How often the record had been redriven before this failure (or why that is unknown).
    pub redriven_before: Result<u32, String>,
    /// The form (with its hidden fields) a redrive of this letter posts.
    pub hidden: String,
}

/// Why a redrive of the letter could do nothing, if it could not.
fn why_not(c: &Card<'_>, spec: &StageSpec) -> Option<String> {
    match c.fate {
        Some(Fate::Outstanding) | None => {}
        Some(f) => return Some(format!("nothing to do: {}", f.describe())),
    }
    let l = c.letter;
    if l.original_value.is_none() {
        return Some("cannot be redriven: its value was withheld (a redacting stage)".into());
    }
    if l.original_topic != spec.input {
        return Some("cannot be redriven: it names a topic other than the stage's input".into());
    }
    let max = RedriveOptions::default().max_redrives;
    match &c.redriven_before {
        Ok(n) if *n >= max => Some(format!(
            "the loop guard holds it: redriven {n} times already (discard it, or redrive it with \
             sluice dlq redrive --max-redrives)"
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot be redriven: {e}")),
    }
}

/// The card's state line: outstanding, or what became of the letter (a letter it was
/// dead-lettered again as is linked).
fn state(fate: Option<&Fate>) -> String {
    match fate {
        None => r#"<span class="state">unknown</span>"#.into(),
        Some(Fate::Outstanding) => r#"<span class="state outstanding">outstanding</span>"#.into(),
        Some(f @ Fate::DeadLetteredAgain { again }) => format!(
            r##"<span class="state redriven failed-again"><a href="#letter-{}-{}">{}</a></span>"##,
            again.partition,
            again.offset,
            esc(&f.describe())
        ),
        Some(f @ Fate::Processed { .. }) => {
            format!(r#"<span class="state redriven processed">{}</span>"#, esc(&f.describe()))
        }
        Some(f @ Fate::Waiting { .. }) => {
            format!(r#"<span class="state redriven waiting">{}</span>"#, esc(&f.describe()))
        }
        Some(f @ Fate::Finished) => {
            format!(r#"<span class="state finished">{}</span>"#, esc(&f.describe()))
        }
    }
}

pub fn render(c: &Card<'_>, spec: &StageSpec) -> String {
    let l = c.letter;
    let outstanding = c.fate.is_none_or(Fate::is_outstanding);
    let before = match &c.redriven_before {
        Ok(0) => "never redriven before".to_owned(),
        Ok(n) => format!("redriven {n}× before"),
        Err(e) => e.clone(),
    };
    let mut out = format!(
        r#"<article class="letter card{cls}" id="letter-{p}-{o}" data-doc="{doc}" data-at="{at}" data-offset="{o}" data-state="{st}">
<header><b>{class}</b> <code>{at}</code> {state}</header>
<p class="muted meta">failed {failed} · from <code>{ot}</code> <code>{oat}</code> · {before}</p>
<p class="message">{message}</p><p class="muted">document {doc_text} · model {model} · prompt {prompt}</p>
<details><summary>Attempts ({n}) and the original record</summary><div class="scroll"><table><thead><tr><th>#</th><th>At</th><th>Class</th><th>Message</th></tr></thead><tbody>"#,
        cls = if outstanding { "" } else { " done" },
        p = c.at.partition,
        o = c.at.offset,
        at = c.at,
        doc = esc(c.doc),
        st = match c.fate {
            Some(Fate::Outstanding) => "outstanding",
            Some(Fate::DeadLetteredAgain { .. }) => "dead-lettered-again",
            Some(Fate::Processed { .. }) => "processed",
            Some(Fate::Waiting { .. }) => "waiting",
            Some(Fate::Finished) => "finished",
            None => "unknown",
        },
        class = l.error_class.symbol(),
        state = state(c.fate),
        failed = time(Some(l.failed_at_ms)),
        ot = esc(&l.original_topic),
        oat = At::new(l.original_partition, l.original_offset),
        before = esc(&before),
        message = esc(&l.error_message),
        doc_text = esc(if c.doc.is_empty() { "(undecodable)" } else { c.doc }),
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
    let _ = write!(out, "</tbody></table></div><pre>{}</pre></details>", esc(c.original));
    match why_not(c, spec) {
        Some(why) => {
            let _ = write!(
                out,
                r#"<p class="actions"><button type="button" class="redrive-preview" disabled>Redrive this letter…</button> <span class="muted why-not">{}</span></p>"#,
                esc(&why)
            );
        }
        None => {
            let warn = if fails_again(l.error_class) {
                format!(
                    r#" <span class="muted warn">{} letters fail again unless what made them fail changed</span>"#,
                    l.error_class.symbol()
                )
            } else {
                String::new()
            };
            let _ = write!(
                out,
                r#"<form method="post" action="/dead-letters/preview" class="actions">{}<button type="submit" class="redrive-preview">Redrive this letter… (preview)</button>{warn}</form>"#,
                c.hidden
            );
        }
    }
    out.push_str("</article>");
    out
}
