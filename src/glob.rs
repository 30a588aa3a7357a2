//! Glob-style matching (spec appendix "Glob-style matching"): `*` matches zero or more
//! characters, `?` exactly one; everything else matches itself.

pub fn matches(pattern: &str, value: &str) -> bool {
    let mut chars = pattern.chars();
    match chars.next() {
        None => value.is_empty(),
        Some('*') => {
            let tail = chars.as_str();
            value
                .char_indices()
                .map(|(i, _)| i)
                .chain([value.len()])
                .any(|i| matches(tail, &value[i..]))
        }
        Some(p) => {
            let mut rest = value.chars();
            match rest.next() {
                Some(c) if p == '?' || p == c => matches(chars.as_str(), rest.as_str()),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("a*c", "ac"));
        assert!(!matches("a*c", "abbb"));
        assert!(matches("?.example.org", "a.example.org"));
        assert!(!matches("?.example.org", ".example.org"));
        assert!(!matches("?.example.org", "ab.example.org"));
        assert!(
            matches("*.ex?mple.*", "x.ex\u{e4}mple.org"),
            "? is one character, not one byte"
        );
        assert!(!matches("abc", "abcd"));
        assert!(matches("", ""));
    }
}
