//! The most scaling steps (each one a rebalance) an HPA behavior allows in any hour, counted by
//! trying every sequence of steps on the HPA's 15 s sync grid, and the check that
//! deploy/kubernetes/README.md states what the shipped ScaledObjects allow.
//!
//! The gaps between two steps follow from the HPA's rules: a scale-up uses the lowest
//! recommendation of its stabilization window, a scale-down the highest of its own, and a step
//! is never smaller than one pod. So a step up waits its policy's period after a step up and the
//! scale-up window after a step down (that down's recommendation is still in the window); a step
//! down waits its period after a step down and the scale-down window after a step up.

use crate::checks::{at, files, int_at, str_at, DIR};

const SYNC: u32 = 15;
const HOUR: u32 = 3600;

/// One direction's HPA rule: its stabilization window, its policy period, and the most pods one
/// step may move from `r` replicas.
#[derive(Clone, Copy)]
struct Rule {
    window: u32,
    period: u32,
    step: fn(u32) -> u32,
}

/// The HPA's scale-up default: no window; each 15 s, up to 4 pods or 100%, whichever is more.
const DEFAULT_UP: Rule = Rule { window: 0, period: 15, step: |r| r.max(4) };
/// A `Pods` policy of one pod: every step moves exactly one.
const ONE_POD: fn(u32) -> u32 = |_| 1;

/// Every sequence of steps from one starting state, on the sync grid, with memory.
struct Search {
    up: Rule,
    down: Rule,
    min: u32,
    max: u32,
    /// What a step up and a step down count for.
    weights: (u32, u32),
    /// The longest gap any rule asks for: waiting longer changes nothing.
    cap: u32,
    /// By (sync point, replicas, since_up, since_down), the last three in sync periods.
    memo: Vec<Option<u32>>,
}

impl Search {
    /// The most steps from second `t` to the end of the hour, with `r` replicas and the last step
    /// up and down `since_up` and `since_down` seconds ago.
    fn most(&mut self, t: u32, r: u32, since_up: u32, since_down: u32) -> u32 {
        if t > HOUR {
            return 0;
        }
        let gaps = (self.cap / SYNC + 1) as usize;
        let key = (((t / SYNC) as usize * (self.max as usize + 1) + r as usize) * gaps
            + (since_up / SYNC) as usize)
            * gaps
            + (since_down / SYNC) as usize;
        if let Some(v) = self.memo[key] {
            return v;
        }
        let (up, down, cap) = (self.up, self.down, self.cap);
        let later = |s: u32| (s + SYNC).min(cap);
        let mut best = self.most(t + SYNC, r, later(since_up), later(since_down));
        if r < self.max && since_up >= up.period && since_down >= up.window {
            for k in 1..=(up.step)(r).min(self.max - r) {
                let rest = self.most(t + SYNC, r + k, SYNC.min(cap), later(since_down));
                best = best.max(self.weights.0 + rest);
            }
        }
        if r > self.min && since_down >= down.period && since_up >= down.window {
            for k in 1..=(down.step)(r).min(r - self.min) {
                let rest = self.most(t + SYNC, r - k, later(since_up), SYNC.min(cap));
                best = best.max(self.weights.1 + rest);
            }
        }
        self.memo[key] = Some(best);
        best
    }
}

/// (steps, steps up, steps down): the most in any hour, replicas within `min..=max`, each
/// counted on its own (an hour with the most steps up need not be the one with the most down).
fn worst(up: Rule, down: Rule, min: u32, max: u32) -> (u32, u32, u32) {
    // Rounded up to the sync grid, where every step happens.
    let cap = [up.window, up.period, down.window, down.period].into_iter().max().unwrap_or(0);
    let cap = cap.div_ceil(SYNC) * SYNC;
    let gaps = (cap / SYNC + 1) as usize;
    let size = (HOUR / SYNC + 1) as usize * (max as usize + 1) * gaps * gaps;
    let most = |weights| {
        let mut s = Search { up, down, min, max, weights, cap, memo: vec![None; size] };
        // Any starting count, the last steps long ago.
        (min..=max).map(|r| s.most(0, r, cap, cap)).max().unwrap_or(0)
    };
    (most((1, 1)), most((1, 0)), most((0, 1)))
}

/// A direction of a ScaledObject's behavior, if it is one `Pods` policy of one pod.
fn rule(behavior: &serde_yaml_ng::Value, direction: &str) -> Option<Rule> {
    let r = behavior.get(direction)?;
    let policies = r.get("policies")?.as_sequence()?;
    let [p] = policies.as_slice() else { return None };
    (str_at(p, &["type"]) == Some("Pods") && int_at(p, &["value"]) == Some(1)).then_some(())?;
    Some(Rule {
        window: u32::try_from(int_at(r, &["stabilizationWindowSeconds"])?).ok()?,
        period: u32::try_from(int_at(p, &["periodSeconds"])?).ok()?,
        step: ONE_POD,
    })
}

/// How README.md words the worst case of one behavior.
fn sentence(label: &str, (steps, up, down): (u32, u32, u32)) -> String {
    format!("{label}: at most {steps} steps in any hour ({up} up, {down} down)")
}

#[test]
fn the_readme_states_the_worst_case_the_scaled_objects_allow() {
    let readme = std::fs::read_to_string(format!("{DIR}/README.md")).expect("README");
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut problems = Vec::new();
    // The scale-down the manifests had before this change, and keep: 300 s, one pod per 120 s.
    let before_down = Rule { window: 300, period: 120, step: ONE_POD };
    let mut want = vec![
        sentence("before, any lag", worst(DEFAULT_UP, before_down, 1, 6)),
        sentence("before, lag around one threshold", worst(DEFAULT_UP, before_down, 1, 2)),
    ];
    for (file, text) in files() {
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).expect("parses");
            if str_at(&doc, &["kind"]) != Some("ScaledObject") {
                continue;
            }
            let behavior =
                at(&doc, &["spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"]);
            let (Some(up), Some(down)) = (
                behavior.and_then(|b| rule(b, "scaleUp")),
                behavior.and_then(|b| rule(b, "scaleDown")),
            ) else {
                problems.push(format!("{file}: not one `Pods` policy of one pod each way"));
                continue;
            };
            let min = int_at(&doc, &["spec", "minReplicaCount"]).unwrap_or(0) as u32;
            let max = int_at(&doc, &["spec", "maxReplicaCount"]).unwrap_or(100) as u32;
            want.push(sentence("now, any lag", worst(up, down, min, max)));
            want.push(sentence("now, lag around one threshold", worst(up, down, min, min + 1)));
        }
    }
    want.sort();
    want.dedup();
    for w in want {
        if !readme.contains(&w) {
            problems.push(format!("README.md does not say \"{w}\""));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_count_matches_a_sequence_worked_by_hand() {
    // Lag swinging between 1 and 2 replicas: up at 0 s, down at 300 s (the scale-down window),
    // up at 420 s (the scale-up window), ... : 2 steps per 420 s, 9 ups (0..3360) and 9 downs.
    let up = Rule { window: 120, period: 60, step: ONE_POD };
    let down = Rule { window: 300, period: 120, step: ONE_POD };
    assert_eq!(worst(up, down, 1, 2), (18, 9, 9));
    // No windows and no periods beyond the sync: a step every 15 s, 241 sync points in an hour.
    let free = Rule { window: 0, period: 0, step: ONE_POD };
    assert_eq!(worst(free, free, 1, 2).0, 241);
}
