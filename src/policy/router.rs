//! Routing: which logical model serves a record, from rules on its classification, tenant,
//! size and metadata; and the deterministic A/B split between two prompt versions.

use std::collections::BTreeMap;

use crate::call::stable_hash;
use crate::config::{Condition, ModelChoice};

/// What routing rules can look at.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub label: Option<&'a str>,
    pub tenant: &'a str,
    pub tokens: usize,
    pub metadata: &'a BTreeMap<String, String>,
}

/// The first route whose condition holds, else the default.
pub fn choose<'c>(choice: &'c ModelChoice, input: &RouteInput<'_>) -> &'c str {
    choice
        .routes
        .iter()
        .find(|r| matches(&r.when, input))
        .map_or(choice.default.as_str(), |r| r.model.as_str())
}

fn matches(c: &Condition, input: &RouteInput<'_>) -> bool {
    let label_ok =
        c.labels.is_empty() || input.label.is_some_and(|l| c.labels.iter().any(|x| x == l));
    let tenant_ok = c.tenants.is_empty() || c.tenants.iter().any(|t| t == input.tenant);
    let min_ok = c.min_tokens.is_none_or(|m| input.tokens >= m);
    let max_ok = c.max_tokens.is_none_or(|m| input.tokens <= m);
    let meta_ok = c
        .metadata
        .iter()
        .all(|(k, values)| input.metadata.get(k).is_some_and(|v| values.iter().any(|x| x == v)));
    label_ok && tenant_ok && min_ok && max_ok && meta_ok
}

/// Whether `document_id` falls in the `weight` share of an A/B split. Deterministic, so a
/// replayed or retried document always gets the same variant.
pub fn in_variant(document_id: &str, salt: &str, weight: f64) -> bool {
    let h = stable_hash(&[b"ab", salt.as_bytes(), document_id.as_bytes()]);
    ((h >> 11) as f64 / (1u64 << 53) as f64) < weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Route;

    fn choice() -> ModelChoice {
        ModelChoice {
            default: "small".into(),
            routes: vec![
                Route {
                    when: Condition { labels: vec!["legal".into()], ..Default::default() },
                    model: "large".into(),
                },
                Route {
                    when: Condition { min_tokens: Some(500), ..Default::default() },
                    model: "large".into(),
                },
                Route {
                    when: Condition {
                        metadata: [("priority".to_owned(), vec!["high".to_owned()])].into(),
                        tenants: vec!["acme".into()],
                        ..Default::default()
                    },
                    model: "fast".into(),
                },
            ],
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let meta = BTreeMap::new();
        let high: BTreeMap<String, String> = [("priority".into(), "high".into())].into();
        let input =
            |label, tenant, tokens, metadata| RouteInput { label, tenant, tokens, metadata };
        let c = choice();
        assert_eq!(choose(&c, &input(Some("billing"), "t", 20, &meta)), "small");
        assert_eq!(choose(&c, &input(Some("legal"), "t", 20, &meta)), "large");
        assert_eq!(choose(&c, &input(None, "t", 900, &meta)), "large");
        assert_eq!(choose(&c, &input(None, "acme", 20, &high)), "fast");
        assert_eq!(choose(&c, &input(None, "other", 20, &high)), "small");
    }

    #[test]
    fn ab_split_is_deterministic_and_near_its_weight() {
        let n = 20_000;
        let hits = (0..n).filter(|i| in_variant(&format!("doc-{i}"), "answer@4", 0.2)).count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.01, "share {share}");
        assert_eq!(in_variant("doc-7", "answer@4", 0.2), in_variant("doc-7", "answer@4", 0.2));
        assert!(!in_variant("doc-7", "answer@4", 0.0));
        assert!(in_variant("doc-7", "answer@4", 1.0));
    }
}
