//! A user's search term as an FTS5 `MATCH` expression. The term is the user's text, never FTS5
//! syntax: every word and phrase is re-quoted, so no input can be an FTS5 syntax error (which
//! SQLite reports as a failed query, a 500) or reach FTS5's operators and column filters.
//!
//! What a term may say: words, all of which must match (each also as a prefix: "hel" finds
//! "hello"); `"quoted phrases"`, matched as written; `-word` or `-"phrase"`, which must not
//! match. Words are split where the index splits them (anything not a letter or digit), so the
//! query finds what `unicode61` indexed.

/// The content keys the index holds, as `keys` names them, and their FTS5 column.
pub const KEYS: [(&str, &str); 3] = [
    ("content.body", "body"),
    ("content.name", "name"),
    ("content.topic", "topic"),
];

/// At most this many words or phrases are used; the rest of a long term is ignored.
const MAX_TERMS: usize = 16;
/// A term longer than this is cut (at a character boundary) before it is read.
const MAX_TERM_BYTES: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub struct Term {
    /// The words of the term, lower-cased, separated by single spaces.
    pub text: String,
    /// A bare word also matches as a prefix; a quoted phrase only as written.
    pub prefix: bool,
    pub negated: bool,
}

/// The terms of a search, in the order written.
pub fn terms(search_term: &str) -> Vec<Term> {
    let mut end = search_term.len().min(MAX_TERM_BYTES);
    while !search_term.is_char_boundary(end) {
        end -= 1;
    }
    let input = &search_term[..end];
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let negated = c == '-';
        if negated {
            chars.next();
        }
        let quoted = chars.peek() == Some(&'"');
        let mut raw = String::new();
        if quoted {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                raw.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                raw.push(c);
                chars.next();
            }
        }
        let text = words(&raw);
        if !text.is_empty() {
            out.push(Term {
                text,
                prefix: !quoted,
                negated,
            });
        }
    }
    out.truncate(MAX_TERMS);
    out
}

/// The letters-and-digits runs of `raw`, lower-cased, joined by spaces.
fn words(raw: &str) -> String {
    raw.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `MATCH` expression for `terms` over `columns` (FTS5 column names from `KEYS`), or
/// `None` when nothing positive is asked for (a term of only punctuation or only exclusions
/// matches nothing).
pub fn fts_match(terms: &[Term], columns: &[&str]) -> Option<String> {
    let filter = format!("{{{}}}", columns.join(" "));
    // Every quoted string holds only letters, digits and spaces (see `words`): nothing in it
    // can end the quote.
    let phrase = |t: &Term| {
        let star = if t.prefix { "*" } else { "" };
        format!("{filter} : \"{}\"{star}", t.text)
    };
    let positive: Vec<String> = terms.iter().filter(|t| !t.negated).map(phrase).collect();
    if positive.is_empty() || columns.is_empty() {
        return None;
    }
    let mut expr = format!("({})", positive.join(" AND "));
    for t in terms.iter().filter(|t| t.negated) {
        expr.push_str(" NOT ");
        expr.push_str(&phrase(t));
    }
    Some(expr)
}

/// The words to highlight in results: those of the positive terms.
pub fn highlights(terms: &[Term]) -> Vec<String> {
    let mut out: Vec<String> = terms
        .iter()
        .filter(|t| !t.negated)
        .flat_map(|t| t.text.split(' ').map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(term: &str) -> Option<String> {
        fts_match(&terms(term), &["body"])
    }

    #[test]
    fn words_are_quoted_prefixes_all_required() {
        assert_eq!(
            expr("Hello, World").as_deref(),
            Some(r#"({body} : "hello"* AND {body} : "world"*)"#)
        );
    }

    #[test]
    fn phrases_and_exclusions() {
        assert_eq!(
            fts_match(&terms(r#""big cat" -dog -"red fox""#), &["body", "name"]).as_deref(),
            Some(
                r#"({body name} : "big cat") NOT {body name} : "dog"* NOT {body name} : "red fox""#
            )
        );
    }

    #[test]
    fn fts_syntax_in_the_term_is_only_text() {
        // Operators, column filters, quotes, stars, parentheses, NEAR: all just words or dropped.
        assert_eq!(
            expr(r#"body:secret OR (x AND "y NEAR(z* ^a"#).as_deref(),
            Some(
                r#"({body} : "body secret"* AND {body} : "or"* AND {body} : "x"* AND {body} : "and"* AND {body} : "y near z a")"#
            )
        );
        assert_eq!(expr(r#"a"b"#).as_deref(), Some(r#"({body} : "a b"*)"#));
    }

    #[test]
    fn nothing_positive_matches_nothing() {
        assert_eq!(expr(""), None);
        assert_eq!(expr("  !!! ??? \"\" - "), None);
        assert_eq!(expr("-only -exclusions"), None);
        assert_eq!(fts_match(&terms("x"), &[]), None);
    }

    #[test]
    fn unicode_words_and_long_terms_are_bounded() {
        assert_eq!(
            expr("Café 東京 ü").as_deref(),
            Some(r#"({body} : "café"* AND {body} : "東京"* AND {body} : "ü"*)"#)
        );
        assert_eq!(terms(&"w ".repeat(100)).len(), MAX_TERMS);
        // A cut inside a multi-byte character does not panic.
        let long = "é".repeat(MAX_TERM_BYTES);
        assert!(!terms(&long).is_empty());
    }

    #[test]
    fn highlights_are_the_positive_words() {
        assert_eq!(
            highlights(&terms(r#"Hello "big world" -nope hello"#)),
            vec!["big", "hello", "world"]
        );
    }
}
