//! Canonical JSON as Notary writes it (docker/go `canonical/json`).
//!
//! * object keys sorted by their UTF-8 bytes, no whitespace;
//! * integers only (a fraction or exponent is refused);
//! * in strings only `"` and `\` are escaped, plus U+2028 and U+2029 as
//!   `\u2028`/`\u2029`; every other character, including control
//!   characters, is written as it is (this is what Notary's encoder does in
//!   canonical mode, and signatures are made over exactly those bytes).
//!
//! Parsing refuses duplicate object keys, so a document cannot mean one
//! thing to Seal and another to a client that keeps the first occurrence
//! (Cure53 TUF-01-001).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value restricted to what canonical JSON can carry.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// An integer (JSON numbers with a fraction or exponent are refused).
    Int(i128),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; keys are kept sorted by their bytes.
    Object(BTreeMap<String, Value>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_canonical()))
    }
}

/// Why a byte string is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

impl Value {
    /// Parses JSON bytes, refusing duplicate keys, non-integer numbers and
    /// trailing data. Nesting is bounded by serde_json's recursion limit.
    pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = Value::deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
        de.end().map_err(|e| JsonError(e.to_string()))?;
        Ok(value)
    }

    /// The canonical encoding of this value.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical encoding of this value to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        write_with(self, out, write_string);
    }

    /// The object's map, if this is an object.
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Member `key` of an object (None for other values or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// An object from pairs.
    pub fn object<I, K>(pairs: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Writes `value` compactly, object keys in their (sorted) map order, each string (keys too)
/// by `string`: the walk every canonical-JSON dialect of this crate shares (Notary's here,
/// TUF 1.0's in [`crate::tuf1::cjson`]), which differ only in how strings are escaped.
pub(crate) fn write_with(value: &Value, out: &mut Vec<u8>, string: fn(&str, &mut Vec<u8>)) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_with(item, out, string);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (n, (k, v)) in map.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write_with(v, out, string);
            }
            out.push(b'}');
        }
    }
}

/// Writes a canonical JSON string: only `"` and `\` escaped (and U+2028,
/// U+2029, as Notary's encoder does).
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    // `"` and `\` are single bytes, and U+2028/U+2029 are the only
    // characters encoded as E2 80 A8/A9 (`s` is valid UTF-8).
    for i in memchr::memchr3_iter(b'"', b'\\', 0xE2, bytes) {
        let escape: &[u8] = match &bytes[i..] {
            [b'"', ..] => b"\\\"",
            [b'\\', ..] => b"\\\\",
            [0xE2, 0x80, 0xA8, ..] => b"\\u2028",
            [0xE2, 0x80, 0xA9, ..] => b"\\u2029",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + if escape.len() == 2 { 1 } else { 3 };
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value with integer numbers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Value, E> {
        Err(E::custom(
            "non-integer or out-of-range number: canonical JSON carries integers only",
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate object key {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let v = Value::parse(br#" { "b" : [1, 2, {"z":null,"a":true}], "a" : "x" } "#).unwrap();
        assert_eq!(v.to_canonical(), br#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#);
    }

    #[test]
    fn escapes_only_quote_backslash_and_line_separators() {
        let v = Value::str("a\"b\\c<>&\u{2028}\u{2029}é\n\t");
        assert_eq!(v.to_canonical(), "\"a\\\"b\\\\c<>&\\u2028\\u2029é\n\t\"".as_bytes());
    }

    #[test]
    fn refuses_floats_duplicates_and_trailing_data() {
        assert!(Value::parse(b"1.5").is_err());
        assert!(Value::parse(b"1e3").is_err());
        assert!(Value::parse(br#"{"a":1,"a":2}"#).is_err());
        assert!(Value::parse(b"{} {}").is_err());
        assert!(Value::parse(b"[1,]").is_err());
        assert!(Value::parse(b"99999999999999999999999").is_err());
    }

    #[test]
    fn keeps_negative_and_large_integers() {
        let v = Value::parse(b"[-5, 18446744073709551615]").unwrap();
        assert_eq!(v.to_canonical(), b"[-5,18446744073709551615]");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(Value::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn key_order_is_by_bytes() {
        let v = Value::parse(br#"{"b":1,"B":2,"a":3,"_type":4}"#).unwrap();
        assert_eq!(v.to_canonical(), br#"{"B":2,"_type":4,"a":3,"b":1}"#);
    }
}
