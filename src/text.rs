//! Text hygiene for anything that came from AWS (tags, error messages) before it is printed.

/// Replaces control characters (terminal escapes included), invisible format characters and
/// line separators so that a crafted Name tag cannot rewrite the user's terminal, reorder
/// what a table shows (bidirectional overrides) or forge report lines.
pub fn sanitize(text: &str) -> String {
    text.chars().map(|c| if is_unsafe(c) { '\u{fffd}' } else { c }).collect()
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Collapses any run of whitespace into one space and strips control characters.
pub fn one_line(text: &str) -> String {
    sanitize(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `1 instance`, `2 instances`: a count with its noun, plural but for one.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Cuts text to at most `max` characters, marking the cut with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(sanitize("web\u{1b}[2J-1"), "web\u{fffd}[2J-1");
        assert_eq!(sanitize("line\nbreak"), "line\u{fffd}break");
        assert_eq!(sanitize("admin\u{202e}gpj.exe"), "admin\u{fffd}gpj.exe", "bidi override");
        assert_eq!(sanitize("a\u{200b}b\u{2028}c"), "a\u{fffd}b\u{fffd}c");
        assert_eq!(sanitize("prod-web-1 é 日本"), "prod-web-1 é 日本");
    }

    #[test]
    fn counts_are_plural_but_for_one() {
        assert_eq!(count(1, "instance"), "1 instance");
        assert_eq!(count(0, "region"), "0 regions");
        assert_eq!(count(12, "account"), "12 accounts");
    }

    #[test]
    fn one_line_folds_whitespace() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }

    #[test]
    fn truncate_keeps_short_text_and_marks_cuts() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 5), "abcd…");
    }
}
