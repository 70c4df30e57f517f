//! Human text, the same everywhere it is shown (the console line, the
//! host report, the probe): control characters escaped (a subject or an
//! SNI with "\x1b[2J" must not clear the terminal), long lists and texts
//! capped, counts and durations in words.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

/// An error and its causes on one line, "outer: inner: innermost": error
/// messages here (as aya's) do not repeat their `source()`, so whatever
/// shows an error to a person shows it through this.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}

/// "a, b, c and 1,497 more".
pub fn cap_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    let shown = items.get(..max).unwrap_or(items).join(", ");
    format!("{shown} and {} more", thousands(items.len() - max))
}

/// 1497 → "1,497".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "3 days", "5 hours", "12 minutes", "40 seconds" (the largest unit).
pub fn duration_words(d: chrono::Duration) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let per = match secs {
        0..=119 => 1,
        120..=7199 => 60,
        7200..=172_799 => 3600,
        _ => 86_400,
    };
    let unit = match per {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        _ => "day",
    };
    // Nearest, so "4 days 23:59:59" from a moment ago reads "5 days".
    let n = (secs + per / 2) / per;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `text` cut to `max` characters, saying how much was cut.
pub fn cap_text(text: &str, max: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= max {
        return Cow::Borrowed(text);
    }
    let kept: String = text.chars().take(max).collect();
    Cow::Owned(format!(
        "{kept}… ({} more characters)",
        thousands(count - max)
    ))
}

/// Characters that must not reach a terminal raw: C0 and C1 controls, DEL,
/// and the bidirectional overrides that reorder what is shown.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control characters shown as escapes (`\x1b`, `\u{202e}`),
/// for human output. Newlines and tabs are escaped too: one value, one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let code = c as u32;
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// "expires in 5 days", "expired 3 hours ago": a certificate's end of
/// validity relative to `now`.
pub fn expiry_words(not_after: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = not_after - now;
    if left >= chrono::Duration::zero() {
        format!("expires in {}", duration_words(left))
    } else {
        format!("expired {} ago", duration_words(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_capped_with_a_count() {
        let names: Vec<String> = (0..1500).map(|i| format!("n{i}.example")).collect();
        let text = cap_list(&names, 3);
        assert_eq!(text, "n0.example, n1.example, n2.example and 1,497 more");
        assert_eq!(cap_list(&names[..2], 3), "n0.example, n1.example");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(chrono::Duration::seconds(40)), "40 seconds");
        assert_eq!(duration_words(chrono::Duration::minutes(12)), "12 minutes");
        assert_eq!(duration_words(chrono::Duration::days(5)), "5 days");
        assert_eq!(duration_words(chrono::Duration::days(-1)), "24 hours");
        assert_eq!(
            duration_words(chrono::Duration::days(5) - chrono::Duration::seconds(3)),
            "5 days"
        );
    }

    #[test]
    fn texts_are_cut_on_characters() {
        let long = "é".repeat(1200);
        let cut = cap_text(&long, 1000);
        assert!(cut.starts_with(&"é".repeat(1000)));
        assert!(cut.ends_with("… (200 more characters)"), "{cut}");
        assert!(matches!(cap_text("short", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn expiry_in_words() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            expiry_words(now + chrono::Duration::days(12), now),
            "expires in 12 days"
        );
        assert_eq!(
            expiry_words(now - chrono::Duration::hours(3), now),
            "expired 3 hours ago"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("CN=ok.example"), "CN=ok.example");
        assert_eq!(escape("evil\x1b[2J\r\nname"), "evil\\x1b[2J\\x0d\\x0aname");
        assert_eq!(escape("a\u{202e}b\u{85}c\x7f"), "a\\u{202e}b\\x85c\\x7f");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }
}
