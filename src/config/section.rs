//! Phase one of topology compilation: a walker over one YAML mapping that takes fields by name,
//! deserializes each leaf with serde, and records *every* problem (wrong type, missing field,
//! unknown key) instead of stopping at the first, as `#[serde(deny_unknown_fields)]` would.

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::errors::Errors;

/// A YAML mapping being read, with the location used for its errors.
pub struct Section<'e> {
    map: Mapping,
    /// Stage this section belongs to, if any.
    stage: Option<String>,
    /// Dotted prefix of this section's fields (empty at the stage or file root).
    prefix: String,
    errors: &'e mut Errors,
}

impl<'e> Section<'e> {
    /// Reads `value` as a mapping; reports an error and yields an empty section otherwise.
    pub fn new(value: Value, stage: Option<&str>, prefix: &str, errors: &'e mut Errors) -> Self {
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => {
                errors.push(stage, prefix, format!("expected a mapping, found {}", kind(&other)));
                Mapping::new()
            }
        };
        Self { map, stage: stage.map(str::to_owned), prefix: prefix.to_owned(), errors }
    }

    pub fn path(&self, key: &str) -> String {
        if key.is_empty() {
            self.prefix.clone()
        } else if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Reports a problem with field `key` of this section.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let path = self.path(key);
        self.errors.push(self.stage.as_deref(), path, message);
    }

    /// An optional field; a present field of the wrong type is reported and yields `None`.
    pub fn opt<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.map.remove(key)?;
        match serde_yaml_ng::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    /// A required field; a missing one is reported.
    pub fn req<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.map.contains_key(key) {
            self.error(key, "missing required field");
            return None;
        }
        self.opt(key)
    }

    /// An optional field with a default.
    pub fn or<T: DeserializeOwned>(&mut self, key: &str, default: T) -> T {
        self.opt(key).unwrap_or(default)
    }

    /// A nested mapping, read by `f`; unknown keys inside it are reported when `f` returns.
    pub fn nested<T>(&mut self, key: &str, f: impl FnOnce(&mut Section<'_>) -> T) -> T {
        let value = self.map.remove(key).unwrap_or(Value::Null);
        let prefix = self.path(key);
        let stage = self.stage.clone();
        let mut sub = Section::new(value, stage.as_deref(), &prefix, self.errors);
        let out = f(&mut sub);
        sub.finish();
        out
    }

    /// The remaining keys, each a nested mapping read by `f` (for maps of named entries).
    pub fn entries<T>(
        &mut self,
        key: &str,
        mut f: impl FnMut(&str, &mut Section<'_>) -> Option<T>,
    ) -> Vec<(String, T)> {
        let value = self.map.remove(key).unwrap_or(Value::Null);
        let prefix = self.path(key);
        let stage = self.stage.clone();
        let mut out = Vec::new();
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => return out,
            other => {
                self.errors.push(
                    stage.as_deref(),
                    prefix,
                    format!("expected a mapping, found {}", kind(&other)),
                );
                return out;
            }
        };
        for (k, v) in map {
            let Some(name) = k.as_str().map(str::to_owned) else {
                self.errors.push(stage.as_deref(), prefix.clone(), "keys must be strings");
                continue;
            };
            let mut sub =
                Section::new(v, stage.as_deref(), &format!("{prefix}.{name}"), self.errors);
            if let Some(t) = f(&name, &mut sub) {
                out.push((name, t));
            }
            sub.finish();
        }
        out
    }

    /// The entries of a mapping field whose keys name stages: each entry is read by `f` as a
    /// section scoped to that stage, so its errors carry the stage name.
    pub fn stages<T>(
        &mut self,
        key: &str,
        mut f: impl FnMut(&str, &mut Section<'_>) -> Option<T>,
    ) -> Vec<(String, T)> {
        let mut out = Vec::new();
        let stage_map = match self.map.remove(key) {
            Some(Value::Mapping(m)) => m,
            Some(Value::Null) | None => {
                self.error(key, "missing required field: at least one stage");
                return out;
            }
            Some(other) => {
                self.error(
                    key,
                    format!("expected a mapping of stage names, found {}", kind(&other)),
                );
                return out;
            }
        };
        for (k, v) in stage_map {
            let Some(name) = k.as_str().map(str::to_owned) else {
                self.error(key, "stage names must be strings");
                continue;
            };
            let mut sub = Section::new(v, Some(&name), "", self.errors);
            if let Some(t) = f(&name, &mut sub) {
                out.push((name, t));
            }
            sub.finish();
        }
        out
    }

    /// The value of `key` without taking it, to choose how to read it.
    pub fn peek(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// A list of mappings, each read by `f` as a section located at `key[i]`.
    pub fn list<T>(
        &mut self,
        key: &str,
        mut f: impl FnMut(&mut Section<'_>) -> Option<T>,
    ) -> Vec<T> {
        let prefix = self.path(key);
        let stage = self.stage.clone();
        let items = match self.map.remove(key) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.error(key, format!("expected a list, found {}", kind(&other)));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let mut sub =
                Section::new(item, stage.as_deref(), &format!("{prefix}[{i}]"), self.errors);
            if let Some(t) = f(&mut sub) {
                out.push(t);
            }
            sub.finish();
        }
        out
    }

    /// Reports every key that was not taken.
    pub fn finish(self) {
        for key in self.map.keys() {
            let name = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
            let path =
                if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) };
            self.errors.push(self.stage.as_deref(), path, "unknown key");
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
