//! The partition of the semantic cache. An entry answers only a lookup of the same key: the same
//! stage, prompt version, logical model and embedding model, and the same scope — one tenant, or
//! every tenant when the stage says `scope: global`. A new prompt version or model is a new key,
//! so it never sees the old one's answers; vectors of another embedding model are not comparable
//! and are a new key too.

use serde::{Deserialize, Serialize};

/// Who may share answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only records of this tenant (the default).
    Tenant(String),
    /// Every tenant of the stage (only when configured explicitly).
    Global,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SemanticKey {
    pub stage: String,
    /// The prompt template's version; `None` for a stage without a versioned prompt.
    pub prompt_version: Option<String>,
    /// The logical model the stage calls.
    pub model: String,
    /// The model that embedded the variable text.
    pub embedding: String,
    pub scope: Scope,
}

impl SemanticKey {
    /// Every field, each length-prefixed, so no two keys share bytes (for hashing).
    pub fn to_bytes(&self) -> Vec<u8> {
        let scope = match &self.scope {
            Scope::Tenant(t) => format!("t:{t}"),
            Scope::Global => "g".to_owned(),
        };
        let version = self.prompt_version.as_ref().map_or("-".to_owned(), |v| format!("v:{v}"));
        let mut out = Vec::new();
        for part in [&self.stage, &version, &self.model, &self.embedding, &scope] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A key of stage `answer`, prompt `v1`, model `small`, embedding `minilm` for `tenant`.
#[cfg(test)]
pub(crate) fn test_key(tenant: &str) -> SemanticKey {
    SemanticKey {
        stage: "answer".into(),
        prompt_version: Some("v1".into()),
        model: "small".into(),
        embedding: "minilm".into(),
        scope: Scope::Tenant(tenant.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str) -> SemanticKey {
        test_key(tenant)
    }

    #[test]
    fn every_field_separates_keys() {
        let base = key("acme");
        let variants = [
            SemanticKey { stage: "other".into(), ..base.clone() },
            SemanticKey { prompt_version: Some("v2".into()), ..base.clone() },
            SemanticKey { prompt_version: None, ..base.clone() },
            SemanticKey { model: "large".into(), ..base.clone() },
            SemanticKey { embedding: "bge".into(), ..base.clone() },
            SemanticKey { scope: Scope::Tenant("globex".into()), ..base.clone() },
            SemanticKey { scope: Scope::Global, ..base.clone() },
        ];
        for v in &variants {
            assert_ne!(v, &base);
            assert_ne!(v.to_bytes(), base.to_bytes(), "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let a = SemanticKey { stage: "ab".into(), model: "c".into(), ..key("t") };
        let b = SemanticKey { stage: "a".into(), model: "bc".into(), ..key("t") };
        assert_ne!(a.to_bytes(), b.to_bytes());
        let none = SemanticKey { prompt_version: None, ..key("t") };
        let dash = SemanticKey { prompt_version: Some("-".into()), ..key("t") };
        assert_ne!(none.to_bytes(), dash.to_bytes());
    }
}
