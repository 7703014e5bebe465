//! JSON ⇄ Avro for the CLI: `sluice produce` reads JSON lines, `sluice consume` prints them.
//! Conversion follows the schema, so a line that does not fit is refused with the path of the
//! offending field, before anything is written.

use apache_avro::schema::{RecordSchema, Schema, UnionSchema};
use apache_avro::types::Value;
use base64::Engine;
use serde_json::Value as Json;

/// Avro → JSON; bytes become base64 strings, unions their branch's value.
pub fn avro_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::from(*i),
        Value::Long(l)
        | Value::TimeMicros(l)
        | Value::TimestampMillis(l)
        | Value::TimestampMicros(l) => Json::from(*l),
        Value::Float(f) => Json::from(*f as f64),
        Value::Double(d) => Json::from(*d),
        Value::Bytes(b) | Value::Fixed(_, b) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::Union(_, v) => avro_to_json(v),
        Value::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Value::Map(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            Json::Object(keys.into_iter().map(|k| (k.clone(), avro_to_json(&m[k]))).collect())
        }
        Value::Record(fields) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), avro_to_json(v))).collect())
        }
        other => Json::String(format!("{other:?}")),
    }
}

/// JSON → Avro, guided by `schema`; errors name the field path (`metadata.lang`).
pub fn json_to_avro(json: &Json, schema: &Schema) -> Result<Value, String> {
    convert(json, schema, "$")
}

fn convert(json: &Json, schema: &Schema, path: &str) -> Result<Value, String> {
    let mismatch = || format!("{path}: expected {}, found {}", describe(schema), json_kind(json));
    match schema {
        Schema::Null => json.is_null().then_some(Value::Null).ok_or_else(mismatch),
        Schema::Boolean => json.as_bool().map(Value::Boolean).ok_or_else(mismatch),
        Schema::Int => {
            json.as_i64().and_then(|i| i32::try_from(i).ok()).map(Value::Int).ok_or_else(mismatch)
        }
        Schema::Long => json.as_i64().map(Value::Long).ok_or_else(mismatch),
        Schema::Float => json.as_f64().map(|f| Value::Float(f as f32)).ok_or_else(mismatch),
        Schema::Double => json.as_f64().map(Value::Double).ok_or_else(mismatch),
        Schema::String => json.as_str().map(|s| Value::String(s.to_owned())).ok_or_else(mismatch),
        Schema::Bytes => json
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .map(Value::Bytes)
            .ok_or_else(|| format!("{path}: expected base64-encoded bytes")),
        Schema::Enum(e) => {
            let s = json.as_str().ok_or_else(mismatch)?;
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| format!("{path}: '{s}' is not one of {:?}", e.symbols))?;
            Ok(Value::Enum(i as u32, s.to_owned()))
        }
        Schema::Array(a) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let out = items
                .iter()
                .enumerate()
                .map(|(i, j)| convert(j, &a.items, &format!("{path}[{i}]")));
            Ok(Value::Array(out.collect::<Result<_, _>>()?))
        }
        Schema::Map(m) => {
            let obj = json.as_object().ok_or_else(mismatch)?;
            let out = obj
                .iter()
                .map(|(k, v)| Ok((k.clone(), convert(v, &m.types, &format!("{path}.{k}"))?)));
            Ok(Value::Map(out.collect::<Result<_, String>>()?))
        }
        Schema::Union(u) => union(json, u, path),
        Schema::Record(r) => record(json, r, path),
        _ => Err(format!(
            "{path}: schema type {} is not supported by the JSON reader",
            describe(schema)
        )),
    }
}

fn union(json: &Json, u: &UnionSchema, path: &str) -> Result<Value, String> {
    let mut last = String::new();
    for (i, branch) in u.variants().iter().enumerate() {
        match convert(json, branch, path) {
            Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn record(json: &Json, r: &RecordSchema, path: &str) -> Result<Value, String> {
    let obj = json
        .as_object()
        .ok_or_else(|| format!("{path}: expected an object, found {}", json_kind(json)))?;
    if let Some(unknown) = obj.keys().find(|k| !r.lookup.contains_key(*k)) {
        return Err(format!("{path}.{unknown}: not a field of {}", r.name.fullname(None)));
    }
    let mut fields = Vec::with_capacity(r.fields.len());
    for f in &r.fields {
        let fpath = format!("{path}.{}", f.name);
        let value = match (obj.get(&f.name), &f.default) {
            (Some(j), _) => convert(j, &f.schema, &fpath)?,
            (None, Some(default)) => {
                convert(default, &f.schema, &fpath).or_else(|_| match &f.schema {
                    // A union's default belongs to its first branch.
                    Schema::Union(u) => convert(default, &u.variants()[0], &fpath)
                        .map(|v| Value::Union(0, Box::new(v))),
                    _ => Err(format!("{fpath}: bad default")),
                })?
            }
            (None, None) => return Err(format!("{fpath}: missing required field")),
        };
        fields.push((f.name.clone(), value));
    }
    Ok(Value::Record(fields))
}

fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Union(_) => "a union".to_owned(),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::SchemaKind;

    #[test]
    fn document_json_converts_and_round_trips() {
        let json: Json = serde_json::json!({"id": "1", "tenant": "t", "content": "c", "metadata": {"lang": "en"}});
        let v = json_to_avro(&json, SchemaKind::Document.schema()).expect("fits");
        assert!(v.validate(SchemaKind::Document.schema()));
        assert_eq!(avro_to_json(&v), json);
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let json: Json = serde_json::json!({"id": "1", "tenant": "t", "content": "c"});
        let v = json_to_avro(&json, SchemaKind::Document.schema()).expect("metadata has a default");
        assert!(v.validate(SchemaKind::Document.schema()));
    }

    #[test]
    fn errors_name_the_field() {
        let schema = SchemaKind::Document.schema();
        let e = json_to_avro(&serde_json::json!({"id": 1, "tenant": "t", "content": "c"}), schema)
            .unwrap_err();
        assert!(e.contains("$.id") && e.contains("string"), "{e}");
        let e = json_to_avro(&serde_json::json!({"id": "1", "tenant": "t"}), schema).unwrap_err();
        assert!(e.contains("$.content: missing"), "{e}");
        let e = json_to_avro(
            &serde_json::json!({"id": "1", "tenant": "t", "content": "c", "extra": 1}),
            schema,
        )
        .unwrap_err();
        assert!(e.contains("$.extra"), "{e}");
        let e = json_to_avro(
            &serde_json::json!({"id": "1", "tenant": "t", "content": "c", "metadata": {"a": 1}}),
            schema,
        )
        .unwrap_err();
        assert!(e.contains("$.metadata.a"), "{e}");
    }
}
