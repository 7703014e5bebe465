//! Qdrant over its REST API: the collection is created (dot-product distance) when missing;
//! passages are points whose payload holds the passage, with a UUID derived from the passage id.

use serde_json::{json, Value};

use super::{Entry, StoreError};
use crate::avro::Passage;
use crate::call::stable_hash;
use crate::config::SecretSource;
use crate::provider::http;

pub struct Qdrant {
    base: String,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
}

impl Qdrant {
    pub async fn open(
        url: &str,
        collection: &str,
        api_key: Option<&SecretSource>,
        dimensions: usize,
    ) -> Result<Self, StoreError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(source) = api_key {
            let key = http::load_secret(source).map_err(StoreError::Credentials)?;
            http::insert_secret(&mut headers, "api-key", key.expose())
                .map_err(StoreError::Credentials)?;
        }
        let store = Self {
            base: format!("{url}/collections/{collection}"),
            client: http::client(std::time::Duration::from_secs(30)),
            headers,
        };
        match store.request(reqwest::Method::GET, "", None).await {
            Ok(info) => {
                let size =
                    info.pointer("/result/config/params/vectors/size").and_then(Value::as_u64);
                if size.is_some_and(|s| s as usize != dimensions) {
                    return Err(StoreError::Invalid(format!(
                        "collection '{collection}' holds {}-dimensional vectors, the stage expects \
                         {dimensions}",
                        size.unwrap_or_default()
                    )));
                }
            }
            Err(StoreError::Invalid(e)) if e.contains("404") => {
                let body = json!({ "vectors": { "size": dimensions, "distance": "Dot" } });
                store.request(reqwest::Method::PUT, "", Some(body)).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, StoreError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .headers(self.headers.clone());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| StoreError::Unavailable(format!("qdrant: {e}")))?;
        let status = resp.status();
        let text =
            resp.text().await.map_err(|e| StoreError::Unavailable(format!("qdrant: {e}")))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(StoreError::Unavailable(format!("qdrant: HTTP {status}: {text}")));
        }
        if !status.is_success() {
            return Err(StoreError::Invalid(format!("qdrant: HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| StoreError::Unavailable(format!("qdrant: {e}")))
    }

    pub async fn upsert(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        for batch in entries.chunks(256) {
            let points: Vec<Value> = batch
                .iter()
                .map(|e| {
                    json!({
                        "id": point_id(&e.passage.id),
                        "vector": e.vector,
                        "payload": {
                            "passage_id": e.passage.id,
                            "text": e.passage.text,
                            "source": e.passage.source,
                        },
                    })
                })
                .collect();
            let body = json!({ "points": points });
            self.request(reqwest::Method::PUT, "/points?wait=true", Some(body)).await?;
        }
        Ok(())
    }

    pub async fn search(&self, vector: &[f32], k: usize) -> Result<Vec<Passage>, StoreError> {
        let body = json!({ "vector": vector, "limit": k, "with_payload": true });
        let answer = self.request(reqwest::Method::POST, "/points/search", Some(body)).await?;
        let hits = answer.get("result").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(hits
            .iter()
            .map(|h| {
                let field = |name: &str| {
                    h.pointer(&format!("/payload/{name}"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                Passage {
                    id: field("passage_id"),
                    text: field("text"),
                    source: field("source"),
                    score: h.get("score").and_then(Value::as_f64).unwrap_or(0.0),
                }
            })
            .collect())
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        let answer = self
            .request(reqwest::Method::POST, "/points/count", Some(json!({ "exact": true })))
            .await?;
        Ok(answer.pointer("/result/count").and_then(Value::as_u64).unwrap_or(0) as usize)
    }
}

/// Qdrant ids are integers or UUIDs: a UUID-shaped hex of two hashes of the passage id.
fn point_id(id: &str) -> String {
    let a = stable_hash(&[b"qdrant-a", id.as_bytes()]);
    let b = stable_hash(&[b"qdrant-b", id.as_bytes()]);
    let hex = format!("{a:016x}{b:016x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}
