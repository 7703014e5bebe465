//! A stage's access to models: the process's gateway plus the stage's model choice (a default
//! and routing rules).

use std::sync::Arc;

use crate::avro::Envelope;
use crate::config::ModelChoice;
use crate::policy::{router, Gateway, RouteInput};
use crate::tokens;

#[derive(Clone)]
pub struct Models {
    pub gateway: Arc<Gateway>,
    pub choice: ModelChoice,
}

impl Models {
    /// The logical model routing picks for this record.
    pub fn pick(&self, input: &Envelope) -> &str {
        if self.choice.routes.is_empty() {
            return &self.choice.default;
        }
        let counting_model =
            self.gateway.model(&self.choice.default).map_or("", |m| m.name.as_str());
        let route_input = RouteInput {
            label: input.classification.as_ref().map(|c| c.label.as_str()),
            tenant: &input.document.tenant,
            tokens: tokens::count(counting_model, &input.document.content),
            metadata: &input.document.metadata,
        };
        router::choose(&self.choice, &route_input)
    }

    /// The provider's name for a logical model, for token counting.
    pub fn model_name<'a>(&'a self, alias: &'a str) -> &'a str {
        self.gateway.model(alias).map_or(alias, |m| m.name.as_str())
    }
}

/// How records name the model that served them: `provider/model`.
pub fn served_name(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// The JSON object in a model's answer: servers that ignore structured-output requests often
/// wrap it in prose or a code fence.
pub fn json_object(text: &str) -> &str {
    text.find('{').zip(text.rfind('}')).filter(|(a, b)| a < b).map_or(text, |(a, b)| &text[a..=b])
}
