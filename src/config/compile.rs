//! Compiles a topology file: phase one reads every section (see [`super::section`]), phase two
//! checks the stages against each other. All problems of both phases are returned together.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::budgets;
use super::crossref;
use super::defaults as d;
use super::delivery;
use super::errors::{ConfigErrors, Errors};
use super::groups;
use super::model::{CacheSpec, KafkaSettings, RegistrySettings, TopicSpec, Topology};
use super::policy::{ModelSpec, PromptSpec, ProviderConfig};
use super::prices;
use super::providers;
use super::section::Section;
use super::semantic;
use super::stage;
use super::values::{duration, is_valid_name, is_valid_topic, limit};

/// Reads and compiles a topology file.
pub fn load(path: &Path) -> Result<Topology, ConfigErrors> {
    let mut errors = Errors::new(path.to_path_buf());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(None, "", format!("cannot read file: {e}"));
            return Err(errors.into_errors());
        }
    };
    compile(path, &text)
}

/// Compiles topology text; `path` locates errors and resolves relative file names.
pub fn compile(path: &Path, text: &str) -> Result<Topology, ConfigErrors> {
    let mut errors = Errors::new(path.to_path_buf());
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(None, "", format!("not valid YAML: {e}"));
            return Err(errors.into_errors());
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut root = Section::new(value, None, "", &mut errors);
    let pipeline: String = root.req("pipeline").unwrap_or_else(|| "pipeline".to_owned());
    if !is_valid_name(&pipeline) {
        root.error("pipeline", "may use only letters, digits, '-' and '_'");
    }
    let kafka = root.nested("kafka", kafka);
    let schema_registry = root.nested("schema_registry", |s| RegistrySettings {
        url: s.or("url", d::SCHEMA_REGISTRY_URL.to_owned()),
    });
    let providers: BTreeMap<String, ProviderConfig> = root
        .entries("providers", |name, s| providers::provider(name, &base_dir, s))
        .into_iter()
        .collect();
    let mut models: BTreeMap<String, ModelSpec> = root
        .entries("models", |name, s| {
            if name.contains('/') {
                s.error("", "model names must not contain '/' (reserved for provider/name)");
            }
            providers::model(s)
        })
        .into_iter()
        .collect();
    let prompts: BTreeMap<String, PromptSpec> =
        root.entries("prompts", providers::prompt).into_iter().collect();
    let pii = root.nested("pii", providers::pii);
    let prices = root.nested("prices", prices::prices);
    let budgets = root
        .peek("budgets")
        .is_some()
        .then(|| root.nested("budgets", |b| budgets::budgets(b, &pipeline)));
    let cache = match root.peek("cache") {
        None => None,
        Some(_) => root.nested("cache", |c| match c.or("kind", "embedded".to_owned()).as_str() {
            "embedded" => {
                let path: Option<String> = c.req("path");
                Some(CacheSpec::Embedded { path: base_dir.join(path?) })
            }
            "redis" => {
                let url: Option<String> = c.req("url");
                if url.as_ref().is_some_and(|u| !u.starts_with("redis://")) {
                    c.error("url", "write redis://host:port[/db]");
                }
                let ttl = duration(c, "ttl", d::CACHE_TTL);
                Some(CacheSpec::Redis { url: url?, ttl })
            }
            other => {
                c.error("kind", format!("unknown cache kind '{other}' (expected embedded, redis)"));
                None
            }
        }),
    };
    let inputs: Vec<TopicSpec> = root
        .entries("inputs", |name, s| {
            if !is_valid_topic(name) {
                s.error("", format!("'{name}' is not a legal Kafka topic name"));
            }
            let partitions = limit(s, "partitions", kafka.partitions as usize, 1, 100_000) as i32;
            Some(TopicSpec { name: name.to_owned(), partitions })
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let metering_topic = root.or("metering_topic", d::metering_topic(&pipeline));
    let semantic_cache_topic = root.or("semantic_cache_topic", d::semantic_cache_topic(&pipeline));
    if !is_valid_topic(&semantic_cache_topic) {
        root.error("semantic_cache_topic", "not a legal Kafka topic name");
    }
    let process_max_in_flight = root
        .nested("runtime", |s| limit(s, "max_in_flight", d::PROCESS_MAX_IN_FLIGHT, 1, 10_000_000));
    let delivery = delivery::topology_wide(&mut root);
    let mut implicit = BTreeMap::new();
    let stages: Vec<_> = root
        .stages("stages", |name, s| {
            stage::parse(name, &pipeline, &base_dir, s, &mut implicit, delivery)
        })
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    root.finish();
    let semantic_cache_topic =
        stages.iter().any(|s| s.semantic_cache.is_some()).then_some(semantic_cache_topic);
    for (alias, spec) in implicit {
        models.entry(alias).or_insert(spec);
    }

    let topology = Topology {
        file: path.to_path_buf(),
        pipeline,
        kafka,
        schema_registry,
        providers,
        models,
        prompts,
        pii,
        prices,
        cache,
        budgets,
        inputs,
        stages,
        metering_topic,
        process_max_in_flight,
        semantic_cache_topic,
    };
    cross_check(&topology, &mut errors);
    crossref::models(&topology, &mut errors);
    errors.into_result(topology)
}

fn kafka(s: &mut Section<'_>) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: s.or("bootstrap_servers", d::BOOTSTRAP_SERVERS.to_owned()),
        properties: s.or("properties", BTreeMap::new()),
        consumer: s.or("consumer", BTreeMap::new()),
        producer: s.or("producer", BTreeMap::new()),
        partitions: limit(s, "partitions", d::PARTITIONS as usize, 1, 100_000) as i32,
        replication_factor: limit(s, "replication_factor", d::REPLICATION_FACTOR as usize, 1, 100)
            as i32,
    }
}

/// Phase two: checks that need the whole file.
fn cross_check(t: &Topology, errors: &mut Errors) {
    groups::check(t, errors);
    delivery::check(t, errors);
    // Who writes each topic: external inputs and stage outputs.
    let mut writers: HashMap<&str, Vec<String>> = HashMap::new();
    for input in &t.inputs {
        writers.entry(&input.name).or_default().push("an external input".to_owned());
    }
    for s in &t.stages {
        for topic in s.output_topics() {
            writers.entry(topic).or_default().push(format!(
                "stage '{}' ({})",
                s.name,
                s.kind.name()
            ));
        }
    }
    for (topic, w) in &writers {
        if w.len() > 1 {
            errors.push(
                None,
                "stages",
                format!("topic '{topic}' is written by more than one source: {}", w.join(", ")),
            );
        }
    }
    let mut groups: HashMap<&str, &str> = HashMap::new();
    for s in &t.stages {
        let stage = Some(s.name.as_str());
        if !writers.contains_key(s.input.as_str()) {
            errors.push(
                stage,
                "input",
                format!(
                    "topic '{}' is written by no stage and is not declared under 'inputs'",
                    s.input
                ),
            );
        }
        if s.output_topics().contains(&s.input.as_str()) {
            errors.push(stage, "output", "a stage must not write to its own input topic");
        }
        if let Some(other) = groups.insert(&s.group, &s.name) {
            errors.push(
                stage,
                "group",
                format!("consumer group '{}' is also used by stage '{other}'", s.group),
            );
        }
        crossref::stage_models(t, s, errors);
        semantic::check(t, s, errors);
        if s.concurrency.max_in_flight > t.process_max_in_flight {
            errors.push(
                stage,
                "concurrency.max_in_flight",
                format!("exceeds runtime.max_in_flight ({})", t.process_max_in_flight),
            );
        }
    }
}
