//! Go's `strconv.Quote` (and `%q`), for the texts Notary builds with it:
//! the `WWW-Authenticate` challenge and the `strconv.ParseInt` errors the
//! changefeed answers with.

use std::fmt::Write as _;

use unicode_general_category::{get_general_category, GeneralCategory as C};

/// Quotes `s` exactly as Go's `strconv.Quote` does: `\a \b \f \n \r \t \v`,
/// `\"` and `\\`; other control bytes as `\xHH`; every other character
/// Go does not print (not a letter, mark, number, punctuation, symbol or
/// the ASCII space) as `\uHHHH`, or `\UHHHHHHHH` above U+FFFF.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: categories L, M, N, P, S and the ASCII space.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        C::Control
            | C::Format
            | C::Surrogate
            | C::PrivateUse
            | C::Unassigned
            | C::SpaceSeparator
            | C::LineSeparator
            | C::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::quote;

    /// Each pair is a string and what Go's `strconv.Quote` returns for it.
    #[test]
    fn matches_go() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("abc", r#""abc""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("\u{0}\u{1}\u{1b}\u{7f}", r#""\x00\x01\x1b\x7f""#),
            ("héllo, 世界", r#""héllo, 世界""#),
            ("\u{a0}", r#""\u00a0""#),   // no-break space: Zs
            ("\u{ad}", r#""\u00ad""#),   // soft hyphen: Cf
            ("\u{85}", r#""\u0085""#),   // NEL: C1 control
            ("\u{200b}", r#""\u200b""#), // zero width space: Cf
            ("\u{2028}", r#""\u2028""#), // line separator
            ("\u{3000}", r#""\u3000""#), // ideographic space
            ("\u{feff}", r#""\ufeff""#),
            ("\u{e000}", r#""\ue000""#),       // private use
            ("\u{10ffff}", r#""\U0010ffff""#), // noncharacter, unassigned
            ("\u{1f600}", "\"\u{1f600}\""),    // emoji: So, printed
            ("\u{e0001}", r#""\U000e0001""#),  // language tag: Cf
            ("-1\u{301}", "\"-1\u{301}\""),    // combining mark: printed
            ("10?x=%00", r#""10?x=%00""#),
        ];
        for (s, go) in cases {
            assert_eq!(quote(s), *go, "quoting {s:?}");
        }
    }
}
