//! review: redacts e-mail addresses and phone numbers from the answer, rejects answers with
//! blocked terms, and sends ungrounded or sensitive answers to a human; approves the rest.

use crate::avro::{Envelope, Review as ReviewRecord, Verdict};

use super::{Emit, Port, StageContext, StageError};

pub struct Review {
    blocked_terms: Vec<String>,
}

impl Review {
    pub fn new(blocked_terms: Vec<String>) -> Self {
        Self { blocked_terms: blocked_terms.into_iter().map(|t| t.to_lowercase()).collect() }
    }

    pub async fn process(
        &self,
        mut input: Envelope,
        _cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let Some(answer) = input.answer.as_mut() else {
            return Err(StageError::permanent("record has no answer to review"));
        };
        let (redacted, redactions) = redact(&answer.text);
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
            if reasons.is_empty() {
                Verdict::Approved
            } else {
                Verdict::NeedsHuman
            }
        };
        if redactions > 0 {
            reasons.push(format!("redacted {redactions} PII value(s)"));
        }
        let port = match verdict {
            Verdict::Approved => Port::Main,
            Verdict::NeedsHuman => Port::NeedsHuman,
            Verdict::Rejected => Port::Rejected,
        };
        input.review = Some(ReviewRecord { verdict, reasons, redactions: redactions as i32 });
        Ok(vec![Emit { port, record: input }])
    }
}

/// Replaces e-mail addresses and phone numbers (7+ digits) word by word.
pub fn redact(text: &str) -> (String, usize) {
    let mut count = 0;
    let words: Vec<String> = text
        .split(' ')
        .map(|w| {
            let core = w.trim_matches(|c: char| ",.;:()[]<>\"'".contains(c));
            let digits = core.chars().filter(char::is_ascii_digit).count();
            let phone_like =
                digits >= 7 && core.chars().all(|c| c.is_ascii_digit() || "+-(). ".contains(c));
            let email_like =
                core.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.'));
            if email_like {
                count += 1;
                w.replace(core, "[EMAIL]")
            } else if phone_like {
                count += 1;
                w.replace(core, "[PHONE]")
            } else {
                w.to_owned()
            }
        })
        .collect();
    (words.join(" "), count)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_emails_and_phone_numbers() {
        let (text, n) = redact("Write to jane.doe@example.com or call +1-555-0100-22, ref 42.");
        assert_eq!(text, "Write to [EMAIL] or call [PHONE], ref 42.");
        assert_eq!(n, 2);
    }
}
