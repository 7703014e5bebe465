//! The `store:` block of a retrieve stage with `kind: pgvector`.
//!
//! The connection string is a secret when it holds a password: inline `url` is refused if it
//! does, so write it in `url_env` / `url_file`, or keep the URL inline and give the password by
//! `password_env` / `password_file`. Neither form is ever logged or rendered.

use std::path::Path;

use super::model::{PgUrl, StoreSpec};
use super::providers::secret;
use super::section::Section;

/// Identifiers in `table` (`name` or `schema.name`): what PostgreSQL takes unquoted.
fn identifier(part: &str) -> bool {
    let mut chars = part.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && part.len() <= 63
}

pub fn pgvector(st: &mut Section<'_>, base_dir: &Path) -> Option<StoreSpec> {
    let url = if st.peek("url").is_some() {
        let inline: Option<String> = st.opt("url");
        if st.peek("url_env").is_some() || st.peek("url_file").is_some() {
            st.error("url", "give url, url_env or url_file, only one");
        }
        match inline.as_deref().map(str::parse::<tokio_postgres::Config>) {
            Some(Ok(c)) if c.get_password().is_some() => {
                st.error(
                    "url",
                    "holds a password, and secrets never go inline: use url_env or url_file, or \
                     password_env or password_file",
                );
                None
            }
            // The parser's message never quotes the string back.
            Some(Err(e)) => {
                st.error("url", format!("not a PostgreSQL connection string: {e}"));
                None
            }
            Some(Ok(_)) => inline.map(PgUrl::Inline),
            None => None,
        }
    } else {
        let source = secret(st, "url", base_dir).map(PgUrl::Secret);
        if source.is_none() {
            st.error("url", "missing: give url, url_env or url_file");
        }
        source
    };
    let password = secret(st, "password", base_dir);
    let table: Option<String> = st.req("table");
    if let Some(t) = &table {
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| identifier(p)) {
            st.error(
                "table",
                format!(
                    "'{t}' is not a table name (letters, digits and _, not starting with a digit, \
                     at most 63; optionally schema.table)"
                ),
            );
            return None;
        }
    }
    Some(StoreSpec::Pgvector { url: url?, password, table: table? })
}
