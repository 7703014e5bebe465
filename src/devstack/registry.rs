//! A development schema registry speaking the subset of Confluent Schema Registry's REST API that
//! schema_registry_converter and Confluent's client libraries use: register, look up a schema
//! under a subject, fetch by id, versions and latest, list subjects, compatibility checks and the
//! compatibility level. In memory, for `sluice dev`, `sluice demo` and tests only: production
//! points at Confluent Schema Registry, Karapace, Redpanda or Apicurio.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct Store {
    /// Canonical schema text per id (ids start at 1).
    schemas: Vec<(String, Schema)>,
    /// Subject → ids of its versions, oldest first.
    subjects: BTreeMap<String, Vec<u32>>,
    /// Global compatibility level and per-subject overrides.
    level: String,
    subject_levels: BTreeMap<String, String>,
}

type Shared = Arc<Mutex<Store>>;

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct LevelBody {
    compatibility: String,
}

/// A running registry; dropping the handle does not stop it (it lives as long as the runtime).
pub struct DevRegistry {
    pub addr: SocketAddr,
    outage: Arc<Outage>,
}

/// The simulated outage switch, and how many requests it refused.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    refused: AtomicU64,
}

impl DevRegistry {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Simulates an outage: while unavailable, every request is answered 503.
    pub fn set_available(&self, available: bool) {
        self.outage.down.store(!available, Ordering::SeqCst);
    }

    /// How many requests a simulated outage has refused so far: a test can wait until a client
    /// actually met the outage before asserting what it did about it.
    pub fn refused_requests(&self) -> u64 {
        self.outage.refused.load(Ordering::SeqCst)
    }
}

async fn outage(State(outage): State<Arc<Outage>>, request: Request, next: Next) -> Response {
    if outage.down.load(Ordering::SeqCst) {
        outage.refused.fetch_add(1, Ordering::SeqCst);
        error(StatusCode::SERVICE_UNAVAILABLE, 50301, "registry unavailable (simulated outage)")
    } else {
        next.run(request).await
    }
}

/// Serves the registry on `addr` (port 0 picks a free one) on the current tokio runtime.
pub async fn serve(addr: SocketAddr) -> std::io::Result<DevRegistry> {
    let store: Shared =
        Arc::new(Mutex::new(Store { level: "BACKWARD".into(), ..Store::default() }));
    let outage_state = Arc::new(Outage::default());
    let app = Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_compatibility))
        .route("/config", get(get_level).put(put_level))
        .route("/config/{subject}", get(get_subject_level).put(put_subject_level))
        .with_state(store)
        .layer(axum::middleware::from_fn_with_state(outage_state.clone(), outage));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "dev schema registry stopped");
        }
    });
    Ok(DevRegistry { addr, outage: outage_state })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    reply(status, json!({ "error_code": code, "message": message.into() }))
}

/// The schema in a request body, or the 422 answer Confluent gives for a bad one.
fn parse(body: &SchemaBody) -> Result<Schema, String> {
    if let Some(t) = body.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return Err(format!("schema type {t} is not supported by the dev registry"));
    }
    Schema::parse_str(&body.schema).map_err(|e| format!("invalid Avro schema: {e}"))
}

impl Store {
    fn level_of(&self, subject: &str) -> &str {
        self.subject_levels.get(subject).unwrap_or(&self.level)
    }

    fn id_of(&self, canonical: &str) -> Option<u32> {
        self.schemas.iter().position(|(c, _)| c == canonical).map(|i| i as u32 + 1)
    }

    fn schema(&self, id: u32) -> Option<&(String, Schema)> {
        self.schemas.get((id as usize).checked_sub(1)?)
    }

    /// Problems that keep `new` from joining `subject` under its compatibility level.
    fn incompatibilities(&self, subject: &str, new: &Schema, only_latest: bool) -> Vec<String> {
        let level = self.level_of(subject).to_owned();
        let ids = self.subjects.get(subject).cloned().unwrap_or_default();
        let against: Vec<u32> = if level.ends_with("_TRANSITIVE") || !only_latest {
            ids
        } else {
            ids.last().copied().into_iter().collect()
        };
        let mut problems = Vec::new();
        for id in against {
            let old = &self.schema(id).expect("registered ids exist").1;
            let backward = || SchemaCompatibility::can_read(old, new).err();
            let forward = || SchemaCompatibility::can_read(new, old).err();
            let errs = match level.trim_end_matches("_TRANSITIVE") {
                "BACKWARD" => vec![backward()],
                "FORWARD" => vec![forward()],
                "FULL" => vec![backward(), forward()],
                _ => vec![],
            };
            problems.extend(errs.into_iter().flatten().map(|e| format!("against id {id}: {e}")));
        }
        problems
    }
}

async fn list_subjects(State(s): State<Shared>) -> Response {
    let store = s.lock().expect("registry lock");
    reply(StatusCode::OK, json!(store.subjects.keys().collect::<Vec<_>>()))
}

async fn list_versions(State(s): State<Shared>, Path(subject): Path<String>) -> Response {
    let store = s.lock().expect("registry lock");
    match store.subjects.get(&subject) {
        Some(ids) => reply(StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found.")),
    }
}

async fn get_version(
    State(s): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let store = s.lock().expect("registry lock");
    let Some(ids) = store.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    };
    let index = match version.as_str() {
        "latest" | "-1" => ids.len(),
        v => match v.parse::<usize>() {
            Ok(n) if (1..=ids.len()).contains(&n) => n,
            _ => return error(StatusCode::NOT_FOUND, 40402, format!("Version {v} not found.")),
        },
    };
    let id = ids[index - 1];
    let schema = &store.schema(id).expect("registered ids exist").0;
    reply(
        StatusCode::OK,
        json!({ "subject": subject, "version": index, "id": id, "schema": schema }),
    )
}

async fn register(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Json(body): Json<SchemaBody>,
) -> Response {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message),
    };
    let canonical = parsed.canonical_form();
    let mut store = s.lock().expect("registry lock");
    if let Some(id) = store.id_of(&canonical) {
        if store.subjects.get(&subject).is_some_and(|ids| ids.contains(&id)) {
            return reply(StatusCode::OK, json!({ "id": id }));
        }
    }
    let problems = store.incompatibilities(&subject, &parsed, true);
    if !problems.is_empty() {
        let level = store.level_of(&subject).to_owned();
        return error(StatusCode::CONFLICT, 409, format!("Schema being registered is incompatible with an earlier schema for subject '{subject}' ({level}): {}", problems.join("; ")));
    }
    let id = match store.id_of(&canonical) {
        Some(id) => id,
        None => {
            store.schemas.push((canonical, parsed));
            store.schemas.len() as u32
        }
    };
    store.subjects.entry(subject).or_default().push(id);
    reply(StatusCode::OK, json!({ "id": id }))
}

async fn lookup(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Json(body): Json<SchemaBody>,
) -> Response {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message),
    };
    let store = s.lock().expect("registry lock");
    let Some(ids) = store.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    };
    let found = store
        .id_of(&parsed.canonical_form())
        .and_then(|id| ids.iter().position(|i| *i == id).map(|v| (id, v + 1)));
    match found {
        Some((id, version)) => reply(
            StatusCode::OK,
            json!({ "subject": subject, "id": id, "version": version, "schema": store.schema(id).expect("exists").0 }),
        ),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn get_by_id(State(s): State<Shared>, Path(id): Path<u32>) -> Response {
    let store = s.lock().expect("registry lock");
    match store.schema(id) {
        Some((text, _)) => reply(StatusCode::OK, json!({ "schema": text })),
        None => error(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found")),
    }
}

async fn check_compatibility(
    State(s): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Json(body): Json<SchemaBody>,
) -> Response {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message),
    };
    let store = s.lock().expect("registry lock");
    let problems = store.incompatibilities(&subject, &parsed, version == "latest");
    reply(StatusCode::OK, json!({ "is_compatible": problems.is_empty(), "messages": problems }))
}

async fn get_level(State(s): State<Shared>) -> Response {
    reply(StatusCode::OK, json!({ "compatibilityLevel": s.lock().expect("registry lock").level }))
}

async fn put_level(State(s): State<Shared>, Json(body): Json<LevelBody>) -> Response {
    match valid_level(&body.compatibility) {
        Some(level) => {
            s.lock().expect("registry lock").level = level.clone();
            reply(StatusCode::OK, json!({ "compatibility": level }))
        }
        None => error(StatusCode::UNPROCESSABLE_ENTITY, 42203, "Invalid compatibility level"),
    }
}

async fn get_subject_level(State(s): State<Shared>, Path(subject): Path<String>) -> Response {
    reply(
        StatusCode::OK,
        json!({ "compatibilityLevel": s.lock().expect("registry lock").level_of(&subject) }),
    )
}

async fn put_subject_level(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Json(body): Json<LevelBody>,
) -> Response {
    match valid_level(&body.compatibility) {
        Some(level) => {
            s.lock().expect("registry lock").subject_levels.insert(subject, level.clone());
            reply(StatusCode::OK, json!({ "compatibility": level }))
        }
        None => error(StatusCode::UNPROCESSABLE_ENTITY, 42203, "Invalid compatibility level"),
    }
}

fn valid_level(level: &str) -> Option<String> {
    let level = level.to_ascii_uppercase();
    const LEVELS: [&str; 7] = [
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    ];
    LEVELS.contains(&level.as_str()).then_some(level)
}
