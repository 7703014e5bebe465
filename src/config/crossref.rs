//! Phase two for the policy plane: every model, provider and prompt a stage names exists,
//! fallback chains end, and dimensions agree where the configuration can tell.

use std::collections::BTreeSet;

use super::errors::Errors;
use super::model::{StageKindSpec, StageSpec, Topology};
use super::policy::ProviderSpec;

/// Checks `models:` (including the implicit `provider/name` entries of inline references).
pub fn models(t: &Topology, errors: &mut Errors) {
    if let Some(route) = t.budgets.as_ref().and_then(|b| b.route_to.as_ref()) {
        if !t.models.contains_key(route) {
            errors.push(None, "budgets.route_to", unknown_model(t, route));
        } else if !t.prices.models.contains_key(route) {
            errors.push(None, "budgets.route_to", format!("model '{route}' has no price"));
        }
    }
    for (alias, m) in &t.models {
        let field = format!("models.{alias}");
        // Inline `{ provider, name }` references are checked where the stage names them.
        if !alias.contains('/') && !t.providers.contains_key(&m.provider) {
            errors.push(None, format!("{field}.provider"), unknown_provider(t, &m.provider));
        }
        for f in &m.fallbacks {
            if !t.models.contains_key(f) {
                errors.push(None, format!("{field}.fallbacks"), unknown_model(t, f));
            }
        }
        if let Some(cycle) = fallback_cycle(t, alias) {
            errors.push(
                None,
                format!("{field}.fallbacks"),
                format!("fallback chain loops: {}", cycle.join(" → ")),
            );
        }
    }
}

/// Follows fallbacks depth-first from `start`; returns the path if it comes back to a model
/// already on it.
fn fallback_cycle(t: &Topology, start: &str) -> Option<Vec<String>> {
    fn walk(t: &Topology, at: &str, path: &mut Vec<String>) -> bool {
        if path.iter().any(|p| p == at) {
            path.push(at.to_owned());
            return true;
        }
        path.push(at.to_owned());
        for f in t.models.get(at).map(|m| m.fallbacks.as_slice()).unwrap_or_default() {
            if walk(t, f, path) {
                return true;
            }
        }
        path.pop();
        false
    }
    let mut path = Vec::new();
    (walk(t, start, &mut path) && path.first().map(String::as_str) == Some(start)).then_some(path)
}

/// Checks what one stage names: its models, prompts and the vector dimensions it expects.
pub fn stage_models(t: &Topology, s: &StageSpec, errors: &mut Errors) {
    let stage = Some(s.name.as_str());
    let mut named: Vec<(String, &str)> = Vec::new();
    if let Some(choice) = &s.model {
        named.push(("model".into(), &choice.default));
        for (i, r) in choice.routes.iter().enumerate() {
            named.push((format!("routes[{i}].model"), &r.model));
        }
    }
    let needs_model = match &s.kind {
        StageKindSpec::Classify { rules, prompt, .. } => {
            if let Some(p) = prompt.as_ref().filter(|p| !t.prompts.contains_key(*p)) {
                errors.push(stage, "classify.prompt", unknown_prompt(t, p));
            }
            rules.is_empty()
        }
        StageKindSpec::Review { judge, .. } => {
            if let Some(j) = judge {
                named.push(("review.judge.model".into(), &j.model));
            }
            false
        }
        StageKindSpec::Generate { prompt, ab, .. } => {
            for (field, p) in [
                ("generate.prompt", Some(prompt)),
                ("generate.ab.prompt", ab.as_ref().map(|a| &a.prompt)),
            ] {
                if let Some(p) = p.filter(|p| !t.prompts.contains_key(*p)) {
                    errors.push(stage, field, unknown_prompt(t, p));
                }
            }
            true
        }
        StageKindSpec::Embed { .. } | StageKindSpec::Retrieve { .. } => true,
    };
    if needs_model && s.model.is_none() {
        errors.push(stage, "model", format!("{} stages call a model: name one", s.kind.name()));
    }
    for (field, alias) in &named {
        match t.models.get(*alias) {
            None => errors.push(stage, field.clone(), unknown_model(t, alias)),
            Some(m) if alias.contains('/') && !t.providers.contains_key(&m.provider) => {
                errors.push(stage, format!("{field}.provider"), unknown_provider(t, &m.provider))
            }
            Some(_) => {}
        }
    }
    // Every model a call can end up on has a price (simulated ones cost nothing unless priced).
    for (field, alias) in &named {
        for m in chain(t, alias) {
            let Some(spec) = t.models.get(&m) else { continue };
            // An unknown provider is reported already.
            let Some(provider) = t.providers.get(&spec.provider) else { continue };
            let simulated = matches!(provider.spec, ProviderSpec::Simulated(_));
            if !simulated && !t.prices.models.contains_key(&m) {
                errors.push(
                    stage,
                    field.clone(),
                    format!("model '{m}' has no price: add it under prices.models (a missing price is never taken as zero)"),
                );
            }
        }
    }
    let embeds = s.kind.vector_dimensions().is_some();
    if embeds && s.model.as_ref().is_some_and(|c| !c.routes.is_empty()) {
        errors.push(
            stage,
            "routes",
            "embedding stages cannot route: vectors of different models are not comparable",
        );
    }
    if let (true, Some(choice)) = (embeds, &s.model) {
        for alias in chain(t, &choice.default) {
            let provider = t.models.get(&alias).and_then(|m| t.providers.get(&m.provider));
            if provider.is_some_and(|p| matches!(p.spec, ProviderSpec::Anthropic(_))) {
                errors.push(
                    stage,
                    "model",
                    format!(
                        "model '{alias}' is on an anthropic provider, which has no embeddings API"
                    ),
                );
            }
        }
    }
    let dims = s.kind.vector_dimensions().map(|d| (format!("{}.dimensions", s.kind.name()), d));
    if let (Some((field, dims)), Some(choice)) = (dims, &s.model) {
        for alias in chain(t, &choice.default) {
            let Some(m) = t.models.get(&alias) else { continue };
            if let Some(ProviderSpec::Simulated(sim)) =
                t.providers.get(&m.provider).map(|p| &p.spec)
            {
                if sim.embedding_dim != dims {
                    errors.push(
                        stage,
                        field.clone(),
                        format!(
                            "model '{alias}' on provider '{}' returns {}-dimensional vectors",
                            m.provider, sim.embedding_dim
                        ),
                    );
                }
            }
        }
    }
}

/// A model and every fallback reachable from it, each once.
pub fn chain(t: &Topology, start: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stack = vec![start.to_owned()];
    while let Some(m) = stack.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        if let Some(spec) = t.models.get(&m) {
            stack.extend(spec.fallbacks.iter().rev().cloned());
        }
        out.push(m);
    }
    out
}

fn unknown_provider(t: &Topology, name: &str) -> String {
    let known: Vec<&str> = t.providers.keys().map(String::as_str).collect();
    format!("unknown provider '{name}' (declared: {})", list(&known))
}

fn unknown_prompt(t: &Topology, name: &str) -> String {
    let known: Vec<&str> = t.prompts.keys().map(String::as_str).collect();
    format!("unknown prompt '{name}' (declared: {})", list(&known))
}

pub(super) fn unknown_model(t: &Topology, name: &str) -> String {
    let known: Vec<&str> =
        t.models.keys().map(String::as_str).filter(|k| !k.contains('/')).collect();
    format!("unknown model '{name}' (declared under models: {})", list(&known))
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
