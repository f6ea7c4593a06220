//! A `multipart/form-data` parser for metadata uploads.
//!
//! It keeps the raw `filename` of each part's `Content-Disposition`, because
//! delegation roles carry slashes (`targets/releases`) that general-purpose
//! parsers strip, and it enforces the node's upload limits. The checks come in
//! Notary's order, part by part: filename present, valid role, JSON object.

use crate::config::UploadLimits;
use crate::error::ApiError;
use seal_tuf::metadata::is_valid_role;

/// The most bytes of headers accepted in one part.
const MAX_PART_HEADER_BYTES: usize = 16 * 1024;

/// One uploaded role file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFile {
    /// The role name (the filename minus a trailing `.json`).
    pub role: String,
    /// The exact bytes of the part.
    pub bytes: Vec<u8>,
}

fn malformed(reason: impl Into<String>) -> ApiError {
    ApiError::MalformedUpload { reason: reason.into() }
}

/// Extracts the boundary from a `Content-Type` header value, requiring
/// `multipart/form-data`.
pub fn boundary_from_content_type(content_type: Option<&str>) -> Result<String, ApiError> {
    let value = content_type.ok_or_else(|| malformed("no Content-Type"))?;
    let (media_type, params) = match value.split_once(';') {
        Some((m, p)) => (m, p),
        None => (value, ""),
    };
    if !media_type.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(malformed(format!("Content-Type {value:?} is not multipart/form-data")));
    }
    let boundary = parse_params(params)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or_else(|| malformed("no boundary"))?;
    // RFC 2046: 1 to 70 characters, none of them a control character.
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(malformed("bad boundary length"));
    }
    if boundary.chars().any(|c| c.is_control()) {
        return Err(malformed("control character in boundary"));
    }
    Ok(boundary)
}

/// Parses `; key=value; key="quoted"` parameters; values keep every byte
/// (slashes included), quoted-pairs are unescaped.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        // Skip separators and whitespace.
        while matches!(chars.peek(), Some(';') | Some(' ') | Some('\t')) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key = key.trim().to_string();
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while matches!(chars.peek(), Some(' ') | Some('\t')) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    c => value.push(c),
                }
            }
            // Ignore anything up to the next separator.
            while let Some(&c) = chars.peek() {
                if c == ';' {
                    break;
                }
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ';' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((key.to_ascii_lowercase(), value));
    }
    out
}

/// Finds `needle` in `haystack` from `from`. Candidates are the positions of
/// the needle's first byte; since a delimiter's first byte (`\n`) never recurs
/// in it (boundaries hold no newline), the search is linear in the body.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut at = from;
    while at < haystack.len() {
        let p = haystack[at..].iter().position(|&b| b == first)? + at;
        if haystack[p..].starts_with(needle) {
            return Some(p);
        }
        at = p + 1;
    }
    None
}

/// Consumes a line ending (CRLF or a bare LF) at `pos`, returning the index
/// after it.
fn eat_newline(body: &[u8], pos: usize) -> Option<usize> {
    match body.get(pos..) {
        Some([b'\r', b'\n', ..]) => Some(pos + 2),
        Some([b'\n', ..]) => Some(pos + 1),
        _ => None,
    }
}

/// Finds the delimiter `\n--boundary` that ends a part's content starting at
/// `from`: returns (end of content, index just after the boundary).
fn next_delimiter(body: &[u8], lf_delimiter: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut search = from;
    loop {
        let p = find(body, lf_delimiter, search)?;
        let after = p + lf_delimiter.len();
        let mut q = after;
        while matches!(body.get(q), Some(b' ') | Some(b'\t')) {
            q += 1;
        }
        let closes = body.get(after..after + 2) == Some(b"--");
        let opens = matches!(body.get(q), Some(b'\r') | Some(b'\n'));
        if closes || opens {
            let end = if p > from && body[p - 1] == b'\r' { p - 1 } else { p };
            return Some((end, after));
        }
        search = p + 1;
    }
}

/// Whether a part is JSON metadata as Notary decodes it into its
/// `SignedMeta`: an object whose `signed` is an object with a string
/// `_type`, an integer `version` and an RFC 3339 `expires`, and whose
/// `signatures` is an array of objects with string `keyid` and `method` and
/// a base64 `sig` (each member may be absent or null, as Go allows).
fn is_json_metadata(bytes: &[u8]) -> bool {
    use serde_json::Value;
    fn opt(v: Option<&Value>, ok: impl Fn(&Value) -> bool) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(v) => ok(v),
        }
    }
    let is_string = |v: &Value| v.is_string();
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return false;
    };
    let signed_ok = opt(map.get("signed"), |signed| {
        let Value::Object(signed) = signed else {
            return false;
        };
        opt(signed.get("_type"), is_string)
            && opt(signed.get("version"), |v| v.as_i64().is_some())
            && opt(signed.get("expires"), |v| {
                v.as_str().is_some_and(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
                })
            })
    });
    let signatures_ok = opt(map.get("signatures"), |sigs| {
        let Value::Array(sigs) = sigs else {
            return false;
        };
        sigs.iter().all(|sig| match sig {
            Value::Null => true,
            Value::Object(sig) => {
                opt(sig.get("keyid"), is_string)
                    && opt(sig.get("method"), is_string)
                    && opt(sig.get("sig"), |v| {
                        v.as_str().is_some_and(|s| {
                            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).is_ok()
                        })
                    })
            }
            _ => false,
        })
    });
    signed_ok && signatures_ok
}

/// Parses a whole multipart body into role files, checking limits, filenames,
/// roles and JSON in Notary's order.
pub fn parse_upload(content_type: Option<&str>, body: &[u8], limits: &UploadLimits) -> Result<Vec<RoleFile>, ApiError> {
    let boundary = boundary_from_content_type(content_type)?;
    if body.len() as u64 > limits.max_body_bytes {
        return Err(ApiError::TooLarge {
            limit: "limits.max_body_bytes",
            max: limits.max_body_bytes,
        });
    }
    let dash_boundary = format!("--{boundary}").into_bytes();
    let lf_delimiter = format!("\n--{boundary}").into_bytes();

    // The first boundary may open the body or follow a preamble.
    let mut pos = if body.starts_with(&dash_boundary) {
        dash_boundary.len()
    } else {
        find(body, &lf_delimiter, 0)
            .map(|p| p + lf_delimiter.len())
            .ok_or_else(|| malformed("no opening boundary"))?
    };

    let mut files = Vec::new();
    loop {
        // After a boundary: `--` closes the body, else padding and a newline.
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(files);
        }
        while matches!(body.get(pos), Some(b' ') | Some(b'\t')) {
            pos += 1;
        }
        pos = eat_newline(body, pos).ok_or_else(|| malformed("bad boundary line"))?;

        if files.len() >= limits.max_parts {
            return Err(ApiError::TooLarge {
                limit: "limits.max_parts",
                max: limits.max_parts as u64,
            });
        }

        // Headers up to an empty line.
        let mut disposition: Option<String> = None;
        let header_start = pos;
        loop {
            if pos - header_start > MAX_PART_HEADER_BYTES {
                return Err(malformed("part headers too long"));
            }
            let line_end = body[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + pos)
                .ok_or_else(|| malformed("unterminated part headers"))?;
            let mut line = &body[pos..line_end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            pos = line_end + 1;
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| malformed("non-UTF-8 header"))?;
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed("header line without colon"))?;
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                disposition = Some(value.trim().to_string());
            }
        }

        // Content up to the next delimiter (CRLF, or a bare LF from lax
        // clients) that is followed by `--`, padding or a newline.
        let (content_end, next) =
            next_delimiter(body, &lf_delimiter, pos).ok_or_else(|| malformed("part without closing boundary"))?;
        let content = &body[pos..content_end];
        pos = next;

        let filename = disposition
            .as_deref()
            .and_then(|d| {
                let params = d.split_once(';').map(|(_, p)| p).unwrap_or("");
                parse_params(params)
                    .into_iter()
                    .find(|(k, _)| k == "filename")
                    .map(|(_, v)| v)
            })
            .unwrap_or_default();
        let role = filename.strip_suffix(".json").unwrap_or(&filename).to_string();
        if role.is_empty() {
            return Err(ApiError::NoFilename { part: files.len() });
        }
        if !is_valid_role(&role) {
            return Err(ApiError::InvalidRole { role });
        }
        if content.len() as u64 > limits.max_file_bytes {
            return Err(ApiError::TooLarge {
                limit: "limits.max_file_bytes",
                max: limits.max_file_bytes,
            });
        }
        if !is_json_metadata(content) {
            return Err(ApiError::MalformedJson { role });
        }
        files.push(RoleFile {
            role,
            bytes: content.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::transcript_exchange;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn part(filename: Option<&str>, content: &str) -> String {
        let disp = match filename {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"files\"; filename=\"{f}\"\r\n")
            }
            None => "Content-Disposition: form-data; name=\"files\"\r\n".to_string(),
        };
        format!("--XyZ\r\n{disp}Content-Type: application/octet-stream\r\n\r\n{content}\r\n")
    }

    fn body(parts: &[String]) -> Vec<u8> {
        let mut s: String = parts.concat();
        s.push_str("--XyZ--\r\n");
        s.into_bytes()
    }

    const META: &str = r#"{"signed":{"_type":"Targets","version":2},"signatures":[]}"#;

    /// Content type, body, and (filename, length) of each part.
    type Upload = (String, Vec<u8>, Vec<(String, u64)>);

    /// Loads exchange `n` of the Notary CLI transcript.
    fn transcript_upload(n: u64) -> Option<Upload> {
        let (line, body) = transcript_exchange(n)?;
        let ct = line["req_headers"]["Content-Type"].as_str().unwrap().to_string();
        let expected = line["req_body"]["multipart_parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let disp = p["disposition"].as_str().unwrap();
                let f = disp.split("filename=\"").nth(1).unwrap().trim_end_matches('"');
                (f.to_string(), p["len"].as_u64().unwrap())
            })
            .collect();
        Some((ct, body, expected))
    }

    #[test]
    fn parses_notary_cli_uploads() {
        for (n, roles) in [
            (5, vec!["root", "targets", "snapshot"]),
            (15, vec!["targets", "snapshot"]),
            (23, vec!["targets/releases", "snapshot"]),
            (32, vec!["root"]),
        ] {
            let Some((ct, body, expected)) = transcript_upload(n) else {
                return;
            };
            let files = parse_upload(Some(&ct), &body, &UploadLimits::default()).unwrap();
            let got: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
            assert_eq!(got, roles, "exchange {n}");
            for (file, (name, len)) in files.iter().zip(expected) {
                assert_eq!(file.role, name);
                assert_eq!(file.bytes.len() as u64, len, "exchange {n} role {name}");
                let v: serde_json::Value = serde_json::from_slice(&file.bytes).unwrap();
                assert!(v["signed"]["_type"].is_string());
            }
        }
    }

    #[test]
    fn transcript_limits_apply() {
        let Some((ct, body, _)) = transcript_upload(5) else {
            return;
        };
        let limits = UploadLimits {
            max_parts: 2,
            ..UploadLimits::default()
        };
        assert_eq!(
            parse_upload(Some(&ct), &body, &limits),
            Err(ApiError::TooLarge {
                limit: "limits.max_parts",
                max: 2
            })
        );
        let limits = UploadLimits {
            max_file_bytes: 2000,
            ..UploadLimits::default()
        };
        assert_eq!(
            parse_upload(Some(&ct), &body, &limits),
            Err(ApiError::TooLarge {
                limit: "limits.max_file_bytes",
                max: 2000
            })
        );
        let limits = UploadLimits {
            max_body_bytes: 4000,
            ..UploadLimits::default()
        };
        assert!(matches!(
            parse_upload(Some(&ct), &body, &limits),
            Err(ApiError::TooLarge {
                limit: "limits.max_body_bytes",
                ..
            })
        ));
    }

    #[test]
    fn strips_json_suffix_and_keeps_slashes() {
        let b = body(&[part(Some("targets/a/b.json"), META)]);
        let files = parse_upload(Some(CT), &b, &UploadLimits::default()).unwrap();
        assert_eq!(files[0].role, "targets/a/b");
        assert_eq!(files[0].bytes, META.as_bytes());
    }

    #[test]
    fn content_may_contain_boundary_like_text() {
        let content = r#"{"signed":{"x":"--XyZ"},"signatures":[]}"#;
        let b = body(&[part(Some("targets"), content)]);
        let files = parse_upload(Some(CT), &b, &UploadLimits::default()).unwrap();
        assert_eq!(files[0].bytes, content.as_bytes());
        // A boundary followed by other characters is content, not a delimiter.
        let raw = b"ab\r\n--XyZabc\r\n--XyZ--";
        assert_eq!(next_delimiter(raw, b"\n--XyZ", 0), Some((12, 19)));
        assert_eq!(next_delimiter(b"\n--XyZ\r\n", b"\n--XyZ", 0), Some((0, 6)));
        assert_eq!(next_delimiter(b"x\n--XyZ", b"\n--XyZ", 0), None);
    }

    #[test]
    fn preamble_lf_and_quoted_boundary() {
        let raw = format!("preamble\n--b/1\nContent-Disposition: form-data; filename=root\n\n{META}\n--b/1--");
        let files = parse_upload(
            Some("Multipart/Form-Data; boundary=\"b/1\""),
            raw.as_bytes(),
            &UploadLimits::default(),
        )
        .unwrap();
        assert_eq!(files[0].role, "root");
        assert_eq!(files[0].bytes, META.as_bytes());
    }

    #[test]
    fn errors_in_notary_order() {
        let l = UploadLimits::default();
        let code = |r: Result<Vec<RoleFile>, ApiError>| r.unwrap_err().code();
        assert_eq!(code(parse_upload(None, b"{}", &l)), "MALFORMED_UPLOAD");
        assert_eq!(
            code(parse_upload(Some("application/json"), b"{}", &l)),
            "MALFORMED_UPLOAD"
        );
        assert_eq!(
            code(parse_upload(Some("multipart/form-data"), b"{}", &l)),
            "MALFORMED_UPLOAD"
        );
        assert_eq!(code(parse_upload(Some(CT), b"garbage", &l)), "MALFORMED_UPLOAD");
        // Truncated: no closing delimiter.
        let truncated = format!("--XyZ\r\nContent-Disposition: form-data; filename=\"root\"\r\n\r\n{META}");
        assert_eq!(
            code(parse_upload(Some(CT), truncated.as_bytes(), &l)),
            "MALFORMED_UPLOAD"
        );
        assert_eq!(
            parse_upload(Some(CT), &body(&[part(None, META)]), &l),
            Err(ApiError::NoFilename { part: 0 })
        );
        assert_eq!(
            parse_upload(Some(CT), &body(&[part(Some(".json"), META)]), &l),
            Err(ApiError::NoFilename { part: 0 })
        );
        assert_eq!(
            parse_upload(Some(CT), &body(&[part(Some("bogus"), "not json")]), &l),
            Err(ApiError::InvalidRole { role: "bogus".into() })
        );
        assert_eq!(
            parse_upload(
                Some(CT),
                &body(&[part(Some("root"), META), part(Some("targets"), "{not json")]),
                &l
            ),
            Err(ApiError::MalformedJson { role: "targets".into() })
        );
        for bad in [
            "[]",
            "5",
            r#"{"signed":3}"#,
            r#"{"signatures":{}}"#,
            "",
            r#"{"signed":{"_type":1}}"#,
            r#"{"signed":{"version":"2"}}"#,
            r#"{"signed":{"version":1.5}}"#,
            r#"{"signed":{"expires":"tomorrow"}}"#,
            r#"{"signatures":[5]}"#,
            r#"{"signatures":[{"keyid":1}]}"#,
            r#"{"signatures":[{"sig":"not base64!"}]}"#,
            r#"{"signed":{}} trailing"#,
        ] {
            assert_eq!(
                code(parse_upload(Some(CT), &body(&[part(Some("targets"), bad)]), &l)),
                "MALFORMED_JSON",
                "{bad}"
            );
        }
    }

    #[test]
    fn boundaries_are_checked() {
        let l = UploadLimits::default();
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(
            parse_upload(Some(&long), b"", &l).unwrap_err().code(),
            "MALFORMED_UPLOAD"
        );
        assert_eq!(
            parse_upload(Some("multipart/form-data; boundary=\"a\nb\""), b"", &l)
                .unwrap_err()
                .code(),
            "MALFORMED_UPLOAD"
        );
        assert_eq!(find(b"xx\n--a\n--b", b"\n--b", 0), Some(6));
        assert_eq!(find(b"xx\n--a", b"\n--b", 0), None);
        assert_eq!(find(b"\n--b", b"\n--b", 1), None);
    }

    #[test]
    fn json_shapes_notary_accepts() {
        for ok in [
            "{}",
            r#"{"signed":null,"signatures":null}"#,
            r#"{"signed":{"_type":"Targets","version":2,"expires":"2029-11-21T23:54:55.5Z"},"signatures":[{"keyid":"ab","method":"ecdsa","sig":"AAEC"}]}"#,
            r#"{"signed":{"expires":"2026-12-05T23:54:56+01:00"},"signatures":[null]}"#,
        ] {
            assert!(is_json_metadata(ok.as_bytes()), "{ok}");
        }
    }

    #[test]
    fn empty_upload_is_empty_list() {
        let l = UploadLimits::default();
        assert_eq!(parse_upload(Some(CT), b"--XyZ--\r\n", &l), Ok(vec![]));
    }

    #[test]
    fn no_panic_on_odd_bodies() {
        let l = UploadLimits::default();
        for raw in [
            &b""[..],
            b"--XyZ",
            b"--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition",
            b"--XyZ\r\n\r\n",
            b"--XyZ\r\n\r\n\r\n--XyZ",
            b"--XyZ\xff\xfe",
            b"--XyZ\r\nA: \xff\r\n\r\nx\r\n--XyZ--",
        ] {
            let _ = parse_upload(Some(CT), raw, &l);
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bodies never panic the parser, and whatever it accepts
        /// has valid roles and JSON parts within the limits.
        #[test]
        fn arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let limits = UploadLimits { max_body_bytes: 1000, max_parts: 4, max_file_bytes: 200, ..UploadLimits::default() };
            if let Ok(files) = parse_upload(Some("multipart/form-data; boundary=b"), &body, &limits) {
                prop_assert!(files.len() <= 4);
                for f in files {
                    prop_assert!(is_valid_role(&f.role));
                    prop_assert!(f.bytes.len() <= 200);
                }
            }
        }

        /// Structured bodies with random filenames and contents round-trip.
        #[test]
        fn structured_bodies(parts in proptest::collection::vec(
            ("targets(/[a-z0-9_-]{1,8}){0,3}", "[a-z]{0,20}"), 0..5)) {
            let mut raw = String::new();
            for (name, value) in &parts {
                raw.push_str(&format!(
                    "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\r\n{{\"signed\":{{\"v\":\"{value}\"}}}}\r\n"
                ));
            }
            raw.push_str("--b--\r\n");
            let files = parse_upload(Some("multipart/form-data; boundary=b"), raw.as_bytes(), &UploadLimits::default()).unwrap();
            prop_assert_eq!(files.len(), parts.len());
            for (f, (name, value)) in files.iter().zip(&parts) {
                prop_assert_eq!(&f.role, name);
                let expected = format!("{{\"signed\":{{\"v\":\"{value}\"}}}}");
                prop_assert_eq!(f.bytes.as_slice(), expected.as_bytes());
            }
        }
    }
}
