//! generate: fills the prompt template with the document, its classification and passages,
//! calls the model and records the answer with its provenance (model, prompt version, usage).

use crate::avro::{Answer, Envelope};
use crate::provider::{ChatRequest, Provider};

use super::{Emit, StageContext, StageError};

pub struct Generate {
    provider: Provider,
    model: String,
    prompt_version: String,
    max_output_tokens: u32,
}

impl Generate {
    pub fn new(
        provider: Provider,
        model: String,
        prompt_version: String,
        max_output_tokens: u32,
    ) -> Self {
        Self { provider, model, prompt_version, max_output_tokens }
    }

    fn prompt(&self, input: &Envelope) -> String {
        let mut p = String::new();
        if let Some(c) = &input.classification {
            p.push_str(&format!("Topic: {}\n", c.label));
        }
        for passage in &input.passages {
            p.push_str(&format!("Context [{}]: {}\n", passage.id, passage.text));
        }
        p.push_str(&format!("Question: {}\n", input.document.content));
        p
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let request = ChatRequest {
            model: self.model.clone(),
            system: "Answer the question using only the context passages; cite them by id.".into(),
            user: self.prompt(&input),
            json_schema: None,
            max_tokens: self.max_output_tokens,
        };
        let response = self.provider.chat(&request, cx.call_key(&input.document.id)).await?;
        input.answer = Some(Answer {
            text: response.text,
            model: response.model,
            prompt_version: self.prompt_version.clone(),
            input_tokens: response.input_tokens as i64,
            output_tokens: response.output_tokens as i64,
            finish_reason: response.finish_reason,
            latency_ms: response.latency.as_millis() as i64,
        });
        Ok(vec![Emit::main(input)])
    }
}
