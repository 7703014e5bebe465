//! Phase one for the policy plane: `providers:`, `models:`, `prompts:`, `pii:` and the model
//! choice of a stage (a default model and routing rules). Prices are in [`super::prices`].

use std::collections::BTreeMap;
use std::path::Path;

use super::defaults as d;
use super::policy::{
    BreakerSpec, Condition, HttpSpec, ModelChoice, ModelSpec, PiiSpec, PromptSpec, ProviderConfig,
    ProviderSpec, RateLimit, Route, SecretSource, SimulatedSpec, PROMPT_PLACEHOLDERS,
};
use super::section::Section;
use super::values::{duration, fraction, is_valid_name, limit};

pub const PROVIDER_KINDS: &str = "simulated, openai, anthropic";

pub fn provider(name: &str, base_dir: &Path, s: &mut Section<'_>) -> Option<ProviderConfig> {
    if !is_valid_name(name) {
        s.error("", "provider names may use only letters, digits, '-' and '_'");
    }
    let kind: Option<String> = s.req("kind");
    let timeout = duration(s, "timeout", d::PROVIDER_TIMEOUT);
    let limits: BTreeMap<String, RateLimit> =
        s.entries("limits", |_, l| rate_limit(l)).into_iter().collect();
    let breaker = s.nested("breaker", breaker);
    let spec = match kind?.as_str() {
        "simulated" => ProviderSpec::Simulated(SimulatedSpec {
            latency: duration(s, "latency", d::SIM_LATENCY),
            jitter: duration(s, "jitter", std::time::Duration::ZERO),
            failure_rate: fraction(s, "failure_rate"),
            rate_limit_rate: fraction(s, "rate_limit_rate"),
            retry_after: duration(s, "retry_after", d::SIM_RETRY_AFTER),
            embedding_dim: limit(s, "embedding_dim", d::SIM_EMBEDDING_DIM, 1, 16384),
        }),
        "openai" => ProviderSpec::OpenAi(http(s, base_dir, HttpApi::OpenAi)),
        "anthropic" => ProviderSpec::Anthropic(http(s, base_dir, HttpApi::Anthropic)),
        other => {
            s.error(
                "kind",
                format!("unknown provider kind '{other}' (expected one of: {PROVIDER_KINDS})"),
            );
            return None;
        }
    };
    Some(ProviderConfig { spec, timeout, limits, breaker })
}

/// The HTTP APIs sluice speaks, for the settings only one of them has. Every match on it names
/// each API, so a new provider kind has to decide its defaults rather than inherit another's.
#[derive(Clone, Copy)]
enum HttpApi {
    OpenAi,
    Anthropic,
}

/// Headers that carry credentials in some provider's API: never set inline.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

fn http(s: &mut Section<'_>, base_dir: &Path, api: HttpApi) -> HttpSpec {
    let default_url = match api {
        HttpApi::OpenAi => d::OPENAI_BASE_URL,
        HttpApi::Anthropic => d::ANTHROPIC_BASE_URL,
    };
    let base_url: String = s.or("base_url", default_url.to_owned());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        s.error("base_url", format!("'{base_url}' must start with http:// or https://"));
    }
    let api_key = secret(s, "api_key", base_dir);
    let headers: BTreeMap<String, String> = s.or("headers", BTreeMap::new());
    for name in headers.keys() {
        let lower = name.to_ascii_lowercase();
        if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
            s.error(
                &format!("headers.{name}"),
                "credentials never go inline: use api_key_env or api_key_file",
            );
        }
    }
    let (azure_api_version, anthropic_version, embedding_dimensions) = match api {
        HttpApi::OpenAi => {
            (s.opt("azure_api_version"), String::new(), s.opt("embedding_dimensions"))
        }
        HttpApi::Anthropic => {
            (None, s.or("anthropic_version", d::ANTHROPIC_VERSION.to_owned()), None)
        }
    };
    let model_names = s.or("model_names", BTreeMap::new());
    HttpSpec {
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        headers,
        azure_api_version,
        anthropic_version,
        model_names,
        embedding_dimensions,
    }
}

/// `<key>_env` (a variable name) or `<key>_file` (a path); an inline `<key>` is an error.
pub fn secret(s: &mut Section<'_>, key: &str, base_dir: &Path) -> Option<SecretSource> {
    if s.opt::<serde_yaml_ng::Value>(key).is_some() {
        s.error(key, format!("secrets never go inline: use {key}_env or {key}_file"));
    }
    let env: Option<String> = s.opt(&format!("{key}_env"));
    let file: Option<String> = s.opt(&format!("{key}_file"));
    match (env, file) {
        (Some(_), Some(_)) => {
            s.error(&format!("{key}_file"), format!("give {key}_env or {key}_file, not both"));
            None
        }
        (Some(var), None) => Some(SecretSource::Env(var)),
        (None, Some(path)) => Some(SecretSource::File(base_dir.join(path))),
        (None, None) => None,
    }
}

fn rate_limit(s: &mut Section<'_>) -> Option<RateLimit> {
    let rps: Option<f64> = s.opt("requests_per_second");
    let rpm: Option<f64> = s.opt("requests_per_minute");
    let requests_per_second = match (rps, rpm) {
        (Some(_), Some(_)) => {
            s.error("requests_per_minute", "give requests_per_second or _per_minute, not both");
            None
        }
        (Some(r), None) => Some(r),
        (None, Some(r)) => Some(r / 60.0),
        (None, None) => None,
    };
    if requests_per_second.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        s.error("requests_per_second", "must be greater than zero");
    }
    // Default: 50 ms worth of requests (at least one), enough to absorb timer jitter without
    // bursting past a server that allows a second's worth.
    let default_burst = requests_per_second.map_or(1, |r| (r / 20.0).floor().max(1.0) as usize);
    let burst = limit(s, "burst", default_burst, 1, 1_000_000) as u32;
    let tokens_per_minute = s.opt::<u64>("tokens_per_minute");
    if tokens_per_minute == Some(0) {
        s.error("tokens_per_minute", "must be greater than zero");
    }
    Some(RateLimit { requests_per_second, burst, tokens_per_minute })
}

fn breaker(s: &mut Section<'_>) -> BreakerSpec {
    let error_rate = s.opt::<f64>("error_rate").unwrap_or(d::BREAKER_ERROR_RATE);
    if !(0.0..=1.0).contains(&error_rate) || error_rate == 0.0 {
        s.error("error_rate", format!("must be in (0, 1], got {error_rate}"));
    }
    BreakerSpec {
        consecutive_failures: limit(s, "consecutive_failures", d::BREAKER_CONSECUTIVE, 1, 10_000)
            as u32,
        error_rate,
        window: limit(s, "window", d::BREAKER_WINDOW, 2, 100_000) as u32,
        cool_down: duration(s, "cool_down", d::BREAKER_COOL_DOWN),
    }
}

pub fn model(s: &mut Section<'_>) -> Option<ModelSpec> {
    let provider: Option<String> = s.req("provider");
    let name: Option<String> = s.req("name");
    let fallbacks: Vec<String> = s.or("fallbacks", Vec::new());
    let context_window = limit(s, "context_window", d::CONTEXT_WINDOW, 256, 100_000_000);
    Some(ModelSpec { provider: provider?, name: name?, fallbacks, context_window })
}

/// A model reference: a name from `models:`, or an inline `{ provider, name }` which is added to
/// `implicit` as `provider/name`.
pub fn model_ref(
    s: &mut Section<'_>,
    key: &str,
    implicit: &mut BTreeMap<String, ModelSpec>,
) -> Option<String> {
    match s.peek(key) {
        None => None,
        Some(serde_yaml_ng::Value::String(_)) => s.opt(key),
        Some(_) => {
            let spec = s.nested(key, model)?;
            let alias = format!("{}/{}", spec.provider, spec.name);
            implicit.entry(alias.clone()).or_insert(spec);
            Some(alias)
        }
    }
}

/// `model:` plus optional `routes:` of a stage.
pub fn model_choice(
    s: &mut Section<'_>,
    implicit: &mut BTreeMap<String, ModelSpec>,
) -> Option<ModelChoice> {
    let default = model_ref(s, "model", implicit);
    let routes = s.list("routes", |r| {
        let model = model_ref(r, "model", implicit);
        if model.is_none() && r.peek("model").is_none() {
            r.error("model", "missing required field");
        }
        let when = r.nested("when", condition);
        Some(Route { when, model: model? })
    });
    if default.is_none() && !routes.is_empty() {
        s.error("model", "routes need a default model for records no route matches");
    }
    Some(ModelChoice { default: default?, routes })
}

fn condition(s: &mut Section<'_>) -> Condition {
    let mut metadata: BTreeMap<String, Vec<String>> = s.or("metadata", BTreeMap::new());
    if let Some(p) = s.opt::<Vec<String>>("priority") {
        metadata.insert("priority".into(), p);
    }
    Condition {
        labels: s.or("labels", Vec::new()),
        tenants: s.or("tenants", Vec::new()),
        min_tokens: s.opt("min_tokens"),
        max_tokens: s.opt("max_tokens"),
        metadata,
    }
}

pub fn prompt(name: &str, s: &mut Section<'_>) -> Option<PromptSpec> {
    if name.split_once('@').is_none_or(|(n, v)| n.is_empty() || v.is_empty()) {
        s.error("", "name prompt templates as name@version, e.g. answer@3");
    }
    let system: String = s.or("system", String::new());
    let user: Option<String> = s.req("user");
    for (field, text) in [("system", Some(&system)), ("user", user.as_ref())] {
        for p in placeholders(text.map_or("", |t| t)) {
            if !PROMPT_PLACEHOLDERS.contains(&p) {
                s.error(
                    field,
                    format!(
                        "unknown placeholder {{{{{p}}}}} (known: {})",
                        PROMPT_PLACEHOLDERS.join(", ")
                    ),
                );
            }
        }
    }
    Some(PromptSpec { system, user: user? })
}

/// The names inside `{{ }}` in a template.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        out.push(rest[start + 2..start + 2 + len].trim());
        rest = &rest[start + 2 + len + 2..];
    }
    out
}

pub fn pii(s: &mut Section<'_>) -> PiiSpec {
    let patterns: BTreeMap<String, String> = s.or("patterns", BTreeMap::new());
    for (name, pattern) in &patterns {
        if let Err(e) = regex::Regex::new(pattern) {
            s.error(&format!("patterns.{name}"), format!("not a valid regular expression: {e}"));
        }
    }
    PiiSpec { patterns, redact_side_outputs: s.or("redact_side_outputs", true) }
}
