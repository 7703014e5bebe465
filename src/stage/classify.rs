//! classify: labels a document from a configured label set, either with cheap keyword/regex
//! rules (no model call) or with an LLM's structured JSON output. The model's answer is
//! validated; an invalid one is asked for once more, then the record fails permanently.

use regex::Regex;

use super::models::{json_object, served_name, Models};
use super::{Emit, StageContext, StageError};
use crate::avro::{Classification, Envelope};
use crate::config::PromptSpec;
use crate::policy::prompts::{messages, Fill};
use crate::provider::ChatRequest;

pub struct Classify {
    models: Option<Models>,
    labels: Vec<String>,
    /// Label → patterns, tried in label order; empty means the model decides.
    rules: Vec<(String, Vec<Regex>)>,
    fallback_label: String,
    schema: serde_json::Value,
    /// Template version and template.
    prompt: (String, PromptSpec),
}

/// The template used when a classify stage names none.
pub const BUILTIN_PROMPT: &str = "classify@builtin";

fn builtin_prompt() -> PromptSpec {
    PromptSpec {
        system:
            "Classify the user's document into exactly one of: {{labels}}. Answer in JSON with \
                 the label and your confidence between 0 and 1."
                .into(),
        user: "{{document}}".into(),
    }
}

impl Classify {
    /// `rules` were validated when the topology compiled.
    pub fn new(
        models: Option<Models>,
        labels: Vec<String>,
        rules: &[(String, Vec<String>)],
        fallback_label: &str,
        prompt: Option<(String, PromptSpec)>,
    ) -> Self {
        let prompt = prompt.unwrap_or_else(|| (BUILTIN_PROMPT.to_owned(), builtin_prompt()));
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "label": { "type": "string", "enum": labels },
                "confidence": { "type": "number", "minimum": 0, "maximum": 1 }
            },
            "required": ["label", "confidence"],
            "additionalProperties": false
        });
        let rules = rules
            .iter()
            .map(|(label, patterns)| {
                let compiled = patterns
                    .iter()
                    .map(|p| {
                        regex::RegexBuilder::new(p)
                            .case_insensitive(true)
                            .build()
                            .expect("validated at compile time")
                    })
                    .collect();
                (label.clone(), compiled)
            })
            .collect();
        Self { models, labels, rules, fallback_label: fallback_label.to_owned(), schema, prompt }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        if input.document.content.trim().is_empty() {
            return Err(StageError::permanent("document content is empty: nothing to classify"));
        }
        let classification = match &self.models {
            None => self.by_rules(&input.document.content),
            Some(models) => self.by_model(models, &input, cx).await?,
        };
        input.classification = Some(classification);
        Ok(vec![Emit::main(input)])
    }

    /// The first label (in configured order) with a matching pattern; confidence is 1 for a
    /// match and 0 for the fallback label, so review can tell them apart.
    fn by_rules(&self, text: &str) -> Classification {
        let hit = self.rules.iter().find(|(_, res)| res.iter().any(|r| r.is_match(text)));
        let (label, confidence) = match hit {
            Some((label, _)) => (label.clone(), 1.0),
            None => (self.fallback_label.clone(), 0.0),
        };
        Classification { label, confidence, model: "rules".into(), prompt_version: None }
    }

    async fn by_model(
        &self,
        models: &Models,
        input: &Envelope,
        cx: StageContext<'_>,
    ) -> Result<Classification, StageError> {
        let alias = models.pick(input);
        let labels = self.labels.join(", ");
        let label = input.classification.as_ref().map_or("", |c| c.label.as_str());
        let fill = Fill {
            document: &input.document.content,
            label,
            tenant: &input.document.tenant,
            passages: "",
            labels: &labels,
        };
        let (system, user) = messages(&self.prompt.1, &fill);
        let request = ChatRequest {
            model: String::new(),
            system,
            user,
            json_schema: Some(self.schema.clone()),
            max_tokens: 50,
        };
        let key = cx.call_key(&input.document).with_prompt(&self.prompt.0);
        let mut last_error = String::new();
        for _ in 0..2 {
            let served = models.gateway.chat(alias, &request, key).await?;
            match self.parse(&served.value.text) {
                Ok((label, confidence)) => {
                    let model = served_name(&served.provider, &served.value.model);
                    let prompt_version = Some(self.prompt.0.clone());
                    return Ok(Classification { label, confidence, model, prompt_version });
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
        let body = json_object(text);
        let a: Answer =
            serde_json::from_str(body).map_err(|e| format!("not the requested JSON: {e}"))?;
        if !self.labels.contains(&a.label) {
            return Err(format!("label '{}' is not one of the configured labels", a.label));
        }
        if !(0.0..=1.0).contains(&a.confidence) {
            return Err(format!("confidence {} is outside 0..1", a.confidence));
        }
        Ok((a.label, a.confidence))
    }
}
