//! PEM blocks with `name: value` headers, read and written the way Go's
//! `encoding/pem` (and so Notary) does: headers sorted by name, a blank line
//! after them, base64 in 64-character lines.
//!
//! RFC 7468 forbids headers, so the `pem-rfc7468` reader behind the `pkcs8`
//! crate cannot read Notary's key files; this small reader can.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

/// One PEM block. The DER may be an unencrypted private key, so it is
/// zeroized on drop.
pub(super) struct Block {
    /// The type after `BEGIN`, for example `ENCRYPTED PRIVATE KEY`.
    pub(super) label: String,
    /// The headers in file order, names and values trimmed.
    pub(super) headers: Vec<(String, String)>,
    /// The decoded base64 body.
    pub(super) der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("label", &self.label)
            .field("headers", &self.headers)
            .field("der_len", &self.der.len())
            .finish()
    }
}

impl Block {
    /// The value of header `name` (exact, case-sensitive match, as Go's map).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Every PEM block in `input`, in order. Text outside blocks is ignored, as
/// Go ignores it. Errors are one-line reasons.
pub(super) fn parse_all(input: &[u8]) -> Result<Vec<Block>, String> {
    let text = std::str::from_utf8(input).map_err(|_| "not PEM text (invalid UTF-8)".to_owned())?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut in_headers = true;
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            if in_headers {
                if let Some((name, value)) = line.split_once(':') {
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(format!("{label} block has a header line with no name"));
                    }
                    if headers.iter().any(|(k, _)| k == name) {
                        return Err(format!("{label} block has two {name:?} headers"));
                    }
                    headers.push((name.to_owned(), value.trim().to_owned()));
                    continue;
                }
                in_headers = false;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("{label} block has no END line"));
        }
        let der = B64
            .decode(body.as_bytes())
            .map_err(|e| format!("{label} block is not valid base64: {e}"))?;
        blocks.push(Block {
            label: label.to_owned(),
            headers,
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

/// Encodes one block exactly as Go's `pem.EncodeToMemory` does: headers
/// sorted by name and followed by a blank line (when there are any), 64
/// base64 characters a line, a final newline.
pub(super) fn encode(label: &str, headers: &[(&str, &str)], der: &[u8]) -> String {
    let mut sorted = headers.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let b64 = B64.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 128);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for (name, value) in &sorted {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    if !sorted.is_empty() {
        out.push('\n');
    }
    // base64 output is ASCII, so any byte offset is a char boundary.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_round_trips_headers_and_body() {
        let der: Vec<u8> = (0..=200u8).collect();
        let text = encode("ENCRYPTED PRIVATE KEY", &[("role", "targets"), ("gun", "a/b")], &der);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN ENCRYPTED PRIVATE KEY-----");
        assert_eq!(lines[1], "gun: a/b", "headers are sorted like Go's");
        assert_eq!(lines[2], "role: targets");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4].len(), 64);
        assert!(text.ends_with("-----END ENCRYPTED PRIVATE KEY-----\n"));
        let blocks = parse_all(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "ENCRYPTED PRIVATE KEY");
        assert_eq!(blocks[0].header("role"), Some("targets"));
        assert_eq!(blocks[0].header("gun"), Some("a/b"));
        assert_eq!(blocks[0].der.as_slice(), der.as_slice());
    }

    #[test]
    fn no_headers_means_no_blank_line() {
        let text = encode("PRIVATE KEY", &[], b"abc");
        assert_eq!(text, "-----BEGIN PRIVATE KEY-----\nYWJj\n-----END PRIVATE KEY-----\n");
    }

    #[test]
    fn crlf_text_outside_blocks_and_several_blocks() {
        let text = "comment\r\n-----BEGIN A-----\r\nx: 1\r\n\r\nYWJj\r\n-----END A-----\r\n-----BEGIN B-----\nZGVm\n-----END B-----\n";
        let blocks = parse_all(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].header("x"), Some("1"));
        assert_eq!(blocks[0].der.as_slice(), b"abc");
        assert_eq!(blocks[1].label, "B");
        assert_eq!(blocks[1].der.as_slice(), b"def");
    }

    #[test]
    fn broken_blocks_are_errors() {
        assert!(parse_all(b"-----BEGIN A-----\nYWJj\n").unwrap_err().contains("no END"));
        assert!(parse_all(b"-----BEGIN A-----\nYW*j\n-----END A-----\n")
            .unwrap_err()
            .contains("base64"));
        assert!(parse_all(b"-----BEGIN A-----\nr: 1\nr: 2\n\nYWJj\n-----END A-----\n")
            .unwrap_err()
            .contains("two"));
        assert!(parse_all(&[0xff, 0xfe]).is_err());
        assert!(parse_all(b"no pem here").unwrap().is_empty());
    }
}
