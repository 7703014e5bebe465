//! The console's dead-letter pages over HTTP, in process on the embedded broker: the empty state,
//! the overview, positions written `P:O`, a warning and a confirmation (checked on the server)
//! before letters that failed on their content go back, a single letter's preview counting only
//! it, and redriven letters shown as such — no longer outstanding, their button disabled.

mod common;

use common::console::{csrf_of, form, start_opts, Browser};
use common::letters::{letter, write_letters};
use common::{document, Harness, OneStage};
use sluice::avro::{DeadLetter, DeadLetterClass};

fn between<'h>(html: &'h str, from: &str, to: &str) -> &'h str {
    let at = html.find(from).unwrap_or_else(|| panic!("no {from} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// The card of the letter at `at`.
fn card<'h>(html: &'h str, at: &str) -> &'h str {
    between(html, &format!(r#"data-at="{at}""#), "</article>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redriven_letters_are_shown_as_such_and_content_failures_need_a_confirmation() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml()).await;
    let c = start_opts(&h, |_| {}).await;
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);

    let html = b.get("/dead-letters").await.text().await.expect("body");
    assert!(html.contains("No dead letters for work"), "{html}");
    assert!(!html.contains(r#"class="redrive-all""#) || html.contains("disabled"), "{html}");

    let (codec, input) = (h.codec().await, h.input());
    let value = |id: &str| Some(h.encode(&codec, &input, &document(id, "t", "text")));
    let letters = [
        DeadLetter { error_class: DeadLetterClass::Permanent, ..letter(&h, "id-p", value("id-p")) },
        DeadLetter {
            error_class: DeadLetterClass::RetriesExhausted,
            original_offset: 1,
            ..letter(&h, "id-r", value("id-r"))
        },
    ];
    write_letters(&h, &letters).await;

    let html = b.get("/dead-letters").await.text().await.expect("body");
    assert!(html.contains(r#"id="dlq-overview""#), "{html}");
    let overview = between(&html, r#"id="dlq-overview""#, "</section>");
    assert!(overview.contains(r#"data-class="PERMANENT""#), "{overview}");
    assert!(
        html.contains(r#"<b>2</b> letter(s)"#) && html.contains(r#"<b class="outstanding">2</b>"#)
    );
    // Issue 24 #5: one notation, P:O, for the letter's position and its origin.
    assert!(card(&html, "0:0").contains("<code>0:0</code>"), "{html}");
    assert!(card(&html, "0:1").contains(&format!("<code>{input}</code> <code>0:1</code>")));
    assert!(!html.contains("0/0") && !html.contains("0@0"), "{html}");
    assert!(card(&html, "0:0").contains(r#"data-state="outstanding""#));

    let csrf = csrf_of(&html);
    let permanent = |confirm: bool| {
        let mut f = vec![("csrf", csrf.as_str()), ("stage", "work"), ("class", "PERMANENT")];
        f.extend([("doc", "id-p"), ("at", "0:0")]);
        if confirm {
            f.push(("confirm_fails_again", "yes"));
        }
        form(&f)
    };
    let preview = b.post("/dead-letters/preview", permanent(false), None).await;
    let preview = preview.text().await.expect("body");
    assert!(preview.contains(r#"id="redrive-warning""#), "{preview}");
    assert!(preview.contains("finished by earlier runs: 0"), "{preview}");
    assert!(!preview.contains("not selected"), "counts are the selection's: {preview}");

    let refused = b.post("/dead-letters/redrive", permanent(false), None).await;
    let refused = refused.text().await.expect("body");
    assert!(refused.contains(r#"id="redrive-refused""#), "{refused}");
    assert_eq!(h.count(&input).await, 0, "nothing was redriven without the confirmation");

    let done = b.post("/dead-letters/redrive", permanent(true), None).await;
    let done = done.text().await.expect("body");
    assert!(done.contains("redriven 1 of 1 planned"), "{done}");
    assert_eq!(h.count(&input).await, 1);

    // Issue 24 #4: the redriven letter is shown as such, its button disabled; the other is not.
    let html = b.get("/dead-letters?stage=work").await.text().await.expect("body");
    let redriven = card(&html, "0:0");
    assert!(redriven.contains(r#"data-state="waiting""#), "{redriven}");
    assert!(redriven.contains(&format!("redriven: waiting at {input} 0:0")), "{redriven}");
    assert!(redriven.contains(r#"class="redrive-preview" disabled"#), "{redriven}");
    assert!(card(&html, "0:1").contains(r#"data-state="outstanding""#));
    assert!(html.contains(r#"<b class="outstanding">1</b>"#), "{html}");

    let again = b.post("/dead-letters/preview", permanent(true), None).await;
    let again = again.text().await.expect("body");
    assert!(again.contains("finished by earlier runs: 1"), "{again}");
    assert!(again.contains(r#"id="redrive-nothing""#), "{again}");

    // A RETRIES_EXHAUSTED letter needs no confirmation.
    let f =
        [("csrf", csrf.as_str()), ("stage", "work"), ("class", "RETRIES_EXHAUSTED"), ("at", "0:1")];
    let f = form(&f);
    let done = b.post("/dead-letters/redrive", f, None).await.text().await.expect("body");
    assert!(done.contains("redriven 1 of 1 planned"), "{done}");
    let html = b.get("/dead-letters?stage=work").await.text().await.expect("body");
    assert!(html.contains(r#"<b class="outstanding">0</b>"#), "{html}");
    assert!(html.contains(r#"class="redrive-all" disabled"#), "nothing to redrive: {html}");
}

/// Issue 24 #5: a position in another notation is refused, saying what is expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_position_in_another_notation_is_refused_with_what_is_expected() {
    let h =
        Harness::start(&OneStage::new(1, "{ max_in_flight: 8, per_partition: 8 }").yaml()).await;
    let c = start_opts(&h, |_| {}).await;
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let html = b.get("/dead-letters?stage=work&at=0@2").await.text().await.expect("body");
    assert!(html.contains("expected PARTITION:OFFSET such as 2:0; got 0@2"), "{html}");
}
