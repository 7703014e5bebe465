//! review: redacts PII from the answer (see [`crate::pii`]), rejects answers with blocked terms,
//! optionally asks an LLM judge how well the answer is grounded in its passages, and routes:
//! approved → the output topic, needs-human → the human-review topic, rejected → the rejected
//! topic, each with its reasons.

use super::models::{json_object, Models};
use super::{Emit, Port, StageContext, StageError};
use crate::avro::{Envelope, Review as ReviewRecord, Verdict};
use crate::pii::Redactor;
use crate::provider::ChatRequest;

/// Version of the judge's built-in prompt, in its cost events and cache keys.
pub const JUDGE_PROMPT: &str = "judge@builtin";

pub struct Review {
    blocked_terms: Vec<String>,
    redactor: Redactor,
    judge: Option<(Models, f64)>,
    judge_schema: serde_json::Value,
}

impl Review {
    pub fn new(
        blocked_terms: Vec<String>,
        redactor: Redactor,
        judge: Option<(Models, f64)>,
    ) -> Self {
        let judge_schema = serde_json::json!({
            "type": "object",
            "properties": {
                "score": { "type": "number", "minimum": 0, "maximum": 1 },
                "reason": { "type": "string" }
            },
            "required": ["score", "reason"],
            "additionalProperties": false
        });
        Self {
            blocked_terms: blocked_terms.into_iter().map(|t| t.to_lowercase()).collect(),
            redactor,
            judge,
            judge_schema,
        }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let Some(answer) = input.answer.as_mut() else {
            return Err(StageError::permanent("record has no answer to review"));
        };
        let (redacted, found) = self.redactor.redact(&answer.text);
        answer.text = redacted;
        let lower = answer.text.to_lowercase();
        let mut reasons = Vec::new();
        let blocked: Vec<&String> =
            self.blocked_terms.iter().filter(|t| lower.contains(t.as_str())).collect();
        let verdict = if !blocked.is_empty() {
            reasons.extend(blocked.iter().map(|t| format!("blocked term: {t}")));
            Verdict::Rejected
        } else {
            if input.passages.is_empty() {
                reasons.push("no supporting passages".into());
            }
            if input.classification.as_ref().is_some_and(|c| c.confidence < 0.5) {
                reasons.push("low classification confidence".into());
            }
            if let Some((models, threshold)) = &self.judge {
                let score = self.judge(models, &input, cx).await?;
                if score < *threshold {
                    reasons.push(format!("judge: groundedness {score:.2} below {threshold:.2}"));
                }
            }
            if reasons.is_empty() {
                Verdict::Approved
            } else {
                Verdict::NeedsHuman
            }
        };
        let redactions: usize = found.values().sum();
        for (kind, n) in &found {
            reasons.push(format!("redacted {n} {kind} value(s)"));
        }
        let port = match verdict {
            Verdict::Approved => Port::Main,
            Verdict::NeedsHuman => Port::NeedsHuman,
            Verdict::Rejected => Port::Rejected,
        };
        input.review = Some(ReviewRecord { verdict, reasons, redactions: redactions as i32 });
        Ok(vec![Emit { port, record: input }])
    }

    /// The judge's groundedness score in 0..1; an unusable answer is a retryable failure.
    async fn judge(
        &self,
        models: &Models,
        input: &Envelope,
        cx: StageContext<'_>,
    ) -> Result<f64, StageError> {
        let answer = input.answer.as_ref().map_or("", |a| a.text.as_str());
        let passages: String =
            input.passages.iter().map(|p| format!("[{}] {}\n", p.id, p.text)).collect();
        let request = ChatRequest {
            model: String::new(),
            system: "You judge whether an answer is supported by the given passages. Score 1 when \
                     every claim is supported, 0 when none is."
                .into(),
            user: format!(
                "Passages:\n{passages}\nQuestion: {}\nAnswer: {answer}",
                input.document.content
            ),
            json_schema: Some(self.judge_schema.clone()),
            max_tokens: 100,
        };
        let alias = models.choice.default.clone();
        let served = models
            .gateway
            .chat(&alias, &request, cx.call_key(&input.document).with_prompt(JUDGE_PROMPT))
            .await?;
        let text = &served.value.text;
        let body = json_object(text);
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("score").and_then(serde_json::Value::as_f64))
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| StageError::retryable(format!("judge gave no usable score: {text}")))
    }
}
