//! Standard TUF 1.0 repositories at the HTTP edge (`/tuf/<repository>/…`, see `docs/tuf.md`):
//! the upload body, the file names clients fetch, the online keys' JSON. Pure; the backend
//! (`backend::tuf1`) reads, validates with seal-tuf's `tuf1`, signs and writes.

use std::collections::BTreeMap;

use seal_tuf::cjson::Value;
use seal_tuf::tuf1::metadata::{SNAPSHOT, TIMESTAMP, TOP_LEVEL_ROLES};
use seal_tuf::tuf1::repo::is_safe_role_name;
use seal_tuf::tuf1::Key;

use crate::config::UploadLimits;
use crate::error::ApiError;

/// Most repository names `GET /tuf/` lists in one answer.
pub const MAX_LISTED: usize = 1000;

/// Whether `role` may name a stored file: a top-level role or a delegated role name seal-tuf
/// accepts in uploads.
pub fn is_role_name(role: &str) -> bool {
    TOP_LEVEL_ROLES.contains(&role) || is_safe_role_name(role)
}

/// The (role, version) readings of a requested file name, most specific first:
/// `3.root.json` is version 3 of `root`, and also the current file of a role named `3.root`
/// (a delegated role's name may hold dots and digits); `timestamp.json` is the current
/// timestamp. Names that are no role give nothing.
pub fn file_readings(file: &str) -> Vec<(&str, Option<u64>)> {
    let Some(stem) = file.strip_suffix(".json") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some((digits, role)) = stem.split_once('.') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && is_role_name(role) {
            if let Ok(v) = digits.parse::<u64>() {
                out.push((role, Some(v)));
            }
        }
    }
    if is_role_name(stem) {
        out.push((stem, None));
    }
    out
}

/// Parses an upload: a JSON object mapping each role name (`root`, `targets`, a delegated
/// role) to that role's whole metadata file (`{"signed":…,"signatures":…}`). Each file is
/// stored as compact JSON with standard escaping (`tuf1::cjson::to_json`): signatures cover
/// the canonical form of `signed`, which re-encoding keeps. At most `limits.max_parts` roles.
pub fn parse_upload(body: &[u8], limits: &UploadLimits) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    let value = Value::parse(body).map_err(|e| ApiError::InvalidParameters {
        detail: Some(format!("the body is not a JSON object of metadata files: {}", e.0)),
    })?;
    let Some(files) = value.as_object() else {
        return Err(ApiError::InvalidParameters {
            detail: Some("the body is not a JSON object of metadata files by role name".into()),
        });
    };
    if files.is_empty() {
        return Err(ApiError::InvalidParameters {
            detail: Some("the body names no role".into()),
        });
    }
    if files.len() > limits.max_parts {
        return Err(ApiError::TooLarge {
            limit: "limits.max_parts",
            max: limits.max_parts as u64,
        });
    }
    let mut out = BTreeMap::new();
    for (role, file) in files {
        if !is_role_name(role) || role == SNAPSHOT || role == TIMESTAMP {
            return Err(ApiError::InvalidRole { role: role.clone() });
        }
        let bytes = seal_tuf::tuf1::cjson::to_json(file);
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(ApiError::TooLarge {
                limit: "limits.max_file_bytes",
                max: limits.max_file_bytes,
            });
        }
        out.insert(role.clone(), bytes);
    }
    Ok(out)
}

/// The online keys of a repository as `POST /tuf/<repository>/keys` answers:
/// `{"keys":{<keyid>:<key>},"roles":{"snapshot":[<keyid>…],"timestamp":[<keyid>…]}}`, the keys
/// in TUF 1.0 form under securesystemslib's key IDs, ready to be listed in a root.
pub fn keys_body(timestamp: &[Key], snapshot: &[Key]) -> Vec<u8> {
    let mut keys = BTreeMap::new();
    let mut ids = |list: &[Key]| {
        Value::Array(
            list.iter()
                .map(|k| {
                    keys.insert(k.keyid().to_owned(), k.to_value().clone());
                    Value::str(k.keyid())
                })
                .collect(),
        )
    };
    let roles = Value::object([(TIMESTAMP, ids(timestamp)), (SNAPSHOT, ids(snapshot))]);
    seal_tuf::tuf1::cjson::to_json(&Value::object([("keys", Value::Object(keys)), ("roles", roles)]))
}

/// `GET /tuf/`'s body: `{"repositories":[…]}`, names in order.
pub fn list_body(names: &[String]) -> Vec<u8> {
    seal_tuf::tuf1::cjson::to_json(&Value::object([(
        "repositories",
        Value::Array(names.iter().map(Value::str).collect()),
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_read_as_role_and_version() {
        assert_eq!(file_readings("timestamp.json"), vec![("timestamp", None)]);
        assert_eq!(file_readings("3.root.json"), vec![("root", Some(3)), ("3.root", None)]);
        assert_eq!(
            file_readings("2.bins-0a.json"),
            vec![("bins-0a", Some(2)), ("2.bins-0a", None)]
        );
        assert_eq!(file_readings("a.b.json"), vec![("a.b", None)]);
        assert!(file_readings("99999999999999999999999.root.json").len() == 1);
        for nothing in ["root", ".json", "..json", "x/y.json", ".root.json"] {
            assert!(file_readings(nothing).is_empty(), "{nothing}");
        }
    }

    #[test]
    fn uploads_are_an_object_of_files_by_role() {
        let limits = UploadLimits::default();
        let files = parse_upload(br#"{"targets": {"signed": {"a": "b"}, "signatures": []}}"#, &limits).unwrap();
        assert_eq!(files["targets"], br#"{"signatures":[],"signed":{"a":"b"}}"#.to_vec());
        for (body, code) in [
            (&b"[]"[..], "INVALID_PARAMETERS"),
            (b"{}", "INVALID_PARAMETERS"),
            (b"{", "INVALID_PARAMETERS"),
            (br#"{"timestamp":{}}"#, "INVALID_ROLE"),
            (br#"{"snapshot":{}}"#, "INVALID_ROLE"),
            (br#"{"../x":{}}"#, "INVALID_ROLE"),
        ] {
            assert_eq!(parse_upload(body, &limits).unwrap_err().code(), code, "{body:?}");
        }
        let small = UploadLimits {
            max_file_bytes: 10,
            ..limits
        };
        assert_eq!(
            parse_upload(br#"{"root":{"signed":{"x":"0123456789"}}}"#, &small)
                .unwrap_err()
                .code(),
            "TOO_LARGE"
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any body is an upload or a 400/413 error, never a panic; every file of an upload is
        /// valid JSON named by a role that may be uploaded.
        #[test]
        fn any_body(body in proptest::collection::vec(any::<u8>(), 0..200), json in "[{}\\[\\]\":,a-z0-9 .]{0,80}") {
            for b in [body, json.into_bytes()] {
                match parse_upload(&b, &UploadLimits::default()) {
                    Ok(files) => {
                        for (role, bytes) in files {
                            prop_assert!(is_role_name(&role) && role != SNAPSHOT && role != TIMESTAMP);
                            prop_assert!(Value::parse(&bytes).is_ok());
                        }
                    }
                    Err(e) => prop_assert!(matches!(e.status().as_u16(), 400 | 413), "{e:?}"),
                }
            }
        }

        /// Any file name reads as roles that may name stored files, never a panic.
        #[test]
        fn any_file_name(file in "[0-9a-z.~/-]{0,30}") {
            for (role, _) in file_readings(&file) {
                prop_assert!(is_role_name(role));
            }
        }
    }
}
