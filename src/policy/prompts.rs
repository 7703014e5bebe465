//! Prompt templates: `{{document}}`, `{{label}}`, `{{tenant}}` and `{{passages}}` filled in.

use crate::config::PromptSpec;

/// The values a template may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fill<'a> {
    pub document: &'a str,
    pub label: &'a str,
    pub tenant: &'a str,
    pub passages: &'a str,
    pub labels: &'a str,
}

/// The template with every placeholder replaced (placeholders were checked at compile time).
pub fn render(template: &str, fill: &Fill<'_>) -> String {
    let mut out = String::with_capacity(template.len() + fill.document.len() + fill.passages.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        out.push_str(&rest[..start]);
        out.push_str(match rest[start + 2..start + 2 + len].trim() {
            "document" => fill.document,
            "label" => fill.label,
            "tenant" => fill.tenant,
            "passages" => fill.passages,
            "labels" => fill.labels,
            _ => "",
        });
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// System and user messages of a prompt.
pub fn messages(spec: &PromptSpec, fill: &Fill<'_>) -> (String, String) {
    (render(&spec.system, fill), render(&spec.user, fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder() {
        let fill = Fill {
            document: "Why?",
            label: "billing",
            tenant: "acme",
            passages: "[kb-1] x",
            labels: "billing, legal",
        };
        assert_eq!(
            render("{{ label }} for {{tenant}}:\n{{passages}}\nQ: {{document}} {{", &fill),
            "billing for acme:\n[kb-1] x\nQ: Why? {{"
        );
    }
}
