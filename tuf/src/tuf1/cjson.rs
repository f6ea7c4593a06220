//! Canonical JSON as securesystemslib's `encode_canonical` writes it (the
//! OLPC dialect that python-tuf, go-tuf and tough sign over).
//!
//! * object keys sorted by code point (the same order as their UTF-8 bytes),
//!   no whitespace, integers only;
//! * in strings only `\` and `"` are escaped; every other character,
//!   control characters and U+2028/U+2029 included, is written as it is.
//!   (Notary's dialect in [`crate::cjson`] also escapes U+2028/U+2029, so
//!   the two writers differ.)
//!
//! Canonical JSON is what signatures cover, not what files hold: it writes
//! control characters (the newlines of every PEM key) raw, which strict
//! JSON parsers (Python's `json.loads`, serde_json) refuse. Files are
//! written with [`to_json`]: the same compact, sorted form with strings
//! escaped as JSON requires.
//!
//! Parsing is [`crate::cjson::Value::parse`], which refuses duplicate keys,
//! numbers with a fraction or exponent, and trailing data.

use crate::cjson::{write_with, Value};

/// The canonical encoding of `value`.
pub fn to_canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write(value, &mut out);
    out
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    write_with(value, out, write_string)
}

/// `value` as valid JSON for a file: compact, keys sorted, control
/// characters escaped (`\n`, `\u001f`…), everything else as canonical.
pub fn to_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_with(value, &mut out, write_json_string);
    out
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_quote_and_backslash() {
        let v = Value::str("a\"b\\c<>&\u{2028}\u{2029}é\n\t\u{1}");
        assert_eq!(
            to_canonical(&v),
            "\"a\\\"b\\\\c<>&\u{2028}\u{2029}é\n\t\u{1}\"".as_bytes()
        );
    }

    #[test]
    fn sorts_by_code_point_without_whitespace() {
        let v =
            Value::parse(r#"{"b":[1, -2,{"é":null,"z":true,"a":false}],"B":"x","_type":"root"}"#.as_bytes()).unwrap();
        assert_eq!(
            to_canonical(&v),
            r#"{"B":"x","_type":"root","b":[1,-2,{"a":false,"z":true,"é":null}]}"#.as_bytes()
        );
    }

    #[test]
    fn file_json_escapes_control_characters_and_parses_back() {
        let v = Value::parse(br#"{"k":"-----BEGIN\nx\ty\u0001\"\\\u2028"}"#).unwrap();
        let json = to_json(&v);
        assert_eq!(json, "{\"k\":\"-----BEGIN\\nx\\ty\\u0001\\\"\\\\\u{2028}\"}".as_bytes());
        assert_eq!(Value::parse(&json).unwrap(), v);
        assert!(
            Value::parse(&to_canonical(&v)).is_err(),
            "canonical form is not a JSON file"
        );
    }

    #[test]
    fn parse_refuses_duplicate_keys_and_floats() {
        assert!(Value::parse(br#"{"signed":{},"signed":{}}"#).is_err());
        assert!(Value::parse(br#"{"version":1.0}"#).is_err());
    }
}
