//! Glob-style matching (spec appendix "Glob-style matching"): `*` matches zero or more
//! characters, `?` exactly one; everything else matches itself.

/// Runs in O(pattern x value) steps at worst. Patterns come from strangers (a server ACL event
/// from a remote server, a client's filter), so backtracking into every `*` is not an option:
/// `*a*a*a*a*a*a*a*a*b` against a long run of `a`s would take exponential time. Only the last
/// `*` seen is ever resumed: a later `*` can absorb whatever an earlier one would have.
pub fn matches(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    let (mut p, mut v) = (0, 0);
    // The position after the last `*`, and how much of the value it has absorbed so far.
    let mut resume: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                resume = Some((p, v));
            }
            Some(&c) if c == '?' || c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match resume {
                // Let the `*` absorb one more character and try again from there.
                Some((after_star, absorbed)) => {
                    p = after_star;
                    v = absorbed + 1;
                    resume = Some((after_star, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
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

    /// Found by the glob fuzz target (src/fuzz/sync.rs): the recursive matcher took
    /// exponential time on many stars, with the pattern from a remote server's ACL event.
    #[test]
    fn many_stars_against_a_long_value_answer_at_once() {
        let pattern = "*a".repeat(12) + "*b";
        let value = "a".repeat(200);
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &value));
        assert!(matches(&pattern, &(value + "b")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
