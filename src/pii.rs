//! PII detection and redaction: e-mail addresses, IBANs (mod-97 checked), payment card numbers
//! (Luhn checked), phone numbers, and the topology's own patterns. Each value found is replaced
//! by a marker such as `[EMAIL]`; the count per kind says what was removed without repeating it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Redacts with the built-in detectors plus configured patterns.
#[derive(Debug, Clone)]
pub struct Redactor {
    custom: Vec<(String, Regex)>,
}

/// What one redaction removed, by kind (`email`, `card`, ... or a custom pattern's name).
pub type Found = BTreeMap<String, usize>;

struct Builtin {
    email: Regex,
    iban: Regex,
    card: Regex,
    phone: Regex,
}

fn builtin() -> &'static Builtin {
    static B: OnceLock<Builtin> = OnceLock::new();
    B.get_or_init(|| Builtin {
        email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
            .expect("email pattern"),
        iban: Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b").expect("iban pattern"),
        card: Regex::new(r"\b[0-9](?:[ -]?[0-9]){12,18}\b").expect("card pattern"),
        phone: Regex::new(
            r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){1,5}",
        )
        .expect("phone pattern"),
    })
}

impl Redactor {
    /// `patterns` were validated when the topology compiled.
    pub fn new(patterns: &BTreeMap<String, String>) -> Self {
        let custom = patterns
            .iter()
            .map(|(name, p)| (name.clone(), Regex::new(p).expect("validated at compile time")))
            .collect();
        Self { custom }
    }

    /// The text with every PII value replaced, and what was found.
    pub fn redact(&self, text: &str) -> (String, Found) {
        let b = builtin();
        let mut found = Found::new();
        let mut out = replace(&b.email, text, "EMAIL", &mut found, |_| true);
        out = replace(&b.iban, &out, "IBAN", &mut found, iban_valid);
        out = replace(&b.card, &out, "CARD", &mut found, luhn_valid);
        out = replace(&b.phone, &out, "PHONE", &mut found, |m| {
            m.chars().filter(char::is_ascii_digit).count() >= 7
        });
        for (name, re) in &self.custom {
            out = replace(re, &out, &name.to_uppercase(), &mut found, |_| true);
        }
        (out, found)
    }

    /// Redacts and returns only the text.
    pub fn clean(&self, text: &str) -> String {
        self.redact(text).0
    }
}

fn replace(
    re: &Regex,
    text: &str,
    marker: &str,
    found: &mut Found,
    valid: impl Fn(&str) -> bool,
) -> String {
    let mut n = 0;
    let out = re.replace_all(text, |c: &Captures<'_>| {
        let m = &c[0];
        if valid(m) {
            n += 1;
            format!("[{marker}]")
        } else {
            m.to_owned()
        }
    });
    if n > 0 {
        *found.entry(marker.to_lowercase()).or_default() += n;
    }
    out.into_owned()
}

/// The Luhn checksum of a card number written with optional spaces or dashes.
pub fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                *d
            }
        })
        .sum();
    sum % 10 == 0
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
pub fn iban_valid(iban: &str) -> bool {
    let s: String = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let rearranged = s[4..].chars().chain(s[..4].chars());
    let mut rem = 0u32;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        for d in if v >= 10 { vec![v / 10, v % 10] } else { vec![v] } {
            rem = (rem * 10 + d) % 97;
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_builtin_kind_and_counts_it() {
        let r = Redactor::new(&[("ticket".to_owned(), r"TCK-[0-9]{6}".to_owned())].into());
        let text =
            "Mail jane.doe@example.co.uk, call +1 (555) 010-0199, card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, ticket TCK-123456, order 42.";
        let (out, found) = r.redact(text);
        assert_eq!(
            out,
            "Mail [EMAIL], call [PHONE], card [CARD], IBAN [IBAN], ticket [TICKET], order 42."
        );
        for kind in ["email", "phone", "card", "iban", "ticket"] {
            assert_eq!(found.get(kind), Some(&1), "{kind}: {found:?}");
        }
    }

    #[test]
    fn checksums_separate_real_numbers_from_look_alikes() {
        assert!(luhn_valid("4111-1111-1111-1111"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
        // Short numbers are left alone.
        let (out, found) = Redactor::new(&BTreeMap::new()).redact("version 2.1, 3 items, 12345");
        assert_eq!(out, "version 2.1, 3 items, 12345");
        assert!(found.is_empty());
    }
}
