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

/// Whether `c` would forge a line or hide text in a record: control characters and the
/// bidirectional overrides and isolates.
fn hides(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Bounds `text` in place as [`bounded`] does, leaving it untouched (and unallocated)
/// when it is already as a record keeps it: the common case, on the commit path.
pub fn bound(text: &mut String, max: usize) {
    if !kept_as_is(text, max) {
        *text = bounded(text, max);
    }
}

/// Whether a record keeps `text` as it is. Printable ASCII, nearly every text a record
/// holds, is checked a byte at a time without decoding.
fn kept_as_is(text: &str, max: usize) -> bool {
    text.len() <= max
        && (text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(hides))
}

/// `text` as an audit record keeps it: unchanged when it is at most `max` bytes and
/// hides nothing; otherwise with hiding characters escaped and cut to `max` bytes at a
/// character boundary, followed by the whole text's length and the start of its SHA-256,
/// so a record stays small while still naming exactly what it was given.
pub fn bounded(text: &str, max: usize) -> String {
    if kept_as_is(text, max) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(max.min(text.len()) + 64);
    for c in text.chars() {
        let before = out.len();
        if hides(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(text.as_bytes());
            out.push_str(&format!(
                "… [cut: {} bytes in all, sha256 {}]",
                text.len(),
                hex::encode(&digest[..8])
            ));
            break;
        }
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

    #[test]
    fn bounded_text_keeps_what_fits_and_names_what_it_cut() {
        assert_eq!(
            bounded("refused: \"x\" is not a tag", 64),
            "refused: \"x\" is not a tag"
        );
        assert_eq!(bounded("a\nb\u{202e}", 64), "a\\u{a}b\\u{202e}");
        let id = format!("indicator--{}", "é".repeat(1 << 20));
        let kept = bounded(&id, 100);
        assert!(kept.len() < 160, "{}", kept.len());
        assert!(kept.starts_with("indicator--é"), "{kept}");
        assert!(
            kept.contains("… [cut: 2097163 bytes in all, sha256 "),
            "{kept}"
        );
        assert_eq!(bounded(&id, 100), kept, "the same text, the same record");
    }

    #[test]
    fn bounding_in_place_keeps_what_bounded_would() {
        let long = "x".repeat(300);
        for text in [
            "plain",
            "tab\there",
            "del\u{7f}",
            "\u{2066}iso",
            "é ok",
            &long,
        ] {
            let mut s = text.to_owned();
            bound(&mut s, 100);
            assert_eq!(s, bounded(text, 100), "{text:?}");
        }
    }
}
