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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
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
        // Straight into the owned tree: faster than [`Json::parse`] and a conversion. The two
        // accept and refuse the same bytes alike (tests below compare them).
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

/// A JSON value parsed from bytes that it borrows from: strings without escapes are slices of
/// the input, and an object is one vector of its members sorted by key bytes (the order
/// canonical JSON writes) instead of a map of owned keys. It accepts and refuses what
/// [`Value::parse`] does, with the same messages, and [`Json::to_value`] is the tree
/// [`Value::parse`] builds (tests below compare the two parses); validation reads uploads
/// through it, so that a file is parsed without an allocation per string and per member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json<'a> {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A string, borrowed unless it held an escape.
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object's members, sorted by key bytes, keys distinct.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses JSON bytes with [`Value::parse`]'s rules: duplicate keys, non-integer numbers
    /// and trailing data are refused, nesting is bounded by serde_json's recursion limit.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Json<'a>, JsonError> {
        if let Some(parsed) = fast::parse(bytes, "") {
            return Ok(parsed.json);
        }
        Json::parse_serde(bytes)
    }

    /// [`Json::parse`], with the raw text of the top-level object's member `member` when
    /// that text is its canonical encoding (a compact, sorted, escape-free file as Notary
    /// writes it): then it is the bytes [`Json::to_canonical`] would write.
    pub(crate) fn parse_noting(bytes: &'a [u8], member: &str) -> Result<(Json<'a>, Option<&'a [u8]>), JsonError> {
        if let Some(parsed) = fast::parse(bytes, member) {
            return Ok((parsed.json, parsed.canonical_member));
        }
        Ok((Json::parse_serde(bytes)?, None))
    }

    /// [`Json::parse`] by serde_json alone.
    fn parse_serde(bytes: &'a [u8]) -> Result<Json<'a>, JsonError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = Json::deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
        de.end().map_err(|e| JsonError(e.to_string()))?;
        Ok(value)
    }

    /// The same value as an owned [`Value`].
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::Int(*i),
            Json::Str(s) => Value::String(s.as_ref().to_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            // Already sorted and distinct: the map is built from a sorted run.
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.as_ref().to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The canonical encoding of this value: the same bytes as [`Value::to_canonical`] of
    /// [`Json::to_value`].
    pub(crate) fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Json::Str(s) => write_string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Json::Object(members) => {
                out.push(b'{');
                for (n, (k, v)) in members.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    v.write_canonical(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A parser for the JSON Notary writes, tried before serde_json: compact or not, but with
/// no escape in any string, no negative or non-integer number, and every object's keys in
/// strictly increasing byte order. It gives up (None) on anything else, and the input is
/// then parsed by serde_json, whose result (value or error) stands. What it accepts,
/// serde_json accepts too, as the same tree, so it changes what a parse costs, never what
/// it yields. It also finds the raw text of one member of the top-level object when that
/// text is already canonical, so that the canonical bytes need not be written again.
mod fast {
    use std::borrow::Cow;
    use std::collections::BTreeSet;

    use super::Json;

    /// Below serde_json's recursion limit (128), so anything deeper is left to it.
    const MAX_DEPTH: usize = 100;

    pub(super) struct Parsed<'a> {
        pub(super) json: Json<'a>,
        /// The text of the wanted member's value, if it is canonical as written.
        pub(super) canonical_member: Option<&'a [u8]>,
    }

    /// Parses `bytes`, noting the raw text of top-level member `want`.
    pub(super) fn parse<'a>(bytes: &'a [u8], want: &str) -> Option<Parsed<'a>> {
        // JSON that serde_json accepts is valid UTF-8 throughout (any byte outside ASCII
        // must be inside a string, where it must be UTF-8): checked once here, so that a
        // string is a slice of this `str`.
        let text = std::str::from_utf8(bytes).ok()?;
        let mut p = Parser {
            text,
            b: bytes,
            i: 0,
            want,
            found: None,
        };
        p.ws();
        let (json, _) = p.value(0)?;
        p.ws();
        if p.i != bytes.len() {
            return None;
        }
        Some(Parsed {
            json,
            canonical_member: p.found,
        })
    }

    struct Parser<'a, 'w> {
        text: &'a str,
        b: &'a [u8],
        i: usize,
        want: &'w str,
        found: Option<&'a [u8]>,
    }

    impl<'a> Parser<'a, '_> {
        /// Skips JSON whitespace; whether there was any.
        fn ws(&mut self) -> bool {
            let start = self.i;
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
            self.i != start
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        /// A value, and whether its text is its canonical encoding (no whitespace inside,
        /// no U+2028 or U+2029 in a string, which the encoder escapes; the rest of the
        /// canonical form is what this parser accepts at all).
        fn value(&mut self, depth: usize) -> Option<(Json<'a>, bool)> {
            match self.peek()? {
                b'{' => self.object(depth + 1),
                b'[' => self.array(depth + 1),
                b'"' => {
                    let (s, canonical) = self.string()?;
                    Some((Json::Str(Cow::Borrowed(s)), canonical))
                }
                b't' => self.literal(b"true", Json::Bool(true)),
                b'f' => self.literal(b"false", Json::Bool(false)),
                b'n' => self.literal(b"null", Json::Null),
                b'0'..=b'9' => self.integer(),
                _ => None,
            }
        }

        fn literal(&mut self, word: &[u8], value: Json<'a>) -> Option<(Json<'a>, bool)> {
            if !self.b[self.i..].starts_with(word) {
                return None;
            }
            self.i += word.len();
            Some((value, true))
        }

        /// A non-negative integer that fits a u64, without a leading zero, fraction or
        /// exponent: what serde_json reads as a u64.
        fn integer(&mut self) -> Option<(Json<'a>, bool)> {
            let start = self.i;
            let mut n: u64 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                self.i += 1;
            }
            if self.i - start > 1 && self.b[start] == b'0' {
                return None;
            }
            if let Some(b'.' | b'e' | b'E') = self.peek() {
                return None;
            }
            Some((Json::Int(i128::from(n)), true))
        }

        /// A string without escapes or control characters, as valid UTF-8.
        fn string(&mut self) -> Option<(&'a str, bool)> {
            let start = self.i + 1;
            let rest = self.b.get(start..)?;
            let len = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[len] != b'"' {
                return None;
            }
            let raw = &rest[..len];
            // Control characters (refused) and bytes outside ASCII: the smallest and the
            // largest byte, a pass that vectorises.
            let (low, high) = raw
                .iter()
                .fold((u8::MAX, 0u8), |(low, high), c| (low.min(*c), high.max(*c)));
            if low < 0x20 {
                return None;
            }
            // Both ends are ASCII quotes, so both are character boundaries.
            let s = self.text.get(start..start + len)?;
            self.i = start + len + 1;
            let canonical = high < 0x80
                || memchr::memchr_iter(0xE2, raw).all(|p| !matches!(raw[p..], [0xE2, 0x80, 0xA8 | 0xA9, ..]));
            Some((s, canonical))
        }

        fn object(&mut self, depth: usize) -> Option<(Json<'a>, bool)> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.i += 1;
            let mut canonical = !self.ws();
            let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
            if self.peek()? == b'}' {
                self.i += 1;
                return Some((Json::Object(members), canonical));
            }
            // Every key so far, from the first one out of order on (a file's envelope: Go
            // writes `signed` before `signatures`). A duplicate is left to serde_json.
            let mut seen: Option<BTreeSet<&'a str>> = None;
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let (key, key_canonical) = self.string()?;
                if let Some(seen) = &mut seen {
                    if !seen.insert(key) {
                        return None;
                    }
                } else if members
                    .last()
                    .is_some_and(|(last, _)| key.as_bytes() <= last.as_bytes())
                {
                    // Every key this parser reads is borrowed.
                    let mut keys: BTreeSet<&'a str> = members
                        .iter()
                        .filter_map(|(k, _)| match k {
                            Cow::Borrowed(k) => Some(*k),
                            Cow::Owned(_) => None,
                        })
                        .collect();
                    if !keys.insert(key) {
                        return None;
                    }
                    seen = Some(keys);
                }
                canonical &= key_canonical & !self.ws();
                if self.peek()? != b':' {
                    return None;
                }
                self.i += 1;
                canonical &= !self.ws();
                let start = self.i;
                let (value, value_canonical) = self.value(depth)?;
                if depth == 1 && key == self.want && value_canonical {
                    self.found = Some(&self.b[start..self.i]);
                }
                canonical &= value_canonical & !self.ws();
                members.push((Cow::Borrowed(key), value));
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        canonical &= !self.ws();
                    }
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            if seen.is_some() {
                // Written out of order: not canonical, and sorted here as the tree keeps it.
                members.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
                canonical = false;
            }
            Some((Json::Object(members), canonical))
        }

        fn array(&mut self, depth: usize) -> Option<(Json<'a>, bool)> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.i += 1;
            let mut canonical = !self.ws();
            let mut items = Vec::new();
            if self.peek()? == b']' {
                self.i += 1;
                return Some((Json::Array(items), canonical));
            }
            loop {
                let (item, item_canonical) = self.value(depth)?;
                canonical &= item_canonical & !self.ws();
                items.push(item);
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        canonical &= !self.ws();
                    }
                    b']' => {
                        self.i += 1;
                        return Some((Json::Array(items), canonical));
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// Read access shared by [`Value`] and [`Json`], so that metadata and keys are read by one
/// implementation from either tree.
pub(crate) trait JsonView: Sized {
    /// Member `key` of an object (None for other values or a missing key).
    fn get(&self, key: &str) -> Option<&Self>;
    /// The string, if this is a string.
    fn as_str(&self) -> Option<&str>;
    /// The integer, if this is an integer.
    fn as_int(&self) -> Option<i128>;
    /// The boolean, if this is a boolean.
    fn as_bool(&self) -> Option<bool>;
    /// Whether this is `null`.
    fn is_null(&self) -> bool;
    /// The items, if this is an array.
    fn as_array(&self) -> Option<&[Self]>;
    /// Whether this is an object.
    fn is_object(&self) -> bool;
    /// The members of an object in key byte order, if this is an object.
    fn members(&self) -> Option<impl ExactSizeIterator<Item = (&str, &Self)>>;
    /// The value as an owned [`Value`].
    fn to_value(&self) -> Value;
}

impl JsonView for Value {
    fn get(&self, key: &str) -> Option<&Value> {
        Value::get(self, key)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_int(&self) -> Option<i128> {
        Value::as_int(self)
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    fn as_array(&self) -> Option<&[Value]> {
        Value::as_array(self)
    }
    fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }
    fn members(&self) -> Option<impl ExactSizeIterator<Item = (&str, &Value)>> {
        self.as_object().map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<'a> JsonView for Json<'a> {
    fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members
                .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
                .ok()
                .map(|i| &members[i].1),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_int(&self) -> Option<i128> {
        match self {
            Json::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
    fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }
    fn members(&self) -> Option<impl ExactSizeIterator<Item = (&str, &Json<'a>)>> {
        match self {
            Json::Object(members) => Some(members.iter().map(|(k, v)| (k.as_ref(), v))),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Json::to_value(self)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value with integer numbers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Json<'de>, E> {
        Err(E::custom(
            "non-integer or out-of-range number: canonical JSON carries integers only",
        ))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        // Keys in increasing byte order (as canonical JSON writes them) are distinct by that
        // alone. From the first key out of order on, every key so far is kept in a set, so a
        // duplicate is refused as soon as it is read, as [`Value`]'s own parse refuses it.
        let mut seen: Option<BTreeSet<String>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: Json<'de> = map.next_value()?;
            match &mut seen {
                None => {
                    if let Some((last, _)) = members.last() {
                        if key.as_bytes() <= last.as_bytes() {
                            let mut set: BTreeSet<String> =
                                members.iter().map(|(k, _)| k.as_ref().to_owned()).collect();
                            if !set.insert(key.as_ref().to_owned()) {
                                return Err(de::Error::custom(format!("duplicate object key {key:?}")));
                            }
                            seen = Some(set);
                        }
                    }
                }
                Some(set) => {
                    if !set.insert(key.as_ref().to_owned()) {
                        return Err(de::Error::custom(format!("duplicate object key {key:?}")));
                    }
                }
            }
            members.push((key, value));
        }
        if seen.is_some() {
            members.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        }
        Ok(Json::Object(members))
    }
}

/// An object key, borrowed from the input unless it held an escape.
struct KeySeed;

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
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

    /// The owned tree's parse, [`Value`]'s `Deserialize` (what `Value::parse` does).
    fn owned_parse(bytes: &[u8]) -> Result<Value, JsonError> {
        let v = serde_json::from_slice::<Value>(bytes).map_err(|e| JsonError(e.to_string()));
        assert_eq!(v, Value::parse(bytes));
        v
    }

    #[test]
    fn borrowed_tree_reads_and_encodes_as_the_owned_one() {
        let docs: [&str; 6] = [
            r#"{"signed":{"b":[1,-2,{"z":null,"a":true}],"a":"x"},"signatures":[]}"#,
            r#" { "z" : 1 , "\u0061" : "\n\"", "\u00e9":{"y":[],"x":{}}, "B": false } "#,
            r#"{"k":"-----BEGIN\nx\ty\u0001\"\\\u2028","é":"é","e":18446744073709551615}"#,
            r#"[{"b":1,"a":2},{"a":2,"b":1},"",[[]]]"#,
            r#""plain""#,
            "-9223372036854775808",
        ];
        for doc in docs.map(str::as_bytes) {
            let json = Json::parse(doc).unwrap();
            let value = owned_parse(doc).unwrap();
            assert_eq!(json.to_value(), value);
            assert_eq!(json.to_canonical(), value.to_canonical());
            if let Json::Object(members) = &json {
                assert!(members.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
            }
        }
        // Strings without escapes are borrowed, keys too.
        let doc = br#"{"a":"plain","b\n":"esc\n"}"#;
        let Json::Object(members) = Json::parse(doc).unwrap() else {
            panic!("not an object")
        };
        assert!(matches!(
            &members[0],
            (Cow::Borrowed("a"), Json::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(&members[1], (Cow::Owned(k), Json::Str(Cow::Owned(v))) if k == "b\n" && v == "esc\n"));
        assert_eq!(
            Json::parse(doc).unwrap().get("b\n").and_then(JsonView::as_str),
            Some("esc\n")
        );
        assert!(Json::parse(doc).unwrap().get("c").is_none());
    }

    #[test]
    fn borrowed_tree_refuses_what_the_owned_one_refuses() {
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"b":1,"a":2,"b":3}"#,
            br#"{"b":1,"a":2,"a":3}"#,
            br#"{"a":1,"\u0061":2}"#,
            br#"{"a":{"x":1,"x":1}}"#,
            b"1.5",
            b"1e3",
            b"{} {}",
            b"[1,]",
            b"99999999999999999999999",
            b"18446744073709551616",
            b"\"\x01\"",
            b"\"\xff\"",
            b"\"\xe2\x80\"",
            b"01",
            b"[00]",
            b"-0",
            b"1.0",
            b"[1e2]",
            b"-",
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{"a":1 "b":2}"#,
            br#"{"a":tru}"#,
            br#"[nul]"#,
            br#"[truex]"#,
            b"{",
            b"[",
            b"\"abc",
            b"",
            b" ",
            b"\xef\xbb\xbf{}",
            b"{}\x00",
            br#"{1:2}"#,
            br#"["a" "b"]"#,
            b"[1,\x0c2]",
        ] {
            let (j, v) = (Json::parse(bad).unwrap_err(), owned_parse(bad).unwrap_err());
            assert_eq!(j, v, "{}", String::from_utf8_lossy(bad));
        }
        assert!(Json::parse("[".repeat(100_000).as_bytes()).is_err());
        for depth in [99, 100, 101, 127, 128, 129] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let (j, v) = (Json::parse(doc.as_bytes()), owned_parse(doc.as_bytes()));
            assert_eq!(j.map(|j| j.to_value()), v, "{depth}");
        }
        for good in [
            &b"0"[..],
            b"18446744073709551615",
            b"-9223372036854775808",
            b" \t\r\n{} ",
            b"[[],{},\"\",true,false,null]",
            br#"{"a":{"b":[1,2]},"b":"\u2028"}"#,
        ] {
            assert_eq!(
                Json::parse(good).map(|j| j.to_value()),
                owned_parse(good),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        // The first duplicate read is the one named, as the owned parse names it.
        let e = Json::parse(br#"{"c":1,"b":2,"c":3,"b":4}"#).unwrap_err();
        assert!(e.0.contains("duplicate object key \"c\""), "{e}");
    }

    proptest::proptest! {
        /// Byte strings made of JSON tokens (mostly well-formed, often not): the borrowed
        /// parse accepts the same ones as the owned parse, with the same value and canonical
        /// bytes, and refuses the others with the same message.
        #[test]
        fn borrowed_and_owned_parses_agree(tokens in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", " ", "\"a\"", "\"b\"", "\"B\"", "\"\\u0061\"",
                "\"a\\\"b\"", "\"\u{e9}\"", "\"\u{2028}\"", "1", "-2", "1.5", "null", "true",
                "18446744073709551616", "\"\\n\"", "\"x", "{\"a\":", "{\"b\":", ",\"a\":",
                ",\"b\":", ",\"c\":",
            ]),
            0..40,
        )) {
            agree(&tokens.concat())?;
        }

        /// Documents of nested objects and arrays whose keys come in any order and repeat.
        #[test]
        fn borrowed_and_owned_parses_agree_on_objects(doc in documents()) {
            agree(&doc)?;
        }

        /// Canonical documents (the fast parser's usual input) as a file's `signed` member,
        /// as they are or with one space or U+2028 put anywhere: parsed alike by both parsers,
        /// and when their text is taken as the canonical bytes, it is the canonical encoding.
        #[test]
        fn canonical_text_is_taken_only_when_it_is_the_encoding(
            v in canonical_values(),
            insert in proptest::option::of((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<bool>())),
        ) {
            let mut doc = String::from_utf8(v.to_canonical()).unwrap();
            if let Some((at, space)) = insert {
                let mut at = at.index(doc.len() + 1);
                while !doc.is_char_boundary(at) {
                    at -= 1;
                }
                doc.insert(at, if space { ' ' } else { '\u{2028}' });
            }
            let file = format!(r#"{{"signatures":[],"signed":{doc}}}"#);
            agree(&file)?;
            if let Ok((json, raw)) = Json::parse_noting(file.as_bytes(), "signed") {
                let member = json.get("signed").unwrap();
                if insert.is_none() {
                    proptest::prop_assert_eq!(member.to_value(), v.clone());
                    // Without an escape (U+2028 and U+2029 are written as escapes) or a
                    // negative number, the text is taken.
                    proptest::prop_assert_eq!(raw.is_some(), !doc.contains(['\\', '-']));
                }
                if let Some(raw) = raw {
                    proptest::prop_assert_eq!(raw.to_vec(), member.to_canonical());
                }
            }
        }
    }

    fn canonical_values() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|i| Value::Int(i.into())),
            (-5i64..5).prop_map(|i| Value::Int(i.into())),
            proptest::sample::select(vec![
                "",
                "a",
                "\u{e9}",
                "a\"b",
                "c\\d",
                "x\u{2028}y",
                "\u{2029}",
                "\u{e2}"
            ])
            .prop_map(Value::str),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = proptest::sample::select(vec!["a", "b", "B", "\u{e9}", "_type", "ab", "", "k\"", "\u{2028}"]);
            prop_oneof![
                proptest::collection::btree_map(key.prop_map(str::to_owned), inner.clone(), 0..6)
                    .prop_map(Value::Object),
                proptest::collection::vec(inner, 0..5).prop_map(Value::Array),
            ]
        })
    }

    fn documents() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = proptest::sample::select(vec![
            "1",
            "-2",
            "null",
            "true",
            "\"a\"",
            "\"\\u0061\"",
            "\"\u{e9}\"",
            "1.5",
            "18446744073709551616",
            "\"\\n\"",
        ])
        .prop_map(str::to_owned);
        leaf.prop_recursive(4, 64, 8, |inner| {
            let key = proptest::sample::select(vec!["a", "b", "B", "\\u0061", "\u{e9}", "_type", "ab", ""]);
            prop_oneof![
                proptest::collection::vec((key, inner.clone(), any::<bool>()), 0..8).prop_map(|members| {
                    let body: Vec<String> = members
                        .iter()
                        .map(|(k, v, space)| format!("\"{k}\"{}:{v}", if *space { " " } else { "" }))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
                proptest::collection::vec(inner, 0..6).prop_map(|items| format!("[{}]", items.join(", "))),
            ]
        })
    }

    fn agree(doc: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        {
            match (Json::parse(doc.as_bytes()), owned_parse(doc.as_bytes())) {
                (Ok(j), Ok(v)) => {
                    proptest::prop_assert_eq!(j.to_canonical(), v.to_canonical());
                    proptest::prop_assert_eq!(j.to_value(), v);
                }
                (Err(j), Err(v)) => proptest::prop_assert_eq!(j, v),
                (j, v) => proptest::prop_assert!(false, "{doc}: {j:?} against {v:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn a_member_text_is_taken_only_when_canonical() {
        let taken = |doc: &str| {
            Json::parse_noting(doc.as_bytes(), "signed")
                .unwrap()
                .1
                .map(<[u8]>::to_vec)
        };
        assert_eq!(
            taken(r#"{"signed":{"a":[1,{}],"b":"x"}}"#),
            Some(br#"{"a":[1,{}],"b":"x"}"#.to_vec())
        );
        assert_eq!(taken(r#" { "a" : 1 , "signed" : [true] } "#), Some(b"[true]".to_vec()));
        for doc in [
            r#"{"signed":{ "a":1}}"#,
            r#"{"signed":{"a" :1}}"#,
            r#"{"signed":{"a": 1}}"#,
            r#"{"signed":{"a":1 }}"#,
            r#"{"signed":{"a":1, "b":2}}"#,
            r#"{"signed":[ 1]}"#,
            r#"{"signed":[1 ]}"#,
            r#"{"signed":[1 ,2]}"#,
            r#"{"signed":[1, 2]}"#,
            r#"{"signed":[1,2 ]}"#,
            "{\"signed\":{\"a\":\"\u{2028}\"}}",
            "{\"signed\":{\"\u{2029}\":1}}",
            r#"{"signed":{"a":"\n"}}"#,
            r#"{"signed":{"a":-1}}"#,
            r#"{"signed":{"b":1,"a":2}}"#,
        ] {
            assert_eq!(taken(doc), None, "{doc}");
        }
    }

    #[test]
    fn key_order_is_by_bytes() {
        let v = Value::parse(br#"{"b":1,"B":2,"a":3,"_type":4}"#).unwrap();
        assert_eq!(v.to_canonical(), br#"{"B":2,"_type":4,"a":3,"b":1}"#);
    }
}
