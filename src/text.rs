//! Quoting text that came from outside (a peer's frame, a file, a command line) in error
//! messages, log lines and audit records: escaped, so it cannot forge a line or hide
//! characters, and bounded, so a megabyte of it cannot become a megabyte of record.
//!
//! Pure string functions; what to quote is the caller's choice.

/// Characters of quoted text kept, counted after escaping.
pub const EXCERPT_CHARS: usize = 80;

/// `text` in double quotes, with control and invisible characters escaped as Rust
/// escapes them, cut to [`EXCERPT_CHARS`] escaped characters; a cut says how long the
/// whole was.
pub fn excerpt(text: &str) -> String {
    excerpt_of(text, EXCERPT_CHARS)
}

/// [`excerpt`] with a limit of `max` escaped characters.
pub fn excerpt_of(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(text.len()) + 24);
    out.push('"');
    let mut kept = 0;
    let mut cut = false;
    for c in text.chars() {
        let escaped = c.escape_debug();
        let len = escaped.len();
        if kept + len > max {
            cut = true;
            break;
        }
        kept += len;
        out.extend(escaped);
    }
    out.push('"');
    if cut {
        out.push_str(&format!("… ({} bytes in all)", text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_and_escaped_whole() {
        assert_eq!(excerpt("jp-mod"), "\"jp-mod\"");
        assert_eq!(excerpt("a\nb\u{202E}c\"d"), "\"a\\nb\\u{202e}c\\\"d\"");
    }

    #[test]
    fn a_megabyte_of_control_characters_stays_short() {
        let hostile = "\u{1}".repeat(1 << 20);
        let quoted = excerpt(&hostile);
        assert!(quoted.len() < EXCERPT_CHARS + 40, "{}", quoted.len());
        assert!(quoted.ends_with("… (1048576 bytes in all)"), "{quoted}");
        assert!(quoted.starts_with("\"\\u{1}\\u{1}"), "{quoted}");
        // An escape is never cut in half.
        assert!(quoted.contains("\\u{1}\"…"), "{quoted}");
    }
}
