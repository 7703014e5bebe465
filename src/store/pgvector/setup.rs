//! Opening the pgvector store: the connection settings from the topology's secrets, and what
//! an existing table must look like.

use std::time::Duration;

use tokio_postgres::Config;

use crate::config::{PgUrl, SecretSource};
use crate::store::StoreError;

/// The connection settings: the URL (inline or a secret), the password when given apart, a
/// 10-second connect timeout and `application_name=sluice` unless the URL sets them.
pub fn config(url: &PgUrl, password: Option<&SecretSource>) -> Result<Config, StoreError> {
    let text = match url {
        PgUrl::Inline(u) => u.clone(),
        PgUrl::Secret(s) => read_secret(s, "url")?,
    };
    // The parser's messages never quote the string back.
    let mut config: Config = text.parse().map_err(|e| {
        StoreError::Invalid(format!("store url: not a PostgreSQL connection string: {e}"))
    })?;
    if let Some(p) = password {
        config.password(read_secret(p, "password")?);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("sluice");
    }
    Ok(config)
}

/// A secret's value; the message names where it was looked for, never what was found.
fn read_secret(source: &SecretSource, key: &str) -> Result<String, StoreError> {
    let value = match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            StoreError::Invalid(format!("environment variable {var} (store.{key}_env) is not set"))
        })?,
        SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
            StoreError::Invalid(format!("store.{key}_file {}: {e}", path.display()))
        })?,
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("store.{key}: the secret is empty")));
    }
    Ok(value)
}

/// `host:port/database`, for messages: never the user or the password.
pub fn target(c: &Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().or(c.get_user()).unwrap_or("postgres"))
}

/// The server's message for a server error, else the error with its causes ("error connecting
/// to server: Connection refused"): tokio-postgres shows only the first.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

pub fn missing_extension(target: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the pgvector extension is not enabled in the database at {target}: run `CREATE \
         EXTENSION vector;` there as its owner or a superuser (pgvector must be installed on the \
         server: https://github.com/pgvector/pgvector)"
    ))
}

/// An existing table must have `id`, `text` and `source` as text and `embedding vector(N)`.
pub fn check(columns: &[(String, String)], table: &str, dims: usize) -> Result<(), StoreError> {
    let type_of = |name: &str| columns.iter().find(|c| c.0 == name).map(|c| c.1.as_str());
    let what_to_do = "set store.table to a new table (sluice creates it) and index the knowledge \
                      base into it, or drop this one";
    let not_ours = |what: String| {
        StoreError::Invalid(format!(
            "table '{table}' has {what}: it is not a sluice passage table; {what_to_do}"
        ))
    };
    match type_of("embedding") {
        Some(t) if t == format!("vector({dims})") => {}
        Some(t) if t.starts_with("vector") => {
            return Err(StoreError::Invalid(format!(
                "table '{table}' holds embedding {t}, the stage expects {dims} dimensions \
                 (vector({dims})): {what_to_do}"
            )))
        }
        Some(t) => return Err(not_ours(format!("an embedding column of type {t}"))),
        None => return Err(not_ours("no embedding column".into())),
    }
    match ["id", "text", "source"].into_iter().find(|c| type_of(c) != Some("text")) {
        Some(c) => Err(not_ours(format!("no text column '{c}'"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_never_the_credentials() {
        let c: Config = "postgresql://u:secret@db.internal:6543/rag".parse().expect("url");
        assert_eq!(target(&c), "db.internal:6543/rag");
        let cols = |e: &str| {
            [("id", "text"), ("text", "text"), ("source", "text"), ("embedding", e)]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        };
        assert!(check(&cols("vector(4)"), "kb", 4).is_ok());
        let e = check(&cols("vector(8)"), "kb", 4).expect_err("dimension").to_string();
        assert!(e.contains("vector(8)") && e.contains("4 dimensions"), "{e}");
        let e = check(&cols("real[]"), "kb", 4).expect_err("type").to_string();
        assert!(e.contains("not a sluice passage table"), "{e}");
    }
}
