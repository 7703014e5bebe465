//! PostgreSQL with the pgvector extension: one row per passage (`id` primary key, `text`,
//! `source`, `embedding vector(N)`), searched by inner product (`<#>`, which pgvector defines as
//! the *negative* inner product, so ascending order is best first and the score is its negation)
//! with ties broken by id, the embedded store's ranking. No index is created: the scan is exact,
//! like the embedded store's; an operator may add an HNSW index (`vector_ip_ops`) for large
//! tables, trading exactness for speed.
//!
//! Opening checks, in order: the server answers (else [`StoreError::Unavailable`], retryable);
//! the `vector` extension is enabled in the database (else [`StoreError::Invalid`]: sluice never
//! creates extensions, that takes a superuser or the database owner); the table, created when
//! absent, has the four columns and the stage's dimension (else `Invalid`).
//!
//! Client: `tokio-postgres` with only its `runtime` feature — pure Rust on the tokio the crate
//! already runs, about 15 small crates (the protocol, SCRAM's hashes, no macros, no pool), where
//! sqlx would add its macros, drivers and pool, and diesel a synchronous API. TLS goes through
//! `postgres-native-tls` on the native-tls (OpenSSL) that reqwest already links. One connection
//! per store, shared by every record in flight (tokio-postgres pipelines), reopened when it
//! closes. Statements are unnamed (`query_typed`), so processes sharing one server session —
//! PGlite serves every client from one backend — cannot collide on prepared-statement names.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, Row};

use super::{Entry, StoreError};
use crate::avro::Passage;
use crate::config::{PgUrl, SecretSource};

mod setup;

/// How long one statement (or connecting) may take before the store counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per upsert statement.
const BATCH: usize = 500;

pub struct Pgvector {
    config: Config,
    tls: postgres_native_tls::MakeTlsConnector,
    /// The table as configured, for messages, and quoted for SQL.
    name: String,
    table: String,
    /// `host:port/database`, for messages (never the password).
    target: String,
    dimensions: usize,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Pgvector {
    pub async fn open(
        url: &PgUrl,
        password: Option<&SecretSource>,
        table: &str,
        dimensions: usize,
    ) -> Result<Self, StoreError> {
        let config = setup::config(url, password)?;
        let tls = native_tls::TlsConnector::new()
            .map_err(|e| StoreError::Invalid(format!("postgres: TLS set-up: {e}")))?;
        let store = Self {
            target: setup::target(&config),
            config,
            tls: postgres_native_tls::MakeTlsConnector::new(tls),
            name: table.to_owned(),
            table: quote(table),
            dimensions,
            client: tokio::sync::Mutex::new(None),
        };
        store.prepare().await?;
        Ok(store)
    }

    /// Checks the extension and the table, creating the table when it is absent.
    async fn prepare(&self) -> Result<(), StoreError> {
        let version =
            self.query("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[]).await?;
        if version.is_empty() {
            return Err(setup::missing_extension(&self.target));
        }
        let columns = self.columns().await?;
        if columns.is_empty() {
            let create = format!(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, \
                 source text NOT NULL, embedding vector({}) NOT NULL)",
                self.table, self.dimensions
            );
            let Err(e) = self.query(&create, &[]).await else { return Ok(()) };
            // Another worker may have created it at the same moment: check what it made.
            let columns = self.columns().await?;
            return if columns.is_empty() {
                Err(e)
            } else {
                setup::check(&columns, &self.name, self.dimensions)
            };
        }
        setup::check(&columns, &self.name, self.dimensions)
    }

    /// `(column, type)` of the table; empty when there is no such table.
    async fn columns(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute \
                   a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
        let rows = self.query(sql, &[(&self.table, Type::TEXT)]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The connection, reopened when the last one closed.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let connect = self.config.connect(self.tls.clone());
        let (client, connection) = tokio::time::timeout(TIMEOUT, connect)
            .await
            .map_err(|_| self.unavailable("connecting timed out"))?
            .map_err(|e| self.classify(e))?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(server = %target, error = %e, "pgvector: connection closed");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        match tokio::time::timeout(TIMEOUT, client.query_typed(sql, params)).await {
            Err(_) => Err(self.unavailable("the statement timed out")),
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(self.classify(e)),
        }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("postgres at {}: {e}", self.target))
    }

    /// Server-side trouble that passes (connection, shutdown, resources, conflicts, timeouts)
    /// and errors without a SQL state (I/O, a closed connection) are retryable; the rest is the
    /// content or configuration being wrong.
    fn classify(&self, e: tokio_postgres::Error) -> StoreError {
        let transient = match e.code() {
            None => true,
            Some(code) => {
                let c = code.code();
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || {
                    [SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED]
                        .contains(code)
                        || *code == SqlState::LOCK_NOT_AVAILABLE
                }
            }
        };
        let detail = setup::describe(&e);
        if transient {
            self.unavailable(detail)
        } else {
            StoreError::Invalid(format!(
                "postgres at {} (table '{}'): {detail}",
                self.target, self.name
            ))
        }
    }

    pub async fn upsert(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        if let Some(bad) = entries.iter().find(|e| e.vector.len() != self.dimensions) {
            return Err(StoreError::Invalid(format!(
                "passage '{}' has {} dimensions, the table {}",
                bad.passage.id,
                bad.vector.len(),
                self.dimensions
            )));
        }
        // One statement cannot update a row twice: the last entry for an id wins, as it would
        // one upsert after another.
        let last: std::collections::HashMap<&str, usize> =
            entries.iter().enumerate().map(|(i, e)| (e.passage.id.as_str(), i)).collect();
        let unique: Vec<&Entry> = entries
            .iter()
            .enumerate()
            .filter(|(i, e)| last[e.passage.id.as_str()] == *i)
            .map(|x| x.1)
            .collect();
        let sql = format!(
            "INSERT INTO {} (id, text, source, embedding) SELECT i, t, s, v::vector FROM \
             unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(i, t, s, v) \
             ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, source = EXCLUDED.source, \
             embedding = EXCLUDED.embedding",
            self.table
        );
        for batch in unique.chunks(BATCH) {
            let column = |f: fn(&Entry) -> String| batch.iter().map(|e| f(e)).collect::<Vec<_>>();
            let ids = column(|e| e.passage.id.clone());
            let texts = column(|e| e.passage.text.clone());
            let sources = column(|e| e.passage.source.clone());
            let vectors = column(|e| literal(&e.vector));
            let params: [(&(dyn ToSql + Sync), Type); 4] = [
                (&ids, Type::TEXT_ARRAY),
                (&texts, Type::TEXT_ARRAY),
                (&sources, Type::TEXT_ARRAY),
                (&vectors, Type::TEXT_ARRAY),
            ];
            self.query(&sql, &params).await?;
        }
        Ok(())
    }

    /// The `k` passages with the highest inner product, best first; ties by id, byte by byte.
    pub async fn search(&self, vector: &[f32], k: usize) -> Result<Vec<Passage>, StoreError> {
        let sql = format!(
            "SELECT id, text, source, -(embedding <#> $1::text::vector) FROM {} \
             ORDER BY embedding <#> $1::text::vector, id COLLATE \"C\" LIMIT $2",
            self.table
        );
        let (query, limit) = (literal(vector), i64::try_from(k).unwrap_or(i64::MAX));
        let rows = self.query(&sql, &[(&query, Type::TEXT), (&limit, Type::INT8)]).await?;
        Ok(rows
            .iter()
            .map(|r| Passage { id: r.get(0), text: r.get(1), source: r.get(2), score: r.get(3) })
            .collect())
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        let rows = self.query(&format!("SELECT count(*) FROM {}", self.table), &[]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
    }
}

/// `"schema"."name"`: each part quoted, quotes doubled.
fn quote(table: &str) -> String {
    let parts: Vec<String> =
        table.split('.').map(|p| format!("\"{}\"", p.replace('"', "\"\""))).collect();
    parts.join(".")
}

/// pgvector's text form, `[0.1,-2,0.00000003]`: Rust prints the shortest digits that read back as
/// the same f32, so nothing is lost on the way.
fn literal(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(f32::to_string).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_names_are_safe_and_exact() {
        assert_eq!(literal(&[0.1, -2.0, 3e-8]), "[0.1,-2,0.00000003]");
        assert_eq!(quote("kb"), "\"kb\"");
        assert_eq!(quote("rag.kb"), "\"rag\".\"kb\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
