//! classify: labels a document from a configured label set with an LLM's structured output.
//! The answer is validated; an invalid one is retried once, then the record is permanent-failed.

use crate::avro::{Classification, Envelope};
use crate::provider::{ChatRequest, Provider};

use super::{Emit, StageContext, StageError};

pub struct Classify {
    provider: Provider,
    model: String,
    labels: Vec<String>,
    schema: serde_json::Value,
}

impl Classify {
    pub fn new(provider: Provider, model: String, labels: Vec<String>) -> Self {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "label": { "type": "string", "enum": labels },
                "confidence": { "type": "number", "minimum": 0, "maximum": 1 }
            },
            "required": ["label", "confidence"],
            "additionalProperties": false
        });
        Self { provider, model, labels, schema }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        if input.document.content.trim().is_empty() {
            return Err(StageError::permanent("document content is empty: nothing to classify"));
        }
        let request = ChatRequest {
            model: self.model.clone(),
            system: format!(
                "Classify the user's document into exactly one of: {}. Answer in JSON.",
                self.labels.join(", ")
            ),
            user: input.document.content.clone(),
            json_schema: Some(self.schema.clone()),
            max_tokens: 50,
        };
        let mut last_error = String::new();
        for _ in 0..2 {
            let response = self.provider.chat(&request, cx.call_key(&input.document.id)).await?;
            match self.parse(&response.text) {
                Ok((label, confidence)) => {
                    input.classification =
                        Some(Classification { label, confidence, model: response.model });
                    return Ok(vec![Emit::main(input)]);
                }
                Err(e) => last_error = e,
            }
        }
        Err(StageError::permanent(format!(
            "model gave no valid classification twice: {last_error}"
        )))
    }

    fn parse(&self, text: &str) -> Result<(String, f64), String> {
        #[derive(serde::Deserialize)]
        struct Answer {
            label: String,
            confidence: f64,
        }
        let a: Answer =
            serde_json::from_str(text).map_err(|e| format!("not the requested JSON: {e}"))?;
        if !self.labels.contains(&a.label) {
            return Err(format!("label '{}' is not one of the configured labels", a.label));
        }
        if !(0.0..=1.0).contains(&a.confidence) {
            return Err(format!("confidence {} is outside 0..1", a.confidence));
        }
        Ok((a.label, a.confidence))
    }
}
