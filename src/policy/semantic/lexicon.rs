//! The guard's word lists (English): negations, number words, and groups of mutually exclusive
//! words — two questions that each name a different member of one group (daily / weekly,
//! enable / disable, Monday / Friday) are not the same question. Each member lists its forms.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Words that negate what follows. Contractions (`don't`, `can't`) are recognised by their
/// `n't` ending, and also without the apostrophe (see [`CONTRACTIONS`]).
pub const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "cannot",
    "without",
];

/// `n't` contractions as typed without the apostrophe.
pub const CONTRACTIONS: &[&str] = &[
    "dont", "doesnt", "didnt", "cant", "wont", "isnt", "arent", "wasnt", "werent", "havent",
    "hasnt", "hadnt", "couldnt", "shouldnt", "wouldnt", "mustnt", "neednt", "aint",
];

/// Number words and the digits they stand for.
pub const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("twice", "2"),
];

/// Groups of mutually exclusive members; a member is its forms separated by `|`.
pub const GROUPS: &[&[&str]] = &[
    // Periods: a duration, a frequency, a billing cycle.
    &[
        "second|seconds|sec|secs",
        "minute|minutes|min|mins",
        "hour|hours|hourly",
        "day|days|daily",
        "week|weeks|weekly",
        "month|months|monthly",
        "quarter|quarters|quarterly",
        "year|years|yearly|annual|annually",
    ],
    &["today|tonight", "tomorrow", "yesterday"],
    &[
        "monday|mondays",
        "tuesday|tuesdays",
        "wednesday|wednesdays",
        "thursday|thursdays",
        "friday|fridays",
        "saturday|saturdays",
        "sunday|sundays",
    ],
    // `may` counts as a month only beside a number (see the guard).
    &[
        "january|jan",
        "february|feb",
        "march|mar",
        "april|apr",
        "may",
        "june|jun",
        "july|jul",
        "august|aug",
        "september|sep|sept",
        "october|oct",
        "november|nov",
        "december|dec",
    ],
    &["add|adds|added|adding", "remove|removes|removed|removing"],
    &["enable|enables|enabled|enabling", "disable|disables|disabled|disabling"],
    &["on", "off"],
    &["upgrade|upgrades|upgraded|upgrading", "downgrade|downgrades|downgraded|downgrading"],
    &["pause|pauses|paused|pausing", "resume|resumes|resumed|resuming|unpause"],
    &["open|opens|opened|reopen|reopens|reopened", "close|closes|closed|closing"],
    &["public", "private"],
    &["undo", "redo"],
    &["include|includes|included|including", "exclude|excludes|excluded|excluding"],
    &["increase|increases|increased|raise", "decrease|decreases|decreased|reduce|reduced|lower"],
    &["import|imports|imported|importing", "export|exports|exported|exporting"],
    &["allow|allows|allowed|unblock", "block|blocks|blocked|deny|denied"],
    &[
        "approve|approves|approved|accept|accepts|accepted",
        "reject|rejects|rejected|decline|declined",
    ],
    &["start|starts|started|starting", "stop|stops|stopped|stopping"],
    &["before", "after"],
    &["more", "less|fewer"],
    &["first", "last"],
    &["next", "previous|prior"],
    &["create|creates|created|generate|generated", "revoke|revokes|revoked"],
    &["delete|deletes|deleted|erase|erased", "restore|restores|restored|recover|recovered"],
    &["merge|merges|merged|combine|combined", "split|splits|separate"],
    &["live|production|prod", "sandbox|test|staging"],
    &["valid", "invalid"],
    &["lock|locks|locked", "unlock|unlocks|unlocked"],
];

/// The `(group, member)` that `word` (lowercase) names, if any.
pub fn group_of(word: &str) -> Option<(u16, u16)> {
    static FORMS: LazyLock<HashMap<&'static str, (u16, u16)>> = LazyLock::new(|| {
        let mut forms = HashMap::new();
        for (g, members) in GROUPS.iter().enumerate() {
            for (m, member) in members.iter().enumerate() {
                for form in member.split('|') {
                    forms.entry(form).or_insert((g as u16, m as u16));
                }
            }
        }
        forms
    });
    FORMS.get(word).copied()
}

/// `word` (lowercase) as digits, if it is a number word.
pub fn number_word(word: &str) -> Option<&'static str> {
    NUMBER_WORDS.iter().find(|(w, _)| *w == word).map(|(_, d)| *d)
}

/// Whether `word` (lowercase) negates.
pub fn is_negation(word: &str) -> bool {
    NEGATIONS.contains(&word)
        || CONTRACTIONS.contains(&word)
        || word.ends_with("n't") && word.len() > 3
}

/// Prefixes that reverse a word: `lock`/`unlock`, `connect`/`disconnect`, `activate`/`deactivate`.
pub const REVERSING_PREFIXES: &[&str] = &["un", "dis", "de", "in", "non"];

/// Words a direction's endpoint is read past: `from my card` is `card`.
pub const DETERMINERS: &[&str] =
    &["the", "a", "an", "my", "our", "your", "their", "his", "her", "its", "this", "that", "some"];

/// Words that end a direction's endpoint: `to annual instead of monthly` is `annual`.
pub const ENDPOINT_STOPS: &[&str] = &[
    "to", "into", "from", "and", "or", "but", "instead", "rather", "for", "with", "on", "in", "at",
    "by", "of", "please", "because", "so", "then", "than", "as", "if", "when",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_names_one_member_only() {
        let mut seen = std::collections::HashMap::new();
        for (g, members) in GROUPS.iter().enumerate() {
            for (m, forms) in members.iter().enumerate() {
                for f in forms.split('|') {
                    if let Some(prev) = seen.insert(f, (g, m)) {
                        panic!("'{f}' is in {prev:?} and {:?}", (g, m));
                    }
                }
            }
        }
    }

    #[test]
    fn words_are_classified() {
        assert_eq!(group_of("annually"), group_of("yearly"));
        assert_ne!(group_of("monthly"), group_of("annual"));
        assert_eq!(number_word("twelve"), Some("12"));
        assert!(is_negation("don't") && is_negation("havent") && is_negation("never"));
        assert!(!is_negation("want") && !is_negation("nt"));
    }
}
