//! Token counting and token-window chunking with tiktoken. OpenAI models count exactly
//! (o200k for the 4o/4.1/o-series/5 families, cl100k otherwise); for other vendors' models the
//! count is an estimate, which is all budgets and chunk sizes need.

use tiktoken_rs::CoreBPE;

fn bpe_for(model: &str) -> &'static CoreBPE {
    let m = model.to_ascii_lowercase();
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"];
    if o200k.iter().any(|p| m.starts_with(p)) {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Tokens in `text` for `model`.
pub fn count(model: &str, text: &str) -> usize {
    bpe_for(model).encode_ordinary(text).len()
}

/// Windows of `size` tokens, each starting `size - overlap` tokens after the previous one. A
/// window edge that would split a UTF-8 character is moved to the end of that character.
pub fn chunk(model: &str, text: &str, size: usize, overlap: usize) -> Vec<String> {
    let bpe = bpe_for(model);
    let tokens = bpe.encode_ordinary(text);
    let step = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < tokens.len() {
        let mut end = (start + size).min(tokens.len());
        let piece = loop {
            match bpe.decode(tokens[start..end].to_vec()) {
                Ok(s) => break Some(s),
                Err(_) if end < tokens.len() => end += 1,
                Err(_) => break None,
            }
        };
        if let Some(p) = piece.filter(|p| !p.trim().is_empty()) {
            out.push(p.trim().to_owned());
        }
        if end >= tokens.len() {
            break;
        }
        start += step;
    }
    out
}

/// The longest prefix of `text` that fits in `budget` tokens.
pub fn truncate(model: &str, text: &str, budget: usize) -> String {
    let bpe = bpe_for(model);
    let tokens = bpe.encode_ordinary(text);
    if tokens.len() <= budget {
        return text.to_owned();
    }
    let mut end = budget;
    while end > 0 {
        if let Ok(s) = bpe.decode(tokens[..end].to_vec()) {
            return s;
        }
        end -= 1;
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_token_windows_that_overlap_and_cover_the_text() {
        let text = (0..300).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let chunks = chunk("gpt-4o-mini", &text, 64, 16);
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(count("gpt-4o-mini", c) <= 66, "chunk too long: {}", count("gpt-4o-mini", c));
        }
        assert!(chunks[0].starts_with("w0 "));
        assert!(chunks.last().expect("chunks").ends_with("w299"));
        // Overlap: the start of each chunk appears at the end of the previous one.
        let second_start = chunks[1].split(' ').next().expect("word");
        assert!(chunks[0].contains(second_start));
        assert!(chunk("gpt-4o", "   ", 64, 16).is_empty());
    }

    #[test]
    fn multibyte_text_is_never_split_inside_a_character() {
        let text = "日本語のテキストと絵文字🎉🎉🎉を含む文書。".repeat(20);
        for c in chunk("text-embedding-3-small", &text, 7, 2) {
            assert!(!c.contains('\u{FFFD}'));
        }
        let t = truncate("gpt-4o", &text, 5);
        assert!(text.starts_with(&t) && !t.is_empty());
    }
}
