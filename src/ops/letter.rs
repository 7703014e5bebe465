//! A dead letter read back from its Avro value (resolved to `schemas/dead_letter.avsc`): the
//! inverse of [`DeadLetter::to_value`], which the runner writes.

use apache_avro::types::Value;

use super::dlq_read::parse_class;
use crate::avro::{AttemptRecord, DeadLetter};

/// The fields of one Avro record; an optional field reads as its union branch's value.
struct Fields<'v>(&'v [(String, Value)]);

impl<'v> Fields<'v> {
    fn of(value: &'v Value, what: &str) -> Result<Self, String> {
        match value {
            Value::Record(fields) => Ok(Self(fields)),
            other => Err(format!("{what} is not a record but {other:?}")),
        }
    }

    fn get(&self, name: &str) -> Result<&'v Value, String> {
        let v = self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match v.ok_or_else(|| format!("no field '{name}'"))? {
            Value::Union(_, inner) => Ok(inner.as_ref()),
            other => Ok(other),
        }
    }

    fn opt_long(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name)? {
            Value::Long(n) => Ok(Some(*n)),
            Value::Int(n) => Ok(Some(i64::from(*n))),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    fn long(&self, name: &str) -> Result<i64, String> {
        self.opt_long(name)?.ok_or_else(|| format!("field '{name}' is null"))
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        self.opt_string(name)?.ok_or_else(|| format!("field '{name}' is null"))
    }

    fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self.get(name)? {
            Value::Bytes(b) => Ok(Some(b.clone())),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    fn array(&self, name: &str) -> Result<&'v [Value], String> {
        match self.get(name)? {
            Value::Array(items) => Ok(items),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }
}

/// A dead letter from its Avro value, or what about the value is not a dead letter.
pub fn letter_from_value(value: &Value) -> Result<DeadLetter, String> {
    let f = Fields::of(value, "the dead letter")?;
    let original_headers = f
        .array("original_headers")?
        .iter()
        .map(|h| {
            let h = Fields::of(h, "a header")?;
            Ok((h.string("key")?, h.opt_bytes("value")?))
        })
        .collect::<Result<_, String>>()?;
    let attempts = f
        .array("attempts")?
        .iter()
        .map(|a| {
            let a = Fields::of(a, "an attempt")?;
            Ok(AttemptRecord {
                attempt: u32::try_from(a.long("attempt")?).unwrap_or(0),
                at_ms: a.long("at_ms")?,
                error_class: a.string("error_class")?,
                message: a.string("message")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(DeadLetter {
        pipeline: f.string("pipeline")?,
        stage: f.string("stage")?,
        consumer_group: f.string("consumer_group")?,
        original_topic: f.string("original_topic")?,
        original_partition: i32::try_from(f.long("original_partition")?)
            .map_err(|_| "original_partition is out of range".to_owned())?,
        original_offset: f.long("original_offset")?,
        original_timestamp_ms: f.opt_long("original_timestamp_ms")?,
        original_key: f.opt_bytes("original_key")?,
        original_value: f.opt_bytes("original_value")?,
        original_headers,
        error_class: parse_class(&f.string("error_class")?)?,
        error_message: f.string("error_message")?,
        attempts,
        failed_at_ms: f.long("failed_at_ms")?,
        model: f.opt_string("model")?,
        prompt_version: f.opt_string("prompt_version")?,
        // Absent from letters written before the field existed.
        delivered_outputs: match f.array("delivered_outputs") {
            Ok(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!("a delivered output is {other:?}")),
                })
                .collect::<Result<_, String>>()?,
            Err(_) => Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_reads_back_from_its_avro_value() {
        let letter = crate::ops::fixtures::letter();
        assert_eq!(letter_from_value(&letter.to_value()), Ok(letter.clone()));
        let other = DeadLetter {
            original_value: Some(vec![0, 1]),
            original_key: None,
            original_timestamp_ms: None,
            prompt_version: Some("answer@2".into()),
            ..letter
        };
        assert_eq!(letter_from_value(&other.to_value()), Ok(other));
        assert!(letter_from_value(&Value::Null).is_err());
    }
}
