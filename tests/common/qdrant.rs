//! A Qdrant stand-in speaking the subset of its REST API sluice uses (collection info and
//! creation, upsert, search, count), with exact dot-product search. No Qdrant binary can be
//! installed on the build machines; this keeps the client's requests and parsing on a socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Collection {
    size: usize,
    points: BTreeMap<String, (Vec<f32>, Value)>,
}

type Shared = Arc<Mutex<BTreeMap<String, Collection>>>;

fn ok(result: Value) -> (StatusCode, Json<Value>) {
    (StatusCode::OK, Json(json!({ "result": result, "status": "ok", "time": 0.0001 })))
}

fn not_found(name: &str) -> (StatusCode, Json<Value>) {
    let error = format!("Not found: Collection `{name}` doesn't exist!");
    (StatusCode::NOT_FOUND, Json(json!({ "status": { "error": error }, "time": 0.0001 })))
}

async fn info(State(s): State<Shared>, Path(name): Path<String>) -> (StatusCode, Json<Value>) {
    let s = s.lock().expect("lock");
    match s.get(&name) {
        None => not_found(&name),
        Some(c) => ok(json!({
            "status": "green",
            "points_count": c.points.len(),
            "config": { "params": { "vectors": { "size": c.size, "distance": "Dot" } } },
        })),
    }
}

async fn create(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let size = body.pointer("/vectors/size").and_then(Value::as_u64).unwrap_or(0) as usize;
    s.lock().expect("lock").insert(name, Collection { size, points: BTreeMap::new() });
    ok(json!(true))
}

async fn upsert(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().expect("lock");
    let Some(c) = s.get_mut(&name) else { return not_found(&name) };
    for p in body["points"].as_array().cloned().unwrap_or_default() {
        let id = p["id"].as_str().expect("uuid id").to_owned();
        let vector: Vec<f32> = serde_json::from_value(p["vector"].clone()).expect("vector");
        if vector.len() != c.size {
            let error = format!(
                "Wrong input: Vector dimension error: expected dim: {}, got {}",
                c.size,
                vector.len()
            );
            return (StatusCode::BAD_REQUEST, Json(json!({ "status": { "error": error } })));
        }
        c.points.insert(id, (vector, p["payload"].clone()));
    }
    ok(json!({ "operation_id": 1, "status": "completed" }))
}

async fn search(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let s = s.lock().expect("lock");
    let Some(c) = s.get(&name) else { return not_found(&name) };
    let q: Vec<f32> = serde_json::from_value(body["vector"].clone()).expect("vector");
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    let mut hits: Vec<(f32, &String, &Value)> = c
        .points
        .iter()
        .map(|(id, (v, payload))| (v.iter().zip(&q).map(|(a, b)| a * b).sum(), id, payload))
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0));
    let result: Vec<Value> = hits
        .into_iter()
        .take(limit)
        .map(|(score, id, payload)| json!({ "id": id, "version": 0, "score": score, "payload": payload }))
        .collect();
    ok(json!(result))
}

async fn count(State(s): State<Shared>, Path(name): Path<String>) -> (StatusCode, Json<Value>) {
    let s = s.lock().expect("lock");
    match s.get(&name) {
        None => not_found(&name),
        Some(c) => ok(json!({ "count": c.points.len() })),
    }
}

/// Serves on a free loopback port; returns the base URL.
pub async fn serve() -> String {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/collections/{name}", get(info).put(create))
        .route("/collections/{name}/points", put(upsert))
        .route("/collections/{name}/points/search", post(search))
        .route("/collections/{name}/points/count", post(count))
        .with_state(state);
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}
