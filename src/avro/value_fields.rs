//! Reading fields of a decoded Avro record by name, an optional field as its union branch's
//! value, each mismatch said in words: for values read back from a topic.

use apache_avro::types::Value;

/// The fields of one Avro record; an optional field reads as its union branch's value.
pub(super) struct Fields<'v>(&'v [(String, Value)]);

impl<'v> Fields<'v> {
    pub(super) fn of(value: &'v Value, what: &str) -> Result<Self, String> {
        match value {
            Value::Record(fields) => Ok(Self(fields)),
            other => Err(format!("{what} is not a record but {other:?}")),
        }
    }

    pub(super) fn get(&self, name: &str) -> Result<&'v Value, String> {
        let v = self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match v.ok_or_else(|| format!("no field '{name}'"))? {
            Value::Union(_, inner) => Ok(inner.as_ref()),
            other => Ok(other),
        }
    }

    pub(super) fn opt_long(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name)? {
            Value::Long(n) => Ok(Some(*n)),
            Value::Int(n) => Ok(Some(i64::from(*n))),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    pub(super) fn long(&self, name: &str) -> Result<i64, String> {
        self.opt_long(name)?.ok_or_else(|| format!("field '{name}' is null"))
    }

    pub(super) fn opt_string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    pub(super) fn string(&self, name: &str) -> Result<String, String> {
        self.opt_string(name)?.ok_or_else(|| format!("field '{name}' is null"))
    }

    pub(super) fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self.get(name)? {
            Value::Bytes(b) => Ok(Some(b.clone())),
            Value::Null => Ok(None),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }

    pub(super) fn array(&self, name: &str) -> Result<&'v [Value], String> {
        match self.get(name)? {
            Value::Array(items) => Ok(items),
            other => Err(format!("field '{name}' is {other:?}")),
        }
    }
}
