//! The metadata model of Notary's TUF dialect: the signed envelope, role
//! names, and the four role types with delegations.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::cjson::{Json, JsonView, Value};
use crate::error::Error;
use crate::keys::{KeyId, PublicKey, Signature};
use crate::time::{format_rfc3339_nano, parse_rfc3339};

/// The root role's name.
pub const ROOT: &str = "root";
/// The top-level targets role's name.
pub const TARGETS: &str = "targets";
/// The snapshot role's name.
pub const SNAPSHOT: &str = "snapshot";
/// The timestamp role's name.
pub const TIMESTAMP: &str = "timestamp";
/// The four base roles.
pub const BASE_ROLES: [&str; 4] = [ROOT, TARGETS, SNAPSHOT, TIMESTAMP];

/// The largest version Seal accepts: its increment still fits the signed
/// 64-bit integer Notary's clients parse versions into, so a collection can
/// never be locked at the integer maximum (Cure53 TUF-01-002, NCC 2015).
pub const MAX_VERSION: u64 = i64::MAX as u64 - 1;

/// Whether `name` is a valid role name: a base role, or `targets/…` made
/// of `[-a-z0-9_/]`, path-clean, shorter than 256 characters.
pub fn is_valid_role(name: &str) -> bool {
    if BASE_ROLES.contains(&name) {
        return true;
    }
    is_delegation(name)
}

/// Whether `name` is a valid delegated targets role (`targets/…`).
pub fn is_delegation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("targets/") else {
        return false;
    };
    name.len() < 256
        && name
            .bytes()
            .all(|b| matches!(b, b'-' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'/'))
        && rest.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The role whose file the metadata of `role` lists and vouches for: the
/// snapshot for a timestamp, the targets for a snapshot (the file a
/// server-held key's signature is bound to); none for the other roles.
pub fn named_role(role: &str) -> Option<&'static str> {
    match role {
        TIMESTAMP => Some(SNAPSHOT),
        SNAPSHOT => Some(TARGETS),
        _ => None,
    }
}

/// The `version` of a role's `signed` object, when it has a valid one.
pub fn signed_version(signed: &Value) -> Option<u64> {
    signed.get("version")?.as_int()?.try_into().ok()
}

/// Sets the `version` of a role's `signed` object (for a server-made
/// snapshot or timestamp regenerated at another version).
pub fn set_signed_version(signed: &mut Value, version: u64) {
    if let Value::Object(fields) = signed {
        fields.insert("version".to_owned(), Value::Int(i128::from(version)));
    }
}

/// Whether `name` is a targets role: `targets` or a delegated role.
pub fn is_targets_role(name: &str) -> bool {
    name == TARGETS || is_delegation(name)
}

/// The version after `prev` (1 when there is none), refused when it would
/// pass [`MAX_VERSION`].
pub fn next_version(role: &str, prev: Option<u64>) -> Result<u64, Error> {
    match prev {
        None => Ok(1),
        Some(v) if v < MAX_VERSION => Ok(v + 1),
        Some(v) => Err(Error::VersionTooLarge {
            role: role.to_owned(),
            version: u128::from(v) + 1,
        }),
    }
}

/// The role that delegates to `role`: `targets` for `targets/a`,
/// `targets/a` for `targets/a/b`, none for base roles.
pub fn parent_role(role: &str) -> Option<&str> {
    if !is_delegation(role) {
        return None;
    }
    role.rfind('/').map(|i| &role[..i])
}

/// A metadata file as uploaded or served: its exact bytes, the parsed
/// `signed` value, the canonical bytes that signatures cover, and the
/// signatures.
#[derive(Debug, Clone)]
pub struct SignedFile {
    role: String,
    bytes: Vec<u8>,
    /// Built from `bytes` on first use by a file parsed for validation
    /// ([`SignedFile::parse_with`]), which reads `signed` as a borrowed tree instead.
    signed: std::sync::OnceLock<Value>,
    /// Encoded on first use: a stored file read for its contents is never verified again.
    canonical: std::sync::OnceLock<Vec<u8>>,
    signatures: Vec<Signature>,
}

impl SignedFile {
    /// Parses `{"signed":…,"signatures":[{keyid,method,sig}]}` for `role`.
    pub fn parse(role: &str, bytes: Vec<u8>) -> Result<SignedFile, Error> {
        // Straight into the owned tree (faster than the borrowed one and a conversion), with
        // the checks of `envelope`, in its order and with its errors.
        let Value::Object(mut obj) = Value::parse(&bytes).map_err(|e| json_error(role, e.0))? else {
            return Err(json_error(role, "not a JSON object".into()));
        };
        let signed = obj
            .remove("signed")
            .filter(|v| v.as_object().is_some())
            .ok_or_else(|| json_error(role, "missing \"signed\" object".into()))?;
        let signatures = match obj.get("signatures") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| parse_signature(role, s))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(json_error(role, "\"signatures\" is not an array".into())),
        };
        Ok(SignedFile {
            role: role.to_owned(),
            bytes,
            signed: std::sync::OnceLock::from(signed),
            canonical: std::sync::OnceLock::new(),
            signatures,
        })
    }

    /// [`SignedFile::parse`] for a file about to be verified: `read` gets the `signed` object
    /// as a tree borrowed from `bytes` (no owned [`Value`] is built unless
    /// [`SignedFile::signed`] is called later), and the canonical bytes the signatures cover
    /// are taken at once: the text of `signed` itself when it is already canonical, else
    /// encoded from that tree.
    pub(crate) fn parse_with<T>(
        role: &str,
        bytes: Vec<u8>,
        read: impl FnOnce(&Json<'_>) -> T,
    ) -> Result<(SignedFile, T), Error> {
        let (canonical, signatures, read) = {
            let (json, raw) = Json::parse_noting(&bytes, "signed").map_err(|e| json_error(role, e.0))?;
            let (signed, signatures) = envelope(role, &json)?;
            // A file as Notary writes it holds `signed` in canonical form already.
            let canonical = match raw {
                Some(raw) => raw.to_vec(),
                None => signed.to_canonical(),
            };
            debug_assert_eq!(canonical, signed.to_canonical());
            (canonical, signatures, read(signed))
        };
        let file = SignedFile {
            role: role.to_owned(),
            bytes,
            signed: std::sync::OnceLock::new(),
            canonical: std::sync::OnceLock::from(canonical),
            signatures,
        };
        Ok((file, read))
    }

    /// What `read` makes of the `signed` object of `bytes`, a file [`SignedFile::parse`]
    /// accepts (the same errors otherwise), without building the file: for a stored file
    /// read for its contents and never verified again.
    pub(crate) fn read_signed<T>(role: &str, bytes: &[u8], read: impl FnOnce(&Json<'_>) -> T) -> Result<T, Error> {
        let json = Json::parse(bytes).map_err(|e| json_error(role, e.0))?;
        let (signed, _) = envelope(role, &json)?;
        Ok(read(signed))
    }

    /// Builds the file Notary would write for `signed` with `signatures`:
    /// `{"signed":<canonical>,"signatures":[…]}`.
    pub fn assemble(role: &str, signed: Value, signatures: Vec<Signature>) -> SignedFile {
        let canonical = signed.to_canonical();
        let bytes = envelope_bytes(&canonical, &signatures);
        SignedFile {
            role: role.to_owned(),
            bytes,
            signed: std::sync::OnceLock::from(signed),
            canonical: std::sync::OnceLock::from(canonical),
            signatures,
        }
    }

    /// The role this file was parsed as.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The exact bytes, as uploaded or assembled.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the file, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The `signed` value.
    pub fn signed(&self) -> &Value {
        self.signed.get_or_init(|| {
            // Only a file made by `parse_with` gets here, whose bytes this same parse read.
            let json = Json::parse(&self.bytes).expect("a parsed file's bytes parse again");
            json.get("signed").map(Json::to_value).unwrap_or(Value::Null)
        })
    }

    /// The canonical bytes of `signed`: what the signatures cover.
    pub fn canonical_signed(&self) -> &[u8] {
        self.canonical.get_or_init(|| self.signed().to_canonical())
    }

    /// The signatures.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The file re-serialised from its parts (equal to `bytes()` for a
    /// file Notary wrote).
    pub fn reserialize(&self) -> Vec<u8> {
        envelope_bytes(self.canonical_signed(), &self.signatures)
    }

    /// The meta entry that vouches for this file (length, sha256, sha512).
    pub fn file_meta(&self) -> FileMeta {
        FileMeta::for_bytes(&self.bytes)
    }
}

fn envelope_bytes(canonical: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len() + 40 + signatures.len() * 200);
    out.extend_from_slice(b"{\"signed\":");
    out.extend_from_slice(canonical);
    out.extend_from_slice(b",\"signatures\":[");
    for (i, s) in signatures.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Go's struct order: keyid, method, sig. None of the three can
        // hold characters Go's encoder would escape (validated on parse).
        out.extend_from_slice(b"{\"keyid\":");
        Value::str(s.keyid.clone()).write_canonical(&mut out);
        out.extend_from_slice(b",\"method\":");
        Value::str(s.method.clone()).write_canonical(&mut out);
        out.extend_from_slice(b",\"sig\":\"");
        out.extend_from_slice(B64.encode(&s.sig).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn json_error(role: &str, reason: String) -> Error {
    Error::Json {
        role: role.to_owned(),
        reason,
    }
}

/// The `signed` object and the signatures of a file's envelope.
fn envelope<'j, 'a>(role: &str, json: &'j Json<'a>) -> Result<(&'j Json<'a>, Vec<Signature>), Error> {
    if !json.is_object() {
        return Err(json_error(role, "not a JSON object".into()));
    }
    let signed = json
        .get("signed")
        .filter(|v| v.is_object())
        .ok_or_else(|| json_error(role, "missing \"signed\" object".into()))?;
    let signatures = match json.get("signatures") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .map(|s| parse_signature(role, s))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(json_error(role, "\"signatures\" is not an array".into())),
    };
    Ok((signed, signatures))
}

fn parse_signature<V: JsonView>(role: &str, v: &V) -> Result<Signature, Error> {
    let field = |f: &str, reason: &str| Error::Field {
        role: role.to_owned(),
        field: format!("signatures.{f}"),
        reason: reason.to_owned(),
    };
    let keyid = v
        .get("keyid")
        .and_then(V::as_str)
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| field("keyid", "missing or not an alphanumeric string"))?;
    let method = v
        .get("method")
        .and_then(V::as_str)
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .ok_or_else(|| field("method", "missing or not a plain string"))?;
    let sig = v
        .get("sig")
        .and_then(V::as_str)
        .ok_or_else(|| field("sig", "missing"))?;
    let sig = B64.decode(sig).map_err(|_| field("sig", "not base64"))?;
    Ok(Signature {
        keyid: keyid.to_owned(),
        method: method.to_owned(),
        sig,
    })
}

/// The SHA-512 of `bytes`, by ring, whose SHA-512 is a little faster here than the sha2
/// crate's (5.5 against 5.9 µs for a 4 KiB targets file); SHA-256 is as fast in both.
pub(crate) fn sha512(bytes: &[u8]) -> [u8; 64] {
    let mut out = [0; 64];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA512, bytes).as_ref());
    out
}

/// Length and hashes of a file, as snapshot and timestamp list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Length in bytes.
    pub length: i64,
    /// Hashes by algorithm (`sha256`, `sha512`), raw bytes.
    pub hashes: BTreeMap<String, Vec<u8>>,
    /// Opaque `custom` data of a target, kept as given.
    pub custom: Option<Value>,
}

impl FileMeta {
    /// Length, sha256 and sha512 of `bytes`.
    pub fn for_bytes(bytes: &[u8]) -> FileMeta {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), Sha256::digest(bytes).to_vec());
        hashes.insert("sha512".to_owned(), sha512(bytes).to_vec());
        FileMeta {
            length: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            hashes,
            custom: None,
        }
    }

    /// Checks `bytes` against the length and every known hash listed; at
    /// least one of sha256 and sha512 must be listed.
    pub fn check(&self, role: &str, bytes: &[u8]) -> Result<(), Error> {
        self.check_digests(role, bytes.len(), |alg| match alg {
            "sha256" => Some(Sha256::digest(bytes).to_vec()),
            "sha512" => Some(sha512(bytes).to_vec()),
            _ => None,
        })
    }

    /// [`FileMeta::check`] of a file of `len` bytes whose digests `digest`
    /// gives by algorithm name (`None`: not supported), each asked for at
    /// most once and only when listed.
    pub fn check_digests(&self, role: &str, len: usize, digest: impl Fn(&str) -> Option<Vec<u8>>) -> Result<(), Error> {
        let mismatch = |reason: String| Error::HashMismatch {
            role: role.to_owned(),
            reason,
        };
        if i64::try_from(len).ok() != Some(self.length) {
            return Err(mismatch(format!(
                "length {len} does not match the expected {}",
                self.length
            )));
        }
        let mut checked = 0;
        for (alg, want) in &self.hashes {
            let Some(got) = digest(alg) else {
                continue;
            };
            if &got != want {
                return Err(mismatch(format!("{alg} checksum does not match")));
            }
            checked += 1;
        }
        if checked == 0 {
            return Err(mismatch("no supported checksum listed".into()));
        }
        Ok(())
    }

    /// The hex sha256, when listed.
    pub fn sha256_hex(&self) -> Option<String> {
        self.hashes.get("sha256").map(hex::encode)
    }

    /// Parses a file meta entry (`length`, `hashes`, optional `custom`)
    /// found at `path` in `role`'s file.
    pub fn parse(role: &str, path: &str, v: &Value) -> Result<FileMeta, Error> {
        FileMeta::parse_at(role, &path, v)
    }

    /// [`FileMeta::parse`] with the path written only for an error (a
    /// snapshot or targets file parses one entry per file it lists).
    fn parse_at<V: JsonView>(role: &str, path: &dyn std::fmt::Display, v: &V) -> Result<FileMeta, Error> {
        let mut scratch = Vec::new();
        FileMeta::read_at(role, path, v, true, &mut scratch).map(|m| m.unwrap_or_else(|| unreachable!()))
    }

    /// [`FileMeta::parse_at`] when `keep`; otherwise the same checks, in the same order with
    /// the same errors, without building the entry (hashes are decoded into `scratch`).
    fn read_at<V: JsonView>(
        role: &str,
        path: &dyn std::fmt::Display,
        v: &V,
        keep: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<FileMeta>, Error> {
        let field = |f: &str, reason: &str| Error::Field {
            role: role.to_owned(),
            field: format!("{path}.{f}"),
            reason: reason.to_owned(),
        };
        let length = v
            .get("length")
            .and_then(V::as_int)
            .and_then(|l| i64::try_from(l).ok())
            .filter(|l| *l >= 0)
            .ok_or_else(|| field("length", "missing or not a non-negative integer"))?;
        let mut hashes = BTreeMap::new();
        let hv = v
            .get("hashes")
            .and_then(V::members)
            .ok_or_else(|| field("hashes", "missing or not an object"))?;
        let mut listed = 0;
        for (alg, h) in hv {
            scratch.clear();
            h.as_str()
                .and_then(|s| B64.decode_vec(s, scratch).ok())
                .ok_or_else(|| field("hashes", "hash is not base64"))?;
            let expect_len = match alg {
                "sha256" => Some(32),
                "sha512" => Some(64),
                _ => None,
            };
            if expect_len.is_some_and(|n| n != scratch.len()) {
                return Err(field("hashes", &format!("{alg} has the wrong length")));
            }
            listed += 1;
            if keep {
                hashes.insert(alg.to_owned(), std::mem::take(scratch));
            }
        }
        if listed == 0 {
            return Err(field("hashes", "no hashes"));
        }
        if !keep {
            return Ok(None);
        }
        let custom = match v.get("custom") {
            None => None,
            Some(c) if c.is_null() => None,
            Some(c) => Some(c.to_value()),
        };
        Ok(Some(FileMeta { length, hashes, custom }))
    }

    /// The JSON value (`custom` omitted when absent, as Notary's omitempty).
    pub fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        if let Some(c) = &self.custom {
            m.insert("custom".to_owned(), c.clone());
        }
        m.insert(
            "hashes".to_owned(),
            Value::Object(
                self.hashes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::str(B64.encode(v))))
                    .collect(),
            ),
        );
        m.insert("length".to_owned(), Value::Int(self.length.into()));
        Value::Object(m)
    }
}

/// Key IDs and threshold of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// The key IDs that may sign for the role.
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

/// Root metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Version, ≥ 1.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Notary writes `false`.
    pub consistent_snapshot: bool,
    /// Every key any base role uses.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// The four base roles.
    pub roles: BTreeMap<String, RoleKeys>,
}

/// A role delegated by a targets role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedRole {
    /// `targets/…`, a direct child of the delegating role.
    pub name: String,
    /// Keys that may sign for it.
    pub keyids: Vec<KeyId>,
    /// Distinct keys needed.
    pub threshold: u32,
    /// Target name prefixes it may sign for (`""` means all).
    pub paths: Vec<String>,
    /// Hex prefixes of the sha256 of target names it may sign for.
    pub path_hash_prefixes: Vec<String>,
}

impl DelegatedRole {
    /// Whether this delegation covers target `name`.
    pub fn covers(&self, name: &str) -> bool {
        if self.paths.iter().any(|p| name.starts_with(p.as_str())) {
            return true;
        }
        if self.path_hash_prefixes.is_empty() {
            return false;
        }
        let h = hex::encode(Sha256::digest(name.as_bytes()));
        self.path_hash_prefixes.iter().any(|p| h.starts_with(p.as_str()))
    }
}

/// Delegations of a targets role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delegations {
    /// Keys of the delegated roles.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// The delegated roles, in priority order.
    pub roles: Vec<DelegatedRole>,
}

/// Targets (or delegated targets) metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Targets by name.
    pub targets: BTreeMap<String, FileMeta>,
    /// Delegations to child roles.
    pub delegations: Delegations,
}

/// Snapshot metadata: the meta of root, targets and every delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Meta by role name.
    pub meta: BTreeMap<String, FileMeta>,
}

/// Timestamp metadata: the meta of the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Meta: `snapshot` only.
    pub meta: BTreeMap<String, FileMeta>,
}

struct Reader<'a, V> {
    role: &'a str,
    v: &'a V,
}

impl<'a, V: JsonView> Reader<'a, V> {
    fn err(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::Field {
            role: self.role.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn check_type(&self, expected: &'static str) -> Result<(), Error> {
        match self.v.get("_type").and_then(V::as_str) {
            Some(t) if t == expected => Ok(()),
            other => Err(Error::WrongType {
                role: self.role.to_owned(),
                expected,
                found: other.unwrap_or("").to_owned(),
            }),
        }
    }

    fn version(&self) -> Result<u64, Error> {
        let v = self
            .v
            .get("version")
            .and_then(V::as_int)
            .ok_or_else(|| self.err("version", "missing or not an integer"))?;
        // Notary refuses version 0 (and below) for every role.
        if v < 1 {
            return Err(self.err("version", "cannot be less than one"));
        }
        match u64::try_from(v) {
            Ok(v) if v <= MAX_VERSION => Ok(v),
            _ => Err(Error::VersionTooLarge {
                role: self.role.to_owned(),
                version: v.unsigned_abs(),
            }),
        }
    }

    fn expires(&self) -> Result<OffsetDateTime, Error> {
        let s = self
            .v
            .get("expires")
            .and_then(V::as_str)
            .ok_or_else(|| self.err("expires", "missing or not a string"))?;
        parse_rfc3339(s).ok_or_else(|| self.err("expires", format!("not an RFC 3339 time: {s:?}")))
    }

    fn object(&self, field: &str) -> Result<&'a V, Error> {
        match self.v.get(field) {
            Some(m) if m.is_object() => Ok(m),
            _ => Err(self.err(field, "missing or not an object")),
        }
    }

    /// The keys of object `m` (found at `field`); a key equal to one of `known` is not
    /// decoded again.
    fn keys(&self, field: &str, m: &V, known: &[&PublicKey]) -> Result<BTreeMap<KeyId, PublicKey>, Error> {
        let mut keys = BTreeMap::new();
        for (id, kv) in m.members().into_iter().flatten() {
            let key = PublicKey::from_view(kv, known).map_err(|e| Error::BadKey {
                role: self.role.to_owned(),
                keyid: id.to_owned(),
                reason: e.to_string(),
            })?;
            if key.id() != id {
                return Err(Error::BadKey {
                    role: self.role.to_owned(),
                    keyid: id.to_owned(),
                    reason: format!("{field}: listed ID does not match the key's ID {}", key.id()),
                });
            }
            keys.insert(id.to_owned(), key);
        }
        Ok(keys)
    }
}

/// A role's key IDs and threshold. `"keyids": null` (what Go writes for a
/// role whose last key was removed) and a missing `keyids` read as no keys,
/// as Go's decoder reads them: such a role is valid metadata that can sign
/// nothing until keys are added, since no signature can count towards its
/// threshold of at least 1.
fn role_keys<V: JsonView>(r: &Reader<'_, V>, field: &str, v: &V) -> Result<RoleKeys, Error> {
    let keyids = strings(r, &format!("{field}.keyids"), v.get("keyids"))?;
    let threshold = v
        .get("threshold")
        .and_then(V::as_int)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| *t >= 1)
        .ok_or_else(|| r.err(&format!("{field}.threshold"), "missing or below 1"))?;
    Ok(RoleKeys { keyids, threshold })
}

/// `<field>.<key>`, written only when an error names it.
struct EntryPath<'a>(&'a str, &'a str);

impl std::fmt::Display for EntryPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

fn meta_map<V: JsonView>(r: &Reader<'_, V>, field: &str) -> Result<BTreeMap<String, FileMeta>, Error> {
    r.object(field)?
        .members()
        .into_iter()
        .flatten()
        .map(|(k, v)| Ok((k.to_owned(), FileMeta::parse_at(r.role, &EntryPath(field, k), v)?)))
        .collect()
}

/// The number of entries of object `field`, each checked as [`meta_map`] checks it.
fn check_meta_map<V: JsonView>(r: &Reader<'_, V>, field: &str) -> Result<usize, Error> {
    let mut scratch = Vec::with_capacity(64);
    let mut count = 0;
    for (k, v) in r.object(field)?.members().into_iter().flatten() {
        FileMeta::read_at(r.role, &EntryPath(field, k), v, false, &mut scratch)?;
        count += 1;
    }
    Ok(count)
}

fn strings<V: JsonView>(r: &Reader<'_, V>, field: &str, v: Option<&V>) -> Result<Vec<String>, Error> {
    match v {
        None => Ok(Vec::new()),
        Some(v) if v.is_null() => Ok(Vec::new()),
        Some(v) => match v.as_array() {
            Some(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| r.err(field, "not a string"))
                })
                .collect(),
            None => Err(r.err(field, "not an array")),
        },
    }
}

fn strings_value(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::str(s.clone())).collect())
}

fn keys_value(keys: &BTreeMap<KeyId, PublicKey>) -> Value {
    Value::Object(keys.iter().map(|(id, k)| (id.clone(), k.to_value())).collect())
}

impl Root {
    /// Parses and checks the structure of a root's `signed` value: all four
    /// base roles, thresholds ≥ 1, every listed key present.
    pub fn from_signed(v: &Value) -> Result<Root, Error> {
        Root::from_view(v, &[])
    }

    /// [`Root::from_signed`] from either JSON tree; a listed key equal to one of `known` is
    /// not decoded again.
    pub(crate) fn from_view<V: JsonView>(v: &V, known: &[&PublicKey]) -> Result<Root, Error> {
        let r = Reader { role: ROOT, v };
        r.check_type("Root")?;
        let version = r.version()?;
        let expires = r.expires()?;
        let consistent_snapshot = match v.get("consistent_snapshot") {
            None => false,
            Some(c) if c.is_null() => false,
            Some(c) => c
                .as_bool()
                .ok_or_else(|| r.err("consistent_snapshot", "not a boolean"))?,
        };
        let keys = r.keys("keys", r.object("keys")?, known)?;
        let mut roles = BTreeMap::new();
        for (name, rv) in r.object("roles")?.members().into_iter().flatten() {
            if !BASE_ROLES.contains(&name) {
                return Err(r.err("roles", format!("unknown role {name:?}")));
            }
            let rk = role_keys(&r, &format!("roles.{name}"), rv)?;
            for id in &rk.keyids {
                if !keys.contains_key(id) {
                    return Err(r.err(&format!("roles.{name}"), format!("key {id} is not listed in keys")));
                }
            }
            roles.insert(name.to_owned(), rk);
        }
        for base in BASE_ROLES {
            if !roles.contains_key(base) {
                return Err(r.err("roles", format!("missing role {base}")));
            }
        }
        Ok(Root {
            version,
            expires,
            consistent_snapshot,
            keys,
            roles,
        })
    }

    /// The keys and threshold of base role `role`.
    pub fn role(&self, role: &str) -> Option<&RoleKeys> {
        self.roles.get(role)
    }

    /// The public keys listed for base role `role`.
    pub fn role_key_list(&self, role: &str) -> Vec<&PublicKey> {
        self.roles
            .get(role)
            .map(|rk| rk.keyids.iter().filter_map(|id| self.keys.get(id)).collect())
            .unwrap_or_default()
    }

    /// The `signed` value Notary would write.
    pub fn to_value(&self) -> Value {
        Value::object([
            ("_type", Value::str("Root")),
            ("consistent_snapshot", Value::Bool(self.consistent_snapshot)),
            ("expires", Value::str(format_rfc3339_nano(self.expires))),
            ("keys", keys_value(&self.keys)),
            (
                "roles",
                Value::Object(
                    self.roles
                        .iter()
                        .map(|(n, rk)| {
                            (
                                n.clone(),
                                Value::object([
                                    ("keyids", strings_value(&rk.keyids)),
                                    ("threshold", Value::Int(rk.threshold.into())),
                                ]),
                            )
                        })
                        .collect(),
                ),
            ),
            ("version", Value::Int(self.version.into())),
        ])
    }
}

impl Targets {
    /// Parses and checks a targets or delegated role's `signed` value named
    /// `role`: delegations name only direct children of `role`, with
    /// thresholds ≥ 1 and listed keys.
    pub fn from_signed(role: &str, v: &Value) -> Result<Targets, Error> {
        Targets::from_view(role, v)
    }

    /// [`Targets::from_signed`] from either JSON tree.
    pub(crate) fn from_view<V: JsonView>(role: &str, v: &V) -> Result<Targets, Error> {
        Targets::read(role, v, true).map(|(t, _)| t)
    }

    /// [`Targets::from_view`] with every target entry checked as it checks them but none
    /// kept: `targets` is left empty, and the number of entries is returned with it. For a
    /// validation that needs the role's delegations but not its targets (those of the
    /// top-level role, which no delegation restricts).
    pub(crate) fn from_view_unlisted<V: JsonView>(role: &str, v: &V) -> Result<(Targets, usize), Error> {
        Targets::read(role, v, false)
    }

    fn read<V: JsonView>(role: &str, v: &V, keep: bool) -> Result<(Targets, usize), Error> {
        let r = Reader { role, v };
        r.check_type("Targets")?;
        let version = r.version()?;
        let expires = r.expires()?;
        let (targets, listed) = match v.get("targets") {
            None => (BTreeMap::new(), 0),
            Some(t) if t.is_null() => (BTreeMap::new(), 0),
            Some(_) if keep => {
                let targets = meta_map(&r, "targets")?;
                let listed = targets.len();
                (targets, listed)
            }
            Some(_) => (BTreeMap::new(), check_meta_map(&r, "targets")?),
        };
        let delegations = match v.get("delegations") {
            None => Delegations::default(),
            Some(d) if d.is_null() => Delegations::default(),
            Some(d) => {
                let dr = Reader { role, v: d };
                let keys = match d.get("keys") {
                    None => BTreeMap::new(),
                    Some(k) if k.is_null() => BTreeMap::new(),
                    Some(_) => dr.keys("delegations.keys", dr.object("keys")?, &[])?,
                };
                let mut roles = Vec::new();
                let items = match d.get("roles") {
                    None => &[][..],
                    Some(a) if a.is_null() => &[][..],
                    Some(a) => a.as_array().ok_or_else(|| r.err("delegations.roles", "not an array"))?,
                };
                let mut seen = std::collections::BTreeSet::new();
                for item in items {
                    let name = item
                        .get("name")
                        .and_then(V::as_str)
                        .ok_or_else(|| r.err("delegations.roles.name", "missing"))?;
                    if !is_delegation(name) || parent_role(name) != Some(role) {
                        return Err(r.err(
                            "delegations.roles.name",
                            format!("{name:?} is not a direct child of {role}"),
                        ));
                    }
                    if !seen.insert(name.to_owned()) {
                        return Err(r.err("delegations.roles.name", format!("{name:?} is delegated twice")));
                    }
                    let field = format!("delegations.roles[{name}]");
                    let rk = role_keys(&r, &field, item)?;
                    for id in &rk.keyids {
                        if !keys.contains_key(id) {
                            return Err(r.err(&field, format!("key {id} is not listed in delegations.keys")));
                        }
                    }
                    let paths = strings(&r, &format!("{field}.paths"), item.get("paths"))?;
                    let path_hash_prefixes = strings(
                        &r,
                        &format!("{field}.path_hash_prefixes"),
                        item.get("path_hash_prefixes"),
                    )?;
                    roles.push(DelegatedRole {
                        name: name.to_owned(),
                        keyids: rk.keyids,
                        threshold: rk.threshold,
                        paths,
                        path_hash_prefixes,
                    });
                }
                Delegations { keys, roles }
            }
        };
        let targets = Targets {
            version,
            expires,
            targets,
            delegations,
        };
        Ok((targets, listed))
    }

    /// The delegation of child role `name`, if this role delegates it.
    pub fn delegation(&self, name: &str) -> Option<&DelegatedRole> {
        self.delegations.roles.iter().find(|d| d.name == name)
    }

    /// The `signed` value Notary would write.
    pub fn to_value(&self) -> Value {
        let roles = self
            .delegations
            .roles
            .iter()
            .map(|d| {
                let mut m = BTreeMap::new();
                m.insert("keyids".to_owned(), strings_value(&d.keyids));
                m.insert("name".to_owned(), Value::str(d.name.clone()));
                if !d.paths.is_empty() {
                    m.insert("paths".to_owned(), strings_value(&d.paths));
                }
                if !d.path_hash_prefixes.is_empty() {
                    m.insert("path_hash_prefixes".to_owned(), strings_value(&d.path_hash_prefixes));
                }
                m.insert("threshold".to_owned(), Value::Int(d.threshold.into()));
                Value::Object(m)
            })
            .collect();
        Value::object([
            ("_type", Value::str("Targets")),
            (
                "delegations",
                Value::object([
                    ("keys", keys_value(&self.delegations.keys)),
                    ("roles", Value::Array(roles)),
                ]),
            ),
            ("expires", Value::str(format_rfc3339_nano(self.expires))),
            (
                "targets",
                Value::Object(self.targets.iter().map(|(n, m)| (n.clone(), m.to_value())).collect()),
            ),
            ("version", Value::Int(self.version.into())),
        ])
    }
}

fn meta_value(meta: &BTreeMap<String, FileMeta>) -> Value {
    Value::Object(meta.iter().map(|(n, m)| (n.clone(), m.to_value())).collect())
}

impl Snapshot {
    /// Parses a snapshot's `signed` value.
    pub fn from_signed(v: &Value) -> Result<Snapshot, Error> {
        Snapshot::from_view(v)
    }

    /// [`Snapshot::from_signed`] from either JSON tree.
    pub(crate) fn from_view<V: JsonView>(v: &V) -> Result<Snapshot, Error> {
        let r = Reader { role: SNAPSHOT, v };
        r.check_type("Snapshot")?;
        Ok(Snapshot {
            version: r.version()?,
            expires: r.expires()?,
            meta: meta_map(&r, "meta")?,
        })
    }

    /// The `signed` value Notary would write.
    pub fn to_value(&self) -> Value {
        Value::object([
            ("_type", Value::str("Snapshot")),
            ("expires", Value::str(format_rfc3339_nano(self.expires))),
            ("meta", meta_value(&self.meta)),
            ("version", Value::Int(self.version.into())),
        ])
    }
}

impl Timestamp {
    /// Parses a timestamp's `signed` value; it must list the snapshot.
    pub fn from_signed(v: &Value) -> Result<Timestamp, Error> {
        let r = Reader { role: TIMESTAMP, v };
        r.check_type("Timestamp")?;
        let meta = meta_map(&r, "meta")?;
        if !meta.contains_key(SNAPSHOT) {
            return Err(r.err("meta", "does not list snapshot"));
        }
        Ok(Timestamp {
            version: r.version()?,
            expires: r.expires()?,
            meta,
        })
    }

    /// The snapshot's meta entry.
    pub fn snapshot_meta(&self) -> Option<&FileMeta> {
        self.meta.get(SNAPSHOT)
    }

    /// The `signed` value Notary would write.
    pub fn to_value(&self) -> Value {
        Value::object([
            ("_type", Value::str("Timestamp")),
            ("expires", Value::str(format_rfc3339_nano(self.expires))),
            ("meta", meta_value(&self.meta)),
            ("version", Value::Int(self.version.into())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for ok in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/a",
            "targets/a-b_c/d9",
        ] {
            assert!(is_valid_role(ok), "{ok}");
        }
        for bad in [
            "bogus",
            "targets/",
            "targets//a",
            "targets/A",
            "targets/a/",
            "targets/./a",
            "targets/..",
            "Targets",
            "targets/a b",
            "targets/../a",
            "targets/a.b",
            "timestamp/x",
            "",
        ] {
            assert!(!is_valid_role(bad), "{bad}");
        }
        // Shorter than 256 characters: Notary's limit on role names.
        let longest = format!("targets/{}", "a".repeat(247));
        assert_eq!(longest.len(), 255);
        assert!(is_valid_role(&longest));
        assert!(!is_valid_role(&format!("targets/{}", "a".repeat(248))));
        assert_eq!(parent_role("targets/a/b"), Some("targets/a"));
        assert_eq!(parent_role("targets/a"), Some("targets"));
        assert_eq!(parent_role("targets"), None);
    }

    #[test]
    fn a_file_parsed_for_validation_is_the_file_parse_reads() {
        let bytes = br#" {"signatures":[{"keyid":"ab12","method":"ecdsa","sig":"AAAA"}],
            "signed":{"z":"a\nb","_type":"Targets","version":3,"\u00e9":[1,{"b":null,"a":"\u2028"}]}} "#;
        let parsed = SignedFile::parse("targets", bytes.to_vec()).unwrap();
        let (file, version) = SignedFile::parse_with("targets", bytes.to_vec(), |signed| {
            signed.get("version").and_then(JsonView::as_int)
        })
        .unwrap();
        assert_eq!(version, Some(3));
        assert_eq!(file.canonical_signed(), parsed.canonical_signed());
        assert_eq!(file.signatures(), parsed.signatures());
        // Built from the bytes on first use.
        assert_eq!(file.signed(), parsed.signed());
        assert_eq!(file.reserialize(), parsed.reserialize());
        assert_eq!(file.bytes(), parsed.bytes());
        for bad in [
            &b"[]"[..],
            br#"{"signed":[]}"#,
            br#"{"signed":{},"signatures":{}}"#,
            b"{",
        ] {
            let a = SignedFile::parse("targets", bad.to_vec()).unwrap_err();
            let b = SignedFile::parse_with("targets", bad.to_vec(), |_| ()).unwrap_err();
            assert_eq!(a.to_string(), b.to_string());
        }
    }

    #[test]
    fn a_root_read_with_known_keys_is_the_root_read_without() {
        let repo = crate::testing::TestRepo::new("example.com/a", time::macros::datetime!(2026-11-22 00:00 UTC));
        let file = SignedFile::parse(ROOT, repo.root_file(1)).unwrap();
        let keys = repo.server_keys(true);
        let known: Vec<&PublicKey> = keys.timestamp.iter().chain(&keys.snapshot).collect();
        let json = Json::parse(file.bytes()).unwrap();
        let with = Root::from_view(json.get("signed").unwrap(), &known).unwrap();
        assert_eq!(with, Root::from_signed(file.signed()).unwrap());
        for k in known {
            let listed = &with.keys[k.id()];
            assert_eq!(listed.public_bytes(), k.public_bytes());
            assert_eq!(listed.canonical_id(), k.canonical_id());
        }
    }

    #[test]
    fn targets_checked_but_not_kept_are_checked_alike() {
        let entry = |e: &str| {
            format!(
                r#"{{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":2,"targets":{{"a":{{"length":1,"hashes":{{"sha256":"{}"}}}},"b":{e}}}}}"#,
                B64.encode([1u8; 32])
            )
        };
        let sha256 = B64.encode([2u8; 32]);
        let good = [
            format!(r#"{{"length":0,"hashes":{{"sha256":"{sha256}"}}}}"#),
            format!(r#"{{"length":5,"hashes":{{"sha256":"{sha256}","md5":"AAAA"}},"custom":{{"x":1}}}}"#),
        ];
        for e in &good {
            let doc = entry(e);
            let json = Json::parse(doc.as_bytes()).unwrap();
            let (unlisted, n) = Targets::from_view_unlisted(TARGETS, &json).unwrap();
            let full = Targets::from_view(TARGETS, &json).unwrap();
            assert_eq!(n, 2);
            assert_eq!(full.targets.len(), 2);
            assert!(unlisted.targets.is_empty());
            assert_eq!(
                Targets {
                    targets: full.targets.clone(),
                    ..unlisted
                },
                full
            );
        }
        let bad = [
            r#"{"length":-1,"hashes":{"sha256":"AAAA"}}"#.to_owned(),
            r#"{"hashes":{"sha256":"AAAA"}}"#.to_owned(),
            r#"{"length":1,"hashes":{}}"#.to_owned(),
            r#"{"length":1,"hashes":[]}"#.to_owned(),
            r#"{"length":1,"hashes":{"sha256":"AAAA"}}"#.to_owned(),
            r#"{"length":1,"hashes":{"sha512":"not base64!"}}"#.to_owned(),
            r#"{"length":1,"hashes":{"x":1}}"#.to_owned(),
            "7".to_owned(),
        ];
        for e in &bad {
            let doc = entry(e);
            let json = Json::parse(doc.as_bytes()).unwrap();
            let full = Targets::from_view(TARGETS, &json).unwrap_err();
            let unlisted = Targets::from_view_unlisted(TARGETS, &json).unwrap_err();
            assert_eq!(full.to_string(), unlisted.to_string(), "{e}");
        }
    }

    #[test]
    fn sha512_is_sha512() {
        for len in [0, 1, 111, 112, 127, 128, 129, 4140] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(sha512(&bytes).to_vec(), sha2::Sha512::digest(&bytes).to_vec(), "{len}");
        }
    }

    #[test]
    fn delegation_coverage() {
        let d = DelegatedRole {
            name: "targets/r".into(),
            keyids: vec![],
            threshold: 1,
            paths: vec!["releases/".into()],
            path_hash_prefixes: vec![],
        };
        assert!(d.covers("releases/v1"));
        assert!(!d.covers("other/v1"));
        let all = DelegatedRole {
            paths: vec!["".into()],
            ..d
        };
        assert!(all.covers("anything"));
    }
}
