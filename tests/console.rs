//! `sluice console` in process on the embedded broker: two replicas sharing one review queue
//! never hold one item at once and write one decision per document, offsets committed only after
//! it; copies of one document are one item; a lapsed claim passes on; a stopped replica's
//! decision is finished by another; the queue holds at most its configured number of records
//! and reads on as decisions make room; a record that cannot be decoded is shown and can be
//! discarded. Access over HTTP is in `console_access.rs`.

mod common;

use std::time::Duration;

use common::console::*;
use common::{unique, wait_until, Harness};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::Message;
use sluice::avro::{HumanDecision, SchemaKind};
use sluice::console;
use sluice::console::actions::{ActionError, Judgement};
use sluice::console::ledger::ItemKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_hold_one_item_and_each_decision_is_written_once_before_the_commit() {
    let h = Harness::start(&topology(&unique("cq"))).await;
    needs_human(&h, "d0", "acme", "first question").await;
    needs_human(&h, "d1", "globex", "second question").await;
    let (a, b) =
        (start(&h, Duration::from_secs(60)).await, start(&h, Duration::from_secs(60)).await);
    assert!(
        wait_until(TIMEOUT, || async {
            pending(&a).await.len() == 2 && pending(&b).await.len() == 2
        })
        .await
    );
    let first = pending(&a).await[0];
    let (qa, qb) = (a.app.queues[0].clone(), b.app.queues[0].clone());
    let (ann, bob) = (actor("ann"), actor("bob"));
    let (ra, rb) = tokio::join!(qa.claim(first, &ann), qb.claim(first, &bob));
    assert!(ra.is_ok() != rb.is_ok(), "exactly one claim wins: {ra:?} {rb:?}");
    let (winner, loser, wq, lq) =
        if ra.is_ok() { (&ann, &bob, &qa, &qb) } else { (&bob, &ann, &qb, &qa) };
    let err = if ra.is_ok() { rb } else { ra }.expect_err("the loser");
    assert!(
        matches!(&err, ActionError::ClaimedBy { reviewer, .. } if *reviewer == winner.reviewer),
        "{err}"
    );
    let approve = |answer: &str| Judgement {
        decision: HumanDecision::Approved,
        answer: Some(answer.into()),
        note: String::new(),
    };
    let refused = lq.decide(first, loser, approve("loser's text")).await.expect_err("no claim");
    assert!(
        matches!(&refused, ActionError::ClaimedBy { reviewer, .. } if *reviewer == winner.reviewer),
        "the other reviewer is told who holds it, not that his claim lapsed: {refused}"
    );
    let told = refused.to_string();
    assert!(told.contains("holds this item until") && told.contains("min left)"), "{told}");
    assert!(committed(&h) < 1, "nothing is committed past d0 before its decision is written");
    wq.decide(first, winner, approve("edited answer")).await.expect("the holder decides");
    let again = lq.decide(first, loser, approve("again")).await.expect_err("decided");
    assert!(matches!(again, ActionError::Decided), "{again}");

    let approved = format!("{}.approved", h.topology.pipeline);
    let written = decisions(&h, &approved).await;
    assert_eq!(written.len(), 1, "{written:?}");
    let (doc, reviewer, decision, answer, header) = &written[0];
    assert_eq!(
        (doc.as_str(), reviewer.as_str(), *decision),
        ("d0", winner.reviewer.as_str(), HumanDecision::Approved)
    );
    assert_eq!(answer, "edited answer");
    assert!(header.ends_with(".claims/0/2"), "two claims, then the decision: {header}");
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 1 }).await, "committed past d0 only");
    assert!(
        wait_until(TIMEOUT, || async {
            pending(&b).await == vec![ItemKey { partition: 0, offset: 1 }]
        })
        .await
    );

    let second = ItemKey { partition: 0, offset: 1 };
    qb.claim(second, &bob).await.expect("open item");
    let reject =
        Judgement { decision: HumanDecision::Rejected, answer: None, note: "wrong product".into() };
    qb.decide(second, &bob, reject).await.expect("bob decides");
    let rejected = decisions(&h, &format!("{}.rejected", h.topology.pipeline)).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].0.as_str(), rejected[0].3.as_str()), ("d1", "generated answer for d1"));
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 2 }).await);
    assert_eq!(decisions(&h, &approved).await.len(), 1, "still one approval");
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let tombstones = || async {
        let keys = common::each_record(&h.topology.kafka, &claims, |m| {
            m.payload()
                .is_none()
                .then(|| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        })
        .await;
        keys.into_iter().flatten().collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        wait_until(TIMEOUT, || async { tombstones().await.len() == 2 }).await,
        "items behind the commit are tombstoned in the compacted claims topic: {:?}",
        tombstones().await
    );
    assert_eq!(tombstones().await.into_iter().collect::<Vec<_>>(), ["0/0", "0/1"]);
    let metrics = reqwest::get(format!("http://{}/metrics", a.addr)).await.expect("GET");
    let text = metrics.text().await.expect("body");
    // The registry is the process's, shared by this binary's tests: the series, not its value.
    assert!(
        text.contains(r#"sluice_review_decisions_total{decision="approved",stage="review"} "#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_review_queue_items{stage="review"} "#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_claim_passes_to_the_next_reviewer_and_the_first_can_no_longer_decide() {
    let h = Harness::start(&topology(&unique("cl"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    let c = start(&h, Duration::from_secs(2)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 1 }).await);
    let (q, key) = (c.app.queues[0].clone(), ItemKey { partition: 0, offset: 0 });
    q.claim(key, &actor("ann")).await.expect("claims");
    let held = q.claim(key, &actor("bob")).await.expect_err("held");
    assert!(matches!(held, ActionError::ClaimedBy { .. }), "{held}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    q.claim(key, &actor("bob")).await.expect("the claim lapsed");
    let bob_holds =
        |e: &ActionError| matches!(e, ActionError::ClaimedBy { reviewer, .. } if reviewer == "bob");
    let stale = q.release(key, &actor("ann")).await.expect_err("ann no longer holds it");
    assert!(bob_holds(&stale), "{stale}");
    let judgement =
        || Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    let late = q.decide(key, &actor("ann"), judgement()).await.expect_err("lapsed");
    assert!(bob_holds(&late), "ann is told bob holds it now: {late}");
    for blank in ["", "  \n "] {
        let empty = Judgement { answer: Some(blank.into()), ..judgement() };
        let refused = q.decide(key, &actor("bob"), empty).await.expect_err("empty answer");
        assert!(matches!(refused, ActionError::EmptyAnswer), "{refused}");
    }
    q.decide(key, &actor("bob"), judgement()).await.expect("bob holds it");
    let late = q.release(key, &actor("bob")).await.expect_err("decided");
    assert!(
        matches!(late, ActionError::Decided | ActionError::Unknown(..)),
        "a stale page cannot reopen a decided (or already committed) item: {late}"
    );
    let approved = decisions(&h, &format!("{}.approved", h.topology.pipeline)).await;
    assert_eq!(approved.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(), ["bob"]);
}

/// A replica that stopped between its decision and the decision's record: another replica
/// finishes it, once, and the queue moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_left_unfinished_by_a_stopped_replica_is_finished_by_another() {
    use sluice::avro::{ReviewEvent, ReviewStep};
    let h = Harness::start(&topology(&unique("cf"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    let claims = format!("{}.needs-human.claims", h.topology.pipeline);
    let codec = h.codec().await;
    let at = sluice::call::now_ms() - 60_000;
    for (step, expires_ms) in [(ReviewStep::Claim, at + 600_000), (ReviewStep::Decide, 0)] {
        let e = ReviewEvent {
            item_partition: 0,
            item_offset: 0,
            step,
            reviewer: "gone".into(),
            holder: "stopped-replica".into(),
            at_ms: at,
            expires_ms,
            decision: Some(HumanDecision::Rejected),
            answer: None,
            note: Some("spam".into()),
            // As consoles wrote steps before steps named their document.
            document: None,
            tenant: None,
        };
        let value = apache_avro::to_value(&e)
            .and_then(|v| v.resolve(SchemaKind::ReviewEvent.schema()))
            .expect("value");
        let bytes = codec.encode(&claims, &value).expect("encode");
        let record = FutureRecord::to(&claims).key("0/0").payload(&bytes);
        h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
    }
    let c = start_with(&h, Duration::from_secs(60), Duration::from_secs(1)).await;
    let rejected = format!("{}.rejected", h.topology.pipeline);
    assert!(
        wait_until(TIMEOUT, || async { !decisions(&h, &rejected).await.is_empty() }).await,
        "the finisher wrote the decision's record"
    );
    let written = decisions(&h, &rejected).await;
    assert_eq!(written.len(), 1);
    assert_eq!((written[0].0.as_str(), written[0].1.as_str()), ("d0", "gone"));
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 1 }).await, "then committed past it");
    assert!(pending(&c).await.is_empty());
}

/// Needs-human records are written at least once: two copies of one document are one item, and
/// two reviewers acting on the two copies at once leave exactly one decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_one_document_get_exactly_one_decision_whoever_acts_on_which_copy() {
    let h = Harness::start(&topology(&unique("cd"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    needs_human(&h, "d0", "acme", "question").await;
    needs_human(&h, "d1", "acme", "another question").await;
    let (a, b) =
        (start(&h, Duration::from_secs(60)).await, start(&h, Duration::from_secs(60)).await);
    let read_all = || async {
        let held = |c: &console::Console| c.app.queues[0].state().items.len();
        held(&a) == 3 && held(&b) == 3
    };
    assert!(wait_until(TIMEOUT, read_all).await);
    let listed = pending(&a).await;
    assert_eq!(
        listed,
        [0, 2].map(|offset| ItemKey { partition: 0, offset }),
        "one item a document"
    );
    let (copy0, copy1) = (ItemKey { partition: 0, offset: 0 }, ItemKey { partition: 0, offset: 1 });
    let (qa, qb) = (a.app.queues[0].clone(), b.app.queues[0].clone());
    let (ann, bob) = (actor("ann"), actor("bob"));
    let (ra, rb) = tokio::join!(qa.claim(copy0, &ann), qb.claim(copy1, &bob));
    assert!(ra.is_ok() != rb.is_ok(), "one claim per document: {ra:?} {rb:?}");
    let judgement = |decision| Judgement { decision, answer: None, note: "checked".into() };
    let (da, db) = tokio::join!(
        qa.decide(copy0, &ann, judgement(HumanDecision::Approved)),
        qb.decide(copy1, &bob, judgement(HumanDecision::Rejected)),
    );
    assert!(da.is_ok() != db.is_ok(), "one decision per document: {da:?} {db:?}");
    let refused = if da.is_ok() { db } else { da }.expect_err("the other reviewer");
    assert!(
        matches!(
            refused,
            ActionError::NotHolder | ActionError::ClaimedBy { .. } | ActionError::Decided
        ),
        "{refused}"
    );
    let (loser, loser_copy, lq) = if ra.is_ok() { (&bob, copy1, &qb) } else { (&ann, copy0, &qa) };
    let again = lq.claim(loser_copy, loser).await.expect_err("the document is decided");
    assert!(matches!(again, ActionError::Decided), "{again}");

    let d2 = ItemKey { partition: 0, offset: 2 };
    qa.claim(d2, &ann).await.expect("d1 is open");
    qa.decide(d2, &ann, judgement(HumanDecision::Approved)).await.expect("ann decides d1");
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 3 }).await, "past both copies");
    let p = &h.topology.pipeline;
    let mut all = decisions(&h, &format!("{p}.approved")).await;
    all.extend(decisions(&h, &format!("{p}.rejected")).await);
    let d0: Vec<_> = all.iter().filter(|d| d.0 == "d0").collect();
    assert_eq!(d0.len(), 1, "exactly one decision for d0 reached the topics: {all:?}");
    assert!(pending(&b).await.is_empty());
}

/// The queue holds at most its configured number of records, and reads on from Kafka as
/// decisions make room: every record is decided in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_holds_at_most_its_capacity_and_pages_through_kafka_as_decisions_make_room() {
    let h = Harness::start(&topology(&unique("cc"))).await;
    let (records, capacity) = (5, 2);
    for i in 0..records {
        needs_human(&h, &format!("d{i}"), "acme", "question").await;
    }
    let c = start_opts(&h, |o| o.limits.queue_items = capacity).await;
    let q = c.app.queues[0].clone();
    let held = || q.state().items.len();
    // Full, and the next record seen: the partition is parked and waits in Kafka.
    let parked = || !q.state().parked.is_empty();
    assert!(wait_until(TIMEOUT, || async { parked() }).await, "the partition waits in Kafka");
    assert_eq!(held(), capacity, "no more than its capacity");
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let html = b.get("/review").await.text().await.expect("body");
    assert!(html.contains(r#"id="queue-full""#), "the page says more wait: {html}");
    let ann = actor("ann");
    for offset in 0..records as i64 {
        let key = ItemKey { partition: 0, offset };
        assert!(wait_until(TIMEOUT, || async { pending(&c).await.contains(&key) }).await);
        assert!(held() <= capacity, "never more than the capacity: {}", held());
        q.claim(key, &ann).await.expect("claims");
        let ok = Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
        q.decide(key, &ann, ok).await.expect("decides");
    }
    assert!(wait_until(TIMEOUT, || async { committed(&h) == records as i64 }).await);
    assert_eq!(decisions(&h, &format!("{}.approved", h.topology.pipeline)).await.len(), records);
}

/// A needs-human record that does not decode is shown as such and holds the commit until an
/// operator discards it; discarding acknowledges it and writes no decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undecodable_record_is_shown_and_discarding_it_moves_the_commit_past_it() {
    let h = Harness::start(&topology(&unique("cu"))).await;
    let topic = format!("{}.needs-human", h.topology.pipeline);
    let garbage = FutureRecord::to(&topic).key("x").payload(&b"not avro"[..]);
    h.producer().send(garbage, Timeout::After(TIMEOUT)).await.expect("produce");
    needs_human(&h, "d1", "acme", "question").await;
    let c = start(&h, Duration::from_secs(60)).await;
    let q = c.app.queues[0].clone();
    assert!(wait_until(TIMEOUT, || async { q.state().items.len() == 2 }).await);
    let (bad, good) = (ItemKey { partition: 0, offset: 0 }, ItemKey { partition: 0, offset: 1 });
    assert_eq!(pending(&c).await, [good], "the queue lists what can be reviewed");
    let ann = actor("ann");
    q.claim(good, &ann).await.expect("claims");
    let ok = || Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    q.decide(good, &ann, ok()).await.expect("decides");
    let refused = q.discard(good, &ann).await.expect_err("decided, and decodable");
    assert!(matches!(refused, ActionError::Decided), "{refused}");
    q.claim(bad, &ann).await.expect("may be claimed to look at");
    let refused = q.decide(bad, &ann, ok()).await.expect_err("cannot be decided");
    assert!(matches!(refused, ActionError::Undecodable(..)), "{refused}");
    assert_eq!(committed(&h), 0, "the undecodable record holds the commit");

    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let html = b.get("/review").await.text().await.expect("body");
    assert!(html.contains(r#"id="undecodable""#) && html.contains("/review/item/0/0/discard"));
    let csrf = csrf_of(&html);
    let unconfirmed = b.post("/review/item/0/0/discard", form(&[("csrf", &csrf)]), None).await;
    assert_eq!(unconfirmed.status(), 303);
    assert!(!q.state().undecodable().is_empty(), "not discarded without the confirmation");
    let confirmed = form(&[("csrf", &csrf), ("confirm", "yes")]);
    let r = b.post("/review/item/0/0/discard", confirmed, None).await;
    assert_eq!(r.status(), 303);
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 2 }).await, "past both");
    assert_eq!(decisions(&h, &format!("{}.approved", h.topology.pipeline)).await.len(), 1);
    assert!(q.state().undecodable().is_empty());
}

/// A replay that moves the queue's group back while a console runs (one it could not see) is
/// not undone: the console stops committing that partition and its page says to restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_moved_back_by_someone_else_is_not_committed_over_and_the_page_says_so() {
    let h = Harness::start(&topology(&unique("cb"))).await;
    for d in ["d0", "d1", "d2"] {
        needs_human(&h, d, "acme", "question").await;
    }
    let c = start(&h, Duration::from_secs(60)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 3 }).await);
    let (q, ann) = (c.app.queues[0].clone(), actor("ann"));
    let ok = || Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    let first = ItemKey { partition: 0, offset: 0 };
    q.claim(first, &ann).await.expect("claims");
    q.decide(first, &ann, ok()).await.expect("decides");
    assert!(wait_until(TIMEOUT, || async { committed(&h) == 1 }).await);

    move_group_to(&h, 0);
    let second = ItemKey { partition: 0, offset: 1 };
    q.claim(second, &ann).await.expect("claims");
    q.decide(second, &ann, ok()).await.expect("decides");
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let told = || async {
        let html = b.get("/review").await.text().await.expect("body");
        html.contains(r#"id="moved-back""#) && html.contains("Restart the console")
    };
    assert!(wait_until(TIMEOUT, || async { told().await || committed(&h) != 0 }).await);
    assert_eq!(committed(&h), 0, "the move back is not committed over");
    assert!(told().await, "the page says the group was moved back");
}

/// One view of the dead-letter page reads the newest letters of each partition, its configured
/// number over all partitions, however many the topic holds: the page shows every letter read,
/// so what it shows is what was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dead_letter_page_reads_at_most_its_configured_number_of_letters() {
    let yaml =
        topology(&unique("cl")).replace("kafka: { partitions: 1 }", "kafka: { partitions: 3 }");
    let h = Harness::start(&yaml).await;
    let topic = h.topology.stages[0].dead_letter_topic.clone();
    let (partitions, per_partition, shown) = (3, 4, 6);
    for p in 0..partitions {
        for i in 0..per_partition {
            let key = format!("k{p}-{i}");
            let record =
                FutureRecord::to(&topic).key(&key).partition(p).payload(&b"not a letter"[..]);
            h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
        }
    }
    let c = start_opts(&h, |o| o.limits.dlq_letters = shown).await;
    let mut b = Browser::new(&c);
    assert_eq!(b.login("ann", "").await, 303);
    let html = b.get("/dead-letters?stage=review").await.text().await.expect("body");
    let letters = partitions * per_partition;
    assert!(html.contains(&format!("<b>{letters}</b> letter(s)")), "{html}");
    assert_eq!(html.matches(r#"class="letter card""#).count(), shown, "{html}");
    for p in 0..partitions {
        // The newest two of each partition (offsets 2 and 3), nothing older.
        for (offset, read) in [(0, false), (1, false), (2, true), (3, true)] {
            let card = format!("<code>{p}:{offset}</code> is not a dead letter");
            assert_eq!(html.contains(&card), read, "{card}: {html}");
        }
    }
}

/// The console stops on its one `Shutdown`: the server and every loop end, and what was decided
/// is committed on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_console_commits_what_is_done_and_ends_its_server_and_loops() {
    let h = Harness::start(&topology(&unique("cx"))).await;
    needs_human(&h, "d0", "acme", "question").await;
    needs_human(&h, "d1", "acme", "question").await;
    let c = start(&h, Duration::from_secs(60)).await;
    assert!(wait_until(TIMEOUT, || async { pending(&c).await.len() == 2 }).await);
    let (q, key) = (c.app.queues[0].clone(), ItemKey { partition: 0, offset: 0 });
    q.claim(key, &actor("ann")).await.expect("claims");
    let ok = Judgement { decision: HumanDecision::Approved, answer: None, note: String::new() };
    q.decide(key, &actor("ann"), ok).await.expect("decides");
    // A console commits only once it announced itself (the mock broker grants that too).
    assert!(wait_until(TIMEOUT, || async { q.present() }).await);
    let addr = c.addr;
    c.stop().await;
    assert_eq!(committed(&h), 1, "the last round committed the decided item");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the server no longer listens");
}

/// A console stops while the schema registry is down and a record waits to be decoded: the
/// record is left uncommitted for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_stops_while_the_registry_is_down_and_a_record_waits_to_be_decoded() {
    let h = Harness::start(&topology(&unique("cr"))).await;
    let c = start(&h, Duration::from_secs(60)).await;
    h.stack.registry.set_available(false);
    // A schema id this console has never seen: decoding it needs the registry.
    let mut payload = vec![0];
    payload.extend_from_slice(&987_654_i32.to_be_bytes());
    payload.push(0);
    let topic = format!("{}.needs-human", h.topology.pipeline);
    let record = FutureRecord::to(&topic).key("d0").payload(&payload);
    h.producer().send(record, Timeout::After(TIMEOUT)).await.expect("produce");
    let q = c.app.queues[0].clone();
    let waiting = || async {
        q.state().error.as_deref().is_some_and(|e| e.contains("schema registry unavailable"))
    };
    assert!(wait_until(TIMEOUT, waiting).await, "the record waits for the registry");
    let stopped = tokio::time::timeout(TIMEOUT, c.stop()).await;
    h.stack.registry.set_available(true);
    assert!(stopped.is_ok(), "the console stops although the registry is still down");
    assert_eq!(committed(&h), 0, "the waiting record is not committed past");
}

#[path = "console/pipeline.rs"]
mod pipeline;
