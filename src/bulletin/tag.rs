//! Tags as people read them. A denied tag must catch every spelling that reads the same:
//! fullwidth or other compatibility forms, another case, a decomposed accent, a dotted
//! or dotless I, a letter of another script that looks the same (Cyrillic `а` for `a`,
//! by Unicode's confusables, UTS #39, through `unicode-security`), any dash or minus. Characters nobody sees (zero-width, soft hyphen, bidi controls) are
//! refused in tags outright rather than folded, so no tag can hide one.
//!
//! Pure functions over text; the policy compares folded tags, the bulletin checks
//! refuse invisible characters.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization as _;

/// The form in which tags are compared: compatibility-decomposed (NFKD), with the marks
/// that only decorate a letter (accents, the dot of `İ`) dropped, lowercased, with the
/// dotless `ı`, `ß` and final `ς` folded, every dash and minus as `-`, then reduced to
/// its UTS #39 skeleton (what it looks like: `а` → `a`, `1` → `l`) and composed again
/// (NFC); trimmed. Folding may match more than the operator wrote, which for a denied
/// tag errs on the side of withholding.
pub fn fold(tag: &str) -> String {
    let bare: String = tag
        .trim()
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    let mut folded = String::with_capacity(bare.len());
    for c in bare.chars().flat_map(char::to_lowercase) {
        match c {
            'ı' => folded.push('i'),
            'ß' => folded.push_str("ss"),
            'ς' => folded.push('σ'),
            c if is_dash(c) => folded.push('-'),
            c => folded.push(c),
        }
    }
    let skeleton: String = unicode_security::confusable_detection::skeleton(&folded).collect();
    skeleton.nfc().collect()
}

/// A dash or a minus sign: Unicode's dash punctuation, the minus sign and its kin.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{058A}' | '\u{05BE}' | '\u{1400}' | '\u{1806}' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2053}'
                | '\u{207B}'
                | '\u{208B}'
                | '\u{2212}'
                | '\u{2E17}'
                | '\u{2E1A}'
                | '\u{2E3A}'
                | '\u{2E3B}'
                | '\u{2E40}'
                | '\u{301C}'
                | '\u{3030}'
                | '\u{30A0}'
                | '\u{FE31}'
                | '\u{FE32}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
    )
}

/// A character that takes no visible space of its own: Unicode's default-ignorable code
/// points (zero-width spaces and joiners, the soft hyphen, bidi controls, variation
/// selectors, tag characters and the like).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
        | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Why a tag cannot be used, if it cannot: empty, or holding a control or invisible
/// character.
pub fn problem(tag: &str) -> Option<&'static str> {
    if tag.trim().is_empty() {
        Some("is empty")
    } else if tag.chars().any(char::is_control) {
        Some("contains a control character")
    } else if tag.chars().any(is_invisible) {
        Some("contains an invisible character (zero-width, soft hyphen, bidi control or the like)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_that_reads_the_same_folds_the_same() {
        let denied = fold("national-only");
        for variant in [
            "National-Only",
            "NATIONAL-ONLY",
            "  national-only ",
            "ｎａｔｉｏｎａｌ－ｏｎｌｙ",   // fullwidth
            "NATİONAL-ONLY",                // dotted capital I
            "natıonal-only",                // dotless small i
            "nati\u{0307}onal-only",        // i with a combining dot
            "nationa\u{006C}-only",         // plain, for the table's sake
            "n\u{0061}\u{0301}tional-only", // a with a combining acute
            "nátional-only",                // precomposed á
            "national\u{2010}only",         // hyphen
            "national\u{2013}only",         // en dash
            "national\u{2212}only",         // minus sign
            "n\u{0430}tional-only",         // Cyrillic а
            "nаtiоnаl-оnlу",                // Cyrillic а, о, у
        ] {
            assert_eq!(fold(variant), denied, "{variant:?}");
        }
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_ne!(fold("national-only"), fold("national"));
    }

    #[test]
    fn invisible_characters_are_refused_not_folded() {
        for hidden in [
            "national\u{200B}-only", // zero-width space
            "national\u{200D}-only", // zero-width joiner
            "national\u{00AD}-only", // soft hyphen
            "\u{202E}ylno-lanoitan", // right-to-left override
            "national-only\u{2066}", // left-to-right isolate
            "\u{FEFF}national-only", // byte order mark
        ] {
            assert!(
                problem(hidden).is_some_and(|p| p.contains("invisible")),
                "{hidden:?}"
            );
        }
        assert_eq!(problem("tab\there"), Some("contains a control character"));
        assert_eq!(problem(" "), Some("is empty"));
        assert_eq!(problem("exercise-x"), None);
        assert_eq!(problem("演習"), None);
    }
}
