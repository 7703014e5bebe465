//! Hit rate and false-hit rate of the semantic cache per threshold, with a real sentence-embedding
//! model, through sluice's own code: every text of `tests/fixtures/semantic/pairs.jsonl` embedded
//! by the gateway's `openai` provider (the all-MiniLM-L6-v2 server of `scripts/with-embedder`),
//! then each pair through [`sluice::policy::semantic::SemanticIndex`] at thresholds 0.80 to 0.99,
//! with the literal guard and without it (the baseline, in the same run), each pair alone and
//! all pairs in one index (see `semantic/simulate.rs`). Prints the tables, then the same tables
//! and the recommended threshold as Markdown for docs/BENCHMARKS.md.
//!
//!   scripts/with-embedder cargo bench --bench semantic_threshold

#[path = "semantic/entries.rs"]
mod entries;
#[path = "semantic/pairs.rs"]
mod pairs;
#[path = "semantic/simulate.rs"]
mod simulate;
#[path = "semantic/table.rs"]
mod table;

use std::collections::HashMap;

use pairs::{Label, Pair};
use simulate::{wrong, Guard, Layout, Run, Tallies, Tally};
use table::{count, pct, ratio, Table};

/// Thresholds at which the per-kind table is shown (the recommendation is added).
const SHOWN: [f32; 5] = [0.85, 0.90, 0.92, 0.94, 0.95];

fn sum(t: &Tallies, prefix: &str) -> Tally {
    let mut out = Tally::default();
    t.iter().filter(|(k, _)| k.starts_with(prefix)).for_each(|(_, v)| out.add(v));
    out
}

/// Lookups answered that must not be: a near miss, or another tenant's question.
fn forbidden(t: &Tallies) -> u32 {
    let (near, tenant) = (sum(t, "near_miss"), sum(t, "other_tenant"));
    near.own + near.other + tenant.own + tenant.other
}

/// Lookups answered wrongly: the forbidden ones and paraphrases answered from another entry.
fn false_answers(t: &Tallies) -> u32 {
    forbidden(t) + sum(t, "paraphrase").other
}

fn lookups(t: &Tallies) -> u32 {
    t.values().map(|v| v.n).sum()
}

fn tallies(run: &Run, threshold: f32) -> &Tallies {
    &run.per_threshold.iter().find(|(t, _)| *t == threshold).expect("a measured threshold").1
}

/// The lowest threshold from which on `runs` answer no forbidden lookup.
fn lowest_clean(runs: &[&Run], thresholds: &[f32]) -> Option<f32> {
    let clean = |t: f32| runs.iter().all(|r| forbidden(tallies(r, t)) == 0);
    let i = thresholds.iter().rposition(|t| !clean(*t)).map_or(0, |i| i + 1);
    thresholds.get(i).copied()
}

/// The most similar forbidden answer of `runs` at any threshold: similarity, pair, answering pair.
fn worst(runs: &[&Run], pairs: &[Pair]) -> Option<(f32, usize, usize)> {
    runs.iter()
        .flat_map(|r| &r.nearest)
        .filter_map(|n| n.answer.map(|(j, a, s)| (s, n.pair, j, a)))
        .filter(|(_, i, _, a)| pairs[*i].label != Label::Paraphrase && wrong(&pairs[*i], *a))
        .map(|(s, i, j, _)| (s, i, j))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn f2(t: f32) -> String {
    format!("{t:.2}")
}

fn main() {
    let Some(url) = std::env::var("SLUICE_EMBEDDER_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!(
            "semantic_threshold: SLUICE_EMBEDDER_URL is not set; run it with the real model:\n  \
             scripts/with-embedder cargo bench --bench semantic_threshold"
        );
        std::process::exit(2);
    };
    let model =
        std::env::var("SLUICE_EMBEDDER_MODEL").unwrap_or_else(|_| "all-MiniLM-L6-v2".into());
    let pairs = pairs::load();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let embedded = runtime.block_on(pairs::embed(&url, &model, &pairs));
    let dims = embedded.vectors.values().next().map_or(0, Vec::len);
    println!(
        "{model}: {} pairs, {} distinct texts of {dims} dimensions embedded in {} calls through \
         the gateway's openai provider, {:.1} s",
        pairs.len(),
        embedded.vectors.len(),
        embedded.calls,
        embedded.elapsed.as_secs_f64()
    );
    let thresholds: Vec<f32> = (80..=99).map(|c| c as f32 / 100.0).collect();
    let mut runs: HashMap<(Layout, Guard), Run> = HashMap::new();
    for layout in [Layout::Pairwise, Layout::Shared] {
        for guard in [Guard::Off, Guard::On] {
            let run = simulate::run(&pairs, &embedded.vectors, layout, guard, &thresholds);
            runs.insert((layout, guard), run);
        }
    }
    let run = |l, g| &runs[&(l, g)];
    let n = |label: Label| pairs.iter().filter(|p| p.label == label).count();
    let (n_para, n_near, n_tenant) =
        (n(Label::Paraphrase), n(Label::NearMiss), n(Label::OtherTenant));

    let mut tables = vec![
        pairwise(&thresholds, run(Layout::Pairwise, Guard::Off), run(Layout::Pairwise, Guard::On)),
        shared(&thresholds, run(Layout::Shared, Guard::Off), run(Layout::Shared, Guard::On)),
    ];
    let guarded = [run(Layout::Pairwise, Guard::On), run(Layout::Shared, Guard::On)];
    let unguarded = [run(Layout::Pairwise, Guard::Off), run(Layout::Shared, Guard::Off)];
    let recommended = lowest_clean(&guarded, &thresholds);
    let baseline_clean = lowest_clean(&unguarded, &thresholds);
    let mut shown: Vec<f32> = SHOWN.to_vec();
    shown.extend(recommended);
    shown.sort_by(f32::total_cmp);
    shown.dedup();
    tables.push(per_kind(
        &pairs,
        &shown,
        run(Layout::Pairwise, Guard::Off),
        run(Layout::Pairwise, Guard::On),
    ));
    tables.push(wrong_answers(&pairs, &guarded));

    for t in &tables {
        println!("\n{}", t.text());
    }
    let mut summary = format!(
        "Set: {} pairs ({n_para} paraphrase, {n_near} near-miss, {n_tenant} other-tenant), {} \
         distinct texts, {model} ({dims} dimensions).\n",
        pairs.len(),
        embedded.vectors.len()
    );
    let hit_rate = |r: &Run, t: f32| {
        let p = sum(tallies(r, t), "paraphrase");
        pct(p.own, p.n)
    };
    let describe = |label: &str, runs: &[&Run; 2], clean: Option<f32>| -> String {
        let Some(t) = clean else {
            return format!(
                "\n{label}: every threshold up to 0.99 answers a near miss or another tenant.\n"
            );
        };
        let mut out = format!(
            "\n{label}: no near miss and no other tenant answered from {} on (each pair alone and \
             all in one index); paraphrase hit rate there {} alone, {} in one index; \
             paraphrases answered from another entry in one index: {}.",
            f2(t),
            hit_rate(runs[0], t),
            hit_rate(runs[1], t),
            sum(tallies(runs[1], t), "paraphrase").other
        );
        if let Some((s, i, j)) = worst(runs, &pairs) {
            out.push_str(&format!(
                " The most similar forbidden answer has similarity {s:.6} ({}: \"{}\" answered \
                 from \"{}\"): a margin of {:.6}.",
                pairs[i].id,
                pairs[i].b,
                pairs[j].a,
                t - s
            ));
            let safe = thresholds.iter().find(|x| **x - s >= 0.005);
            if let Some(x) = safe {
                out.push_str(&format!(
                    " The lowest threshold with a margin of at least 0.005 is {}: hit rate {} \
                     alone, {} in one index.",
                    f2(*x),
                    hit_rate(runs[0], *x),
                    hit_rate(runs[1], *x)
                ));
            }
        }
        if let Some(b) = thresholds.iter().rev().find(|x| **x < t) {
            out.push_str(&format!(
                " One step lower, at {}: {} and {} forbidden answers (alone, one index).",
                f2(*b),
                forbidden(tallies(runs[0], *b)),
                forbidden(tallies(runs[1], *b))
            ));
        }
        out.push('\n');
        out
    };
    summary.push_str(&describe("With the guard", &guarded, recommended));
    summary.push_str(&describe("Without the guard (the baseline)", &unguarded, baseline_clean));
    println!("\n{summary}");
    println!("\n----- Markdown -----\n");
    for t in &tables {
        println!("{}", t.markdown());
    }
    println!("{summary}");
}

fn pairwise(thresholds: &[f32], off: &Run, on: &Run) -> Table {
    let mut table = Table::new(
        "Each pair alone: the first question stored, the second looked up (paraphrase: should be \
         answered; near miss, other tenant: must not be)",
        &[
            "threshold",
            "paraphrase hits, no guard",
            "with guard",
            "guard ÷ no guard",
            "light, guard",
            "reworded, guard",
            "near-miss false hits, no guard",
            "with guard",
            "other tenant answered",
        ],
    );
    for t in thresholds {
        let (a, b) = (tallies(off, *t), tallies(on, *t));
        let (pa, pb) = (sum(a, "paraphrase"), sum(b, "paraphrase"));
        let (light, reworded) = (sum(b, "paraphrase/light"), sum(b, "paraphrase/reworded"));
        let (na, nb) = (sum(a, "near_miss"), sum(b, "near_miss"));
        let (ta, tb) = (sum(a, "other_tenant"), sum(b, "other_tenant"));
        table.row(vec![
            f2(*t),
            count(pa.own, pa.n),
            count(pb.own, pb.n),
            ratio(pb.own, pa.own),
            pct(light.own, light.n),
            pct(reworded.own, reworded.n),
            count(na.own + na.other, na.n),
            count(nb.own + nb.other, nb.n),
            format!("{} / {}", ta.own + ta.other, tb.own + tb.other),
        ]);
    }
    table
}

fn shared(thresholds: &[f32], off: &Run, on: &Run) -> Table {
    let mut table = Table::new(
        "All first questions in one index (each tenant's key about 60 entries), every second \
         question looked up: a hit is a paraphrase answered from its own pair's entry, a wrong \
         answer any other answer",
        &[
            "threshold",
            "paraphrase hits, no guard",
            "with guard",
            "guard ÷ no guard",
            "wrong answers, no guard",
            "with guard",
            "guard: near miss",
            "guard: paraphrase, wrong entry",
            "guard: other tenant, wrong entry",
            "guard: the same question stored (right)",
        ],
    );
    for t in thresholds {
        let (a, b) = (tallies(off, *t), tallies(on, *t));
        let (pa, pb) = (sum(a, "paraphrase"), sum(b, "paraphrase"));
        let (nb, tb) = (sum(b, "near_miss"), sum(b, "other_tenant"));
        table.row(vec![
            f2(*t),
            count(pa.own, pa.n),
            count(pb.own, pb.n),
            ratio(pb.own, pa.own),
            count(false_answers(a), lookups(a)),
            count(false_answers(b), lookups(b)),
            (nb.own + nb.other).to_string(),
            pb.other.to_string(),
            (tb.own + tb.other).to_string(),
            b.values().map(|v| v.repeat).sum::<u32>().to_string(),
        ]);
    }
    table
}

fn per_kind(pairs: &[Pair], shown: &[f32], off: &Run, on: &Run) -> Table {
    let head: Vec<String> = ["near miss, what differs".to_owned(), "n".to_owned()]
        .into_iter()
        .chain(shown.iter().map(|t| format!("{} no guard / guard", f2(*t))))
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut table = Table::new("Near-miss false hits by what differs, each pair alone", &head);
    let mut kinds: Vec<String> =
        pairs.iter().filter(|p| p.label == Label::NearMiss).map(Pair::category).collect();
    kinds.sort();
    kinds.dedup();
    kinds.push("near_miss".into());
    for kind in kinds {
        let n = sum(tallies(on, shown[0]), &kind).n;
        let mut row =
            vec![kind.trim_start_matches("near_miss/").replace("near_miss", "all"), n.to_string()];
        for t in shown {
            let (a, b) = (sum(tallies(off, *t), &kind), sum(tallies(on, *t), &kind));
            row.push(format!("{} / {}", a.own + a.other, b.own + b.other));
        }
        table.row(row);
    }
    table
}

/// The most similar wrong answers the guard lets through (at a threshold up to their similarity).
fn wrong_answers(pairs: &[Pair], guarded: &[&Run; 2]) -> Table {
    let mut table = Table::new(
        "The most similar wrong answers with the guard (what only the threshold stops)",
        &["similarity", "layout", "pair", "kind", "looked up", "answered from"],
    );
    let mut all: Vec<(f32, &str, usize, usize)> = Vec::new();
    for (run, layout) in guarded.iter().zip(["alone", "one index"]) {
        for n in &run.nearest {
            if let Some((j, a, s)) = n.answer {
                if wrong(&pairs[n.pair], a) {
                    all.push((s, layout, n.pair, j));
                }
            }
        }
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (s, layout, i, j) in all.into_iter().take(12) {
        table.row(vec![
            format!("{s:.6}"),
            layout.to_owned(),
            pairs[i].id.clone(),
            pairs[i].category(),
            pairs[i].b.clone(),
            pairs[j].a.clone(),
        ]);
    }
    table
}
