//! The TUF 1.0 metadata model: the signed envelope, the four top-level
//! roles, meta and target files, delegations (path patterns, hash prefixes
//! and TAP 15 succinct hash bins).
//!
//! Parsing is strict about the fields the spec defines (types, ranges, the
//! exact `expires` form python-tuf reads and writes) and keeps everything
//! else: [`Metadata`] holds the parsed `signed` object and its canonical
//! bytes, so signatures are checked over exactly what was received and
//! unrecognised fields survive re-serialisation.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use time::OffsetDateTime;

use crate::cjson::Value;
use crate::tuf1::cjson::{to_canonical, to_json};
use crate::tuf1::error::Error;
use crate::tuf1::keys::{Key, Signature, SigningKey};

/// Name of the root role.
pub const ROOT: &str = "root";
/// Name of the timestamp role.
pub const TIMESTAMP: &str = "timestamp";
/// Name of the snapshot role.
pub const SNAPSHOT: &str = "snapshot";
/// Name of the top-level targets role.
pub const TARGETS: &str = "targets";
/// The four top-level role names.
pub const TOP_LEVEL_ROLES: [&str; 4] = [ROOT, TIMESTAMP, SNAPSHOT, TARGETS];
/// The spec version this implementation writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// A JSON object being read, with the role and path for error messages.
pub(crate) struct Obj<'a> {
    role: &'a str,
    path: String,
    map: &'a BTreeMap<String, Value>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(role: &'a str, path: impl Into<String>, v: &'a Value) -> Result<Obj<'a>, Error> {
        let path = path.into();
        match v.as_object() {
            Some(map) => Ok(Obj { role, path, map }),
            None => Err(Error::format(role, &path, "not an object")),
        }
    }

    fn at(&self, key: &str) -> String {
        if key.is_empty() {
            self.path.clone()
        } else if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::format(self.role, &self.at(key), reason)
    }

    fn req(&self, key: &str) -> Result<&'a Value, Error> {
        self.map.get(key).ok_or_else(|| self.err(key, "missing"))
    }

    fn opt(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn str(&self, key: &str) -> Result<&'a str, Error> {
        self.req(key)?.as_str().ok_or_else(|| self.err(key, "not a string"))
    }

    fn uint(&self, key: &str) -> Result<u64, Error> {
        as_u64(self.req(key)?).ok_or_else(|| self.err(key, "not an integer from 0 to 2^64-1"))
    }

    fn positive(&self, key: &str) -> Result<u64, Error> {
        match self.uint(key)? {
            0 => Err(self.err(key, "must be at least 1")),
            n => Ok(n),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, Error> {
        match self.req(key)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.err(key, "not a boolean")),
        }
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>, Error> {
        Obj::new(self.role, self.at(key), self.req(key)?)
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        let items = self.req(key)?.as_array().ok_or_else(|| self.err(key, "not an array"))?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(key, "holds a non-string"))
            })
            .collect()
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_int().and_then(|i| u64::try_from(i).ok())
}

/// Parses `expires` in the one form python-tuf reads and writes,
/// `YYYY-MM-DDTHH:MM:SSZ` (no fraction, no offset): any other spelling
/// would be re-encoded differently by python-tuf and its signatures fail.
pub fn parse_expires(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    // On bytes: a multi-byte character must not be sliced through.
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter()
            .try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// The name a client fetches metadata of `role` under: `<version>.<role>.json`
/// for root, and for snapshot and targets roles when the repository uses
/// consistent snapshots; `<role>.json` otherwise (always for timestamp).
pub fn metadata_file_name(role: &str, version: Option<u64>, consistent_snapshot: bool) -> String {
    match version {
        Some(v) if role == ROOT || (consistent_snapshot && role != TIMESTAMP) => format!("{v}.{role}.json"),
        _ => format!("{role}.json"),
    }
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds): Notary's RFC 3339 form of
/// the time with its fraction of a second dropped.
pub fn format_expires(t: OffsetDateTime) -> String {
    crate::time::format_rfc3339_nano(t - time::Duration::nanoseconds(i64::from(t.nanosecond())))
}

/// The fields every role's `signed` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// `version`, at least 1.
    pub version: u64,
    /// `spec_version`, `1.x` or `1.x.y`.
    pub spec_version: String,
    /// `expires`.
    pub expires: OffsetDateTime,
}

impl Common {
    fn parse(role: &str, o: &Obj<'_>, expected_type: &'static str) -> Result<Common, Error> {
        let found = o.str("_type")?;
        if found != expected_type {
            return Err(Error::WrongType {
                role: role.to_owned(),
                expected: expected_type,
                found: found.to_owned(),
            });
        }
        let spec_version = o.str("spec_version")?;
        let parts: Vec<&str> = spec_version.split('.').collect();
        let digits = |p: &&str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(digits) || parts[0] != "1" {
            return Err(Error::SpecVersion {
                role: role.to_owned(),
                found: spec_version.to_owned(),
            });
        }
        let expires = o.str("expires")?;
        let expires = parse_expires(expires).ok_or_else(|| o.err("expires", "not of the form YYYY-MM-DDTHH:MM:SSZ"))?;
        Ok(Common {
            version: o.positive("version")?,
            spec_version: spec_version.to_owned(),
            expires,
        })
    }
}

/// A role's keys and threshold, as root lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// Key IDs, distinct.
    pub keyids: Vec<String>,
    /// How many distinct keys must sign, at least 1.
    pub threshold: u64,
}

impl RoleKeys {
    fn parse(o: &Obj<'_>) -> Result<RoleKeys, Error> {
        let keyids = o.strings("keyids")?;
        let distinct: BTreeSet<&String> = keyids.iter().collect();
        if distinct.len() != keyids.len() {
            return Err(o.err("keyids", "lists a key ID twice"));
        }
        Ok(RoleKeys {
            keyids,
            threshold: o.positive("threshold")?,
        })
    }
}

fn parse_keys(role: &str, o: &Obj<'_>) -> Result<BTreeMap<String, Key>, Error> {
    o.map
        .iter()
        .map(|(id, v)| Ok((id.clone(), Key::from_value(role, &o.at(id), id, v)?)))
        .collect()
}

/// What a role's `signed` is parsed into.
pub trait Signed: Sized {
    /// The `_type` it must carry.
    const TYPE: &'static str;
    /// Parses `signed`; `role` names the file in errors.
    fn from_signed(role: &str, signed: &Value) -> Result<Self, Error>;
    /// The common fields.
    fn common(&self) -> &Common;
}

/// `root.json`'s `signed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Common fields.
    pub common: Common,
    /// `consistent_snapshot`, when present.
    pub consistent_snapshot: Option<bool>,
    /// `keys` by key ID.
    pub keys: BTreeMap<String, Key>,
    /// `roles`: exactly the four top-level roles.
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Signed for Root {
    const TYPE: &'static str = ROOT;

    fn from_signed(role: &str, signed: &Value) -> Result<Root, Error> {
        let o = Obj::new(role, "signed", signed)?;
        let common = Common::parse(role, &o, Self::TYPE)?;
        let consistent_snapshot = match o.opt("consistent_snapshot") {
            None => None,
            Some(_) => Some(o.bool("consistent_snapshot")?),
        };
        let keys = parse_keys(role, &o.obj("keys")?)?;
        let roles_obj = o.obj("roles")?;
        let names: BTreeSet<&str> = roles_obj.map.keys().map(String::as_str).collect();
        if names != TOP_LEVEL_ROLES.into_iter().collect() {
            return Err(roles_obj.err("", "must list exactly root, timestamp, snapshot and targets"));
        }
        let roles = roles_obj
            .map
            .keys()
            .map(|name| Ok((name.clone(), RoleKeys::parse(&roles_obj.obj(name)?)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Root {
            common,
            consistent_snapshot,
            keys,
            roles,
        })
    }

    fn common(&self) -> &Common {
        &self.common
    }
}

impl Root {
    /// The keys and threshold of a top-level role.
    pub fn role(&self, name: &str) -> Option<&RoleKeys> {
        self.roles.get(name)
    }

    /// The keys root lists for a top-level role, by ID (IDs without a key
    /// are left out).
    pub fn role_keys(&self, name: &str) -> BTreeMap<&str, &Key> {
        self.roles
            .get(name)
            .map(|r| {
                r.keyids
                    .iter()
                    .filter_map(|id| self.keys.get(id).map(|k| (id.as_str(), k)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `consistent_snapshot`, false when absent.
    pub fn consistent_snapshot(&self) -> bool {
        self.consistent_snapshot.unwrap_or(false)
    }
}

/// The version, length and hashes of a metadata file, as the timestamp and
/// snapshot list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFile {
    /// `version`, at least 1.
    pub version: u64,
    /// `length`, when listed.
    pub length: Option<u64>,
    /// `hashes` (algorithm → lowercase hex), when listed; never empty.
    pub hashes: Option<BTreeMap<String, String>>,
}

fn parse_hashes(o: &Obj<'_>, key: &str) -> Result<BTreeMap<String, String>, Error> {
    let h = o.obj(key)?;
    if h.map.is_empty() {
        return Err(o.err(key, "is empty"));
    }
    h.map
        .iter()
        .map(|(alg, v)| {
            v.as_str()
                .map(|s| (alg.clone(), s.to_owned()))
                .ok_or_else(|| h.err(alg, "not a string"))
        })
        .collect()
}

impl MetaFile {
    fn parse(o: &Obj<'_>) -> Result<MetaFile, Error> {
        Ok(MetaFile {
            version: o.positive("version")?,
            length: match o.opt("length") {
                None => None,
                Some(_) => Some(o.uint("length")?),
            },
            hashes: match o.opt("hashes") {
                None => None,
                Some(_) => Some(parse_hashes(o, "hashes")?),
            },
        })
    }

    /// The meta entry for `data` at `version`, with its length and sha256.
    pub fn from_data(version: u64, data: &[u8]) -> MetaFile {
        MetaFile {
            version,
            length: Some(data.len() as u64),
            hashes: Some(BTreeMap::from([(
                "sha256".to_owned(),
                hex::encode(Sha256::digest(data)),
            )])),
        }
    }

    /// The entry as JSON.
    pub fn to_value(&self) -> Value {
        let mut m = BTreeMap::from([("version".to_owned(), Value::Int(self.version.into()))]);
        if let Some(l) = self.length {
            m.insert("length".into(), Value::Int(l.into()));
        }
        if let Some(h) = &self.hashes {
            m.insert("hashes".into(), hashes_value(h));
        }
        Value::Object(m)
    }

    /// Checks `data` against the listed length and hashes (those listed).
    pub fn verify(&self, role: &str, data: &[u8]) -> Result<(), Error> {
        if let Some(expected) = self.length {
            check_length(role, expected, data)?;
        }
        if let Some(h) = &self.hashes {
            check_hashes(role, h, data)?;
        }
        Ok(())
    }
}

fn hashes_value(h: &BTreeMap<String, String>) -> Value {
    Value::Object(h.iter().map(|(k, v)| (k.clone(), Value::str(v))).collect())
}

fn check_length(role: &str, expected: u64, data: &[u8]) -> Result<(), Error> {
    if data.len() as u64 != expected {
        return Err(Error::LengthMismatch {
            role: role.to_owned(),
            expected,
            got: data.len() as u64,
        });
    }
    Ok(())
}

/// Checks every listed hash of `data`; an algorithm this implementation
/// cannot compute is an error, as in python-tuf.
fn check_hashes(role: &str, hashes: &BTreeMap<String, String>, data: &[u8]) -> Result<(), Error> {
    for (alg, expected) in hashes {
        let got = match alg.as_str() {
            "sha224" => hex::encode(Sha224::digest(data)),
            "sha256" => hex::encode(Sha256::digest(data)),
            "sha384" => hex::encode(Sha384::digest(data)),
            "sha512" => hex::encode(Sha512::digest(data)),
            _ => {
                return Err(Error::UnsupportedHash {
                    role: role.to_owned(),
                    algorithm: alg.clone(),
                })
            }
        };
        if &got != expected {
            return Err(Error::HashMismatch {
                role: role.to_owned(),
                algorithm: alg.clone(),
                expected: expected.clone(),
                got,
            });
        }
    }
    Ok(())
}

/// `timestamp.json`'s `signed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// Common fields.
    pub common: Common,
    /// `meta["snapshot.json"]`.
    pub snapshot_meta: MetaFile,
}

impl Signed for Timestamp {
    const TYPE: &'static str = TIMESTAMP;

    fn from_signed(role: &str, signed: &Value) -> Result<Timestamp, Error> {
        let o = Obj::new(role, "signed", signed)?;
        let common = Common::parse(role, &o, Self::TYPE)?;
        let meta = o.obj("meta")?;
        // python-tuf keeps only this entry and re-encodes `signed` without
        // any other, so another entry would break its signature check.
        if meta.map.len() != 1 {
            return Err(o.err("meta", "must hold exactly snapshot.json"));
        }
        Ok(Timestamp {
            common,
            snapshot_meta: MetaFile::parse(&meta.obj("snapshot.json")?)?,
        })
    }

    fn common(&self) -> &Common {
        &self.common
    }
}

/// `snapshot.json`'s `signed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Common fields.
    pub common: Common,
    /// `meta`: `<role>.json` → its version (and maybe length and hashes).
    pub meta: BTreeMap<String, MetaFile>,
}

impl Signed for Snapshot {
    const TYPE: &'static str = SNAPSHOT;

    fn from_signed(role: &str, signed: &Value) -> Result<Snapshot, Error> {
        let o = Obj::new(role, "signed", signed)?;
        let common = Common::parse(role, &o, Self::TYPE)?;
        let meta = o.obj("meta")?;
        let meta = meta
            .map
            .keys()
            .map(|name| Ok((name.clone(), MetaFile::parse(&meta.obj(name)?)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Snapshot { common, meta })
    }

    fn common(&self) -> &Common {
        &self.common
    }
}

/// A target as a targets role lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    /// `length`.
    pub length: u64,
    /// `hashes` (algorithm → lowercase hex), never empty.
    pub hashes: BTreeMap<String, String>,
    /// `custom`, when present.
    pub custom: Option<Value>,
}

impl TargetFile {
    fn parse(o: &Obj<'_>) -> Result<TargetFile, Error> {
        Ok(TargetFile {
            length: o.uint("length")?,
            hashes: parse_hashes(o, "hashes")?,
            custom: o.opt("custom").cloned(),
        })
    }

    /// Checks downloaded target bytes against length and every hash.
    pub fn verify(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        check_length(path, self.length, data)?;
        check_hashes(path, &self.hashes, data)
    }

    /// The names under which a consistent-snapshot repository serves the
    /// target at `path`: `<dir>/<hash>.<name>`, one per listed hash.
    pub fn hash_prefixed_paths(&self, path: &str) -> Vec<String> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        self.hashes.values().map(|h| format!("{dir}{h}.{name}")).collect()
    }

    /// The entry for `data`, with its sha256.
    pub fn from_data(data: &[u8]) -> TargetFile {
        TargetFile {
            length: data.len() as u64,
            hashes: BTreeMap::from([("sha256".to_owned(), hex::encode(Sha256::digest(data)))]),
            custom: None,
        }
    }

    /// The entry as JSON.
    pub fn to_value(&self) -> Value {
        let mut m = BTreeMap::from([
            ("length".to_owned(), Value::Int(self.length.into())),
            ("hashes".to_owned(), hashes_value(&self.hashes)),
        ]);
        if let Some(c) = &self.custom {
            m.insert("custom".into(), c.clone());
        }
        Value::Object(m)
    }
}

/// Which targets a delegated role is trusted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSpec {
    /// `paths`: glob patterns matched segment by segment
    /// (see [`path_matches`]).
    Patterns(Vec<String>),
    /// `path_hash_prefixes`: prefixes of the hex sha256 of the target path.
    HashPrefixes(Vec<String>),
}

/// One entry of `delegations.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedRole {
    /// `name`: neither empty nor a top-level role's name.
    pub name: String,
    /// Keys and threshold.
    pub keys: RoleKeys,
    /// `terminating`.
    pub terminating: bool,
    /// `paths` or `path_hash_prefixes`.
    pub paths: PathSpec,
}

impl DelegatedRole {
    /// Whether this role is trusted for `target`.
    pub fn is_delegated_path(&self, target: &str) -> bool {
        match &self.paths {
            PathSpec::Patterns(p) => p.iter().any(|pat| path_matches(target, pat)),
            PathSpec::HashPrefixes(p) => {
                let h = hex::encode(Sha256::digest(target.as_bytes()));
                p.iter().any(|prefix| h.starts_with(prefix.as_str()))
            }
        }
    }
}

/// `delegations.succinct_roles` (TAP 15): `2^bit_length` hash bins named
/// `<name_prefix>-<hex>` sharing keys and threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccinctRoles {
    /// Keys and threshold of every bin.
    pub keys: RoleKeys,
    /// `bit_length`, 1 to 32.
    pub bit_length: u32,
    /// `name_prefix`.
    pub name_prefix: String,
}

impl SuccinctRoles {
    /// How many bins (`bit_length` is 1 to 32 when parsed; a larger value
    /// set by hand counts as 32).
    fn bin_count(&self) -> u64 {
        1u64 << self.bit_length.min(32)
    }

    fn suffix_len(&self) -> usize {
        // Hex digits of the largest bin number.
        (self.bit_length as usize).div_ceil(4)
    }

    fn bin_name(&self, n: u64) -> String {
        format!("{}-{:0width$x}", self.name_prefix, n, width = self.suffix_len())
    }

    /// The bin responsible for `target`: the first `bit_length` bits of the
    /// sha256 of its path.
    pub fn role_for_target(&self, target: &str) -> String {
        let h = Sha256::digest(target.as_bytes());
        let first = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        self.bin_name(first >> 32u32.saturating_sub(self.bit_length.min(32)))
    }

    /// Whether `name` is one of the bins.
    pub fn is_delegated_role(&self, name: &str) -> bool {
        let Some(suffix) = name
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|s| s.strip_prefix('-'))
        else {
            return false;
        };
        suffix.len() == self.suffix_len()
            && suffix.bytes().all(|c| c.is_ascii_hexdigit())
            && u64::from_str_radix(suffix, 16).is_ok_and(|n| n < self.bin_count())
    }

    /// Every bin's name, in order.
    pub fn role_names(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.bin_count()).map(|n| self.bin_name(n))
    }
}

/// `delegations.roles` or `delegations.succinct_roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegatedRoles {
    /// An ordered list of roles (order is trust order).
    Roles(Vec<DelegatedRole>),
    /// Hash bins.
    Succinct(SuccinctRoles),
}

/// A targets role's `delegations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegations {
    /// `keys` by key ID.
    pub keys: BTreeMap<String, Key>,
    /// The delegated roles.
    pub roles: DelegatedRoles,
}

impl Delegations {
    fn parse(role: &str, o: &Obj<'_>) -> Result<Delegations, Error> {
        let keys = parse_keys(role, &o.obj("keys")?)?;
        let roles = match (o.opt("roles"), o.opt("succinct_roles")) {
            (Some(_), None) => {
                let list = o
                    .req("roles")?
                    .as_array()
                    .ok_or_else(|| o.err("roles", "not an array"))?;
                let mut names = BTreeSet::new();
                let mut roles = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    let r = Obj::new(role, o.at(&format!("roles[{i}]")), item)?;
                    let name = r.str("name")?;
                    if name.is_empty() || TOP_LEVEL_ROLES.contains(&name) {
                        return Err(r.err("name", "empty or a top-level role's name"));
                    }
                    if !names.insert(name) {
                        return Err(r.err("name", format!("role {name:?} delegated twice")));
                    }
                    let paths = match (r.opt("paths"), r.opt("path_hash_prefixes")) {
                        (Some(_), None) => PathSpec::Patterns(r.strings("paths")?),
                        (None, Some(_)) => PathSpec::HashPrefixes(r.strings("path_hash_prefixes")?),
                        _ => return Err(r.err("paths", "exactly one of paths and path_hash_prefixes is required")),
                    };
                    roles.push(DelegatedRole {
                        name: name.to_owned(),
                        keys: RoleKeys::parse(&r)?,
                        terminating: r.bool("terminating")?,
                        paths,
                    });
                }
                DelegatedRoles::Roles(roles)
            }
            (None, Some(_)) => {
                let s = o.obj("succinct_roles")?;
                let bit_length = s.uint("bit_length")?;
                if !(1..=32).contains(&bit_length) {
                    return Err(s.err("bit_length", "must be from 1 to 32"));
                }
                DelegatedRoles::Succinct(SuccinctRoles {
                    keys: RoleKeys::parse(&s)?,
                    bit_length: bit_length as u32,
                    name_prefix: s.str("name_prefix")?.to_owned(),
                })
            }
            _ => return Err(o.err("roles", "exactly one of roles and succinct_roles is required")),
        };
        Ok(Delegations { keys, roles })
    }

    /// The keys and threshold of the delegated role `name`, if delegated.
    pub fn role(&self, name: &str) -> Option<&RoleKeys> {
        match &self.roles {
            DelegatedRoles::Roles(roles) => roles.iter().find(|r| r.name == name).map(|r| &r.keys),
            DelegatedRoles::Succinct(s) => s.is_delegated_role(name).then_some(&s.keys),
        }
    }

    /// The roles trusted for `target`, in trust order, each with its
    /// `terminating` flag (a hash bin is terminating); the list stops
    /// after the first terminating role.
    pub fn roles_for_target(&self, target: &str) -> Vec<(String, bool)> {
        match &self.roles {
            DelegatedRoles::Roles(roles) => {
                let mut out = Vec::new();
                for r in roles.iter().filter(|r| r.is_delegated_path(target)) {
                    out.push((r.name.clone(), r.terminating));
                    if r.terminating {
                        break;
                    }
                }
                out
            }
            DelegatedRoles::Succinct(s) => vec![(s.role_for_target(target), true)],
        }
    }

    /// Names of every delegated role (for hash bins, every bin: up to 2^32
    /// of them, hence an iterator).
    pub fn role_names(&self) -> Box<dyn Iterator<Item = String> + '_> {
        match &self.roles {
            DelegatedRoles::Roles(roles) => Box::new(roles.iter().map(|r| r.name.clone())),
            DelegatedRoles::Succinct(s) => Box::new(s.role_names()),
        }
    }
}

/// A targets role's `signed` (top-level or delegated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Common fields.
    pub common: Common,
    /// `targets`: path → file.
    pub targets: BTreeMap<String, TargetFile>,
    /// `delegations`, when present.
    pub delegations: Option<Delegations>,
}

impl Signed for Targets {
    const TYPE: &'static str = TARGETS;

    fn from_signed(role: &str, signed: &Value) -> Result<Targets, Error> {
        let o = Obj::new(role, "signed", signed)?;
        let common = Common::parse(role, &o, Self::TYPE)?;
        let t = o.obj("targets")?;
        let targets = t
            .map
            .keys()
            .map(|path| Ok((path.clone(), TargetFile::parse(&t.obj(path)?)?)))
            .collect::<Result<_, Error>>()?;
        let delegations = match o.opt("delegations") {
            None => None,
            Some(_) => Some(Delegations::parse(role, &o.obj("delegations")?)?),
        };
        Ok(Targets {
            common,
            targets,
            delegations,
        })
    }

    fn common(&self) -> &Common {
        &self.common
    }
}

/// A role that delegates: root (to the top-level roles) or a targets role.
pub trait Delegator {
    /// The keys (by ID) and threshold `role` must be signed with, if this
    /// role delegates to it.
    fn delegation(&self, role: &str) -> Option<(&BTreeMap<String, Key>, &RoleKeys)>;
}

impl Delegator for Root {
    fn delegation(&self, role: &str) -> Option<(&BTreeMap<String, Key>, &RoleKeys)> {
        self.roles.get(role).map(|r| (&self.keys, r))
    }
}

impl Delegator for Targets {
    fn delegation(&self, role: &str) -> Option<(&BTreeMap<String, Key>, &RoleKeys)> {
        let d = self.delegations.as_ref()?;
        d.role(role).map(|r| (&d.keys, r))
    }
}

/// A parsed metadata file: the typed `signed`, the `signed` object as
/// received (unknown fields included), its canonical bytes, the signatures
/// and the bytes received.
#[derive(Debug, Clone)]
pub struct Metadata<T> {
    signed: T,
    signed_value: Value,
    canonical: Vec<u8>,
    signatures: Vec<Signature>,
    bytes: Vec<u8>,
}

impl<T: Signed> Metadata<T> {
    /// Parses a metadata file of role `role` (used in errors), checking the
    /// envelope and `signed`'s fields. Signatures are not checked here.
    pub fn from_bytes(role: &str, bytes: &[u8]) -> Result<Metadata<T>, Error> {
        let v = Value::parse(bytes).map_err(|e| Error::Json {
            role: role.to_owned(),
            reason: e.0,
        })?;
        let o = Obj::new(role, "", &v)?;
        let signed_value = o.req("signed")?;
        let list = o
            .req("signatures")?
            .as_array()
            .ok_or_else(|| o.err("signatures", "not an array"))?;
        let signatures = list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = Obj::new(role, format!("signatures[{i}]"), s)?;
                Ok(Signature {
                    keyid: s.str("keyid")?.to_owned(),
                    sig: s.str("sig")?.to_owned(),
                })
            })
            .collect::<Result<_, Error>>()?;
        let signed = T::from_signed(role, signed_value)?;
        Ok(Metadata {
            signed,
            canonical: to_canonical(signed_value),
            signed_value: signed_value.clone(),
            signatures,
            bytes: bytes.to_vec(),
        })
    }

    /// The typed `signed`.
    pub fn signed(&self) -> &T {
        &self.signed
    }

    /// `signed` as received.
    pub fn signed_value(&self) -> &Value {
        &self.signed_value
    }

    /// The canonical bytes of `signed`: what signatures cover.
    pub fn canonical_signed(&self) -> &[u8] {
        &self.canonical
    }

    /// The signatures.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The file's bytes as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `version`.
    pub fn version(&self) -> u64 {
        self.signed.common().version
    }

    /// `expires`.
    pub fn expires(&self) -> OffsetDateTime {
        self.signed.common().expires
    }

    /// Checks that `role` is signed by at least the threshold of distinct
    /// keys `delegator` (named `delegator_name`) gives it. Returns how many distinct keys signed.
    pub fn verify_by(&self, role: &str, delegator_name: &str, delegator: &dyn Delegator) -> Result<usize, Error> {
        let (keys, role_keys) = delegator.delegation(role).ok_or_else(|| Error::NotDelegated {
            role: role.to_owned(),
            delegator: delegator_name.to_owned(),
        })?;
        verify_threshold(role, &self.canonical, &self.signatures, keys, role_keys)
    }
}

/// Counts the distinct keys of `role_keys` with a valid signature over
/// `canonical`: a signature whose key ID the role does not list is ignored,
/// a key ID signing twice counts once, and two IDs of one key count once.
pub fn verify_threshold(
    role: &str,
    canonical: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, Key>,
    role_keys: &RoleKeys,
) -> Result<usize, Error> {
    let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
    for keyid in &role_keys.keyids {
        let Some(key) = keys.get(keyid) else { continue };
        let Some(identity) = key.identity() else { continue };
        if counted.contains(&identity) {
            continue;
        }
        let valid = signatures
            .iter()
            .filter(|s| &s.keyid == keyid)
            .filter_map(|s| hex::decode(&s.sig).ok())
            .any(|sig| key.verify(canonical, &sig));
        if valid {
            counted.insert(identity);
        }
    }
    if (counted.len() as u64) < role_keys.threshold {
        return Err(Error::Threshold {
            role: role.to_owned(),
            valid: counted.len(),
            threshold: role_keys.threshold,
        });
    }
    Ok(counted.len())
}

/// Signs `signed` with each key and returns the file's bytes:
/// `{"signatures":[…],"signed":…}` as compact JSON ([`to_json`]; canonical
/// JSON is not valid JSON once a PEM key's newlines are in it).
pub fn sign(signed: &Value, keys: &[&SigningKey]) -> Vec<u8> {
    let canonical = to_canonical(signed);
    let sigs = keys.iter().map(|k| k.sign(&canonical).to_value()).collect();
    to_json(&Value::object([
        ("signatures", Value::Array(sigs)),
        ("signed", signed.clone()),
    ]))
}

/// Whether `target` matches `pattern` as python-tuf matches delegation
/// paths: both split on `/`, the same number of segments, and each segment
/// matched with shell wildcards (`*` any run, `?` one character, `[…]` a
/// set, `[!…]` its complement). A `*` never crosses a `/`.
pub fn path_matches(target: &str, pattern: &str) -> bool {
    let t: Vec<&str> = target.split('/').collect();
    let p: Vec<&str> = pattern.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| segment_matches(t, p))
}

enum Tok {
    Star,
    Any,
    Char(char),
    Set { negated: bool, items: Vec<(char, char)> },
}

fn tokenize(pattern: &str) -> Vec<Tok> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::Any),
            '[' => {
                // As fnmatch.translate: `!` negates, a `]` right after the
                // opening (or after `!`) is a member, an unclosed `[` is literal.
                let mut j = i;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push(Tok::Char('['));
                    continue;
                }
                let body = &chars[i..j];
                i = j + 1;
                let (negated, body) = match body.first() {
                    Some('!') => (true, &body[1..]),
                    _ => (false, body),
                };
                let mut items = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        items.push((body[k], body[k + 2]));
                        k += 3;
                    } else {
                        items.push((body[k], body[k]));
                        k += 1;
                    }
                }
                out.push(Tok::Set { negated, items });
            }
            c => out.push(Tok::Char(c)),
        }
    }
    out
}

fn tok_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Star => true,
        Tok::Any => true,
        Tok::Char(x) => *x == c,
        Tok::Set { negated, items } => items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated,
    }
}

/// One segment against one pattern, with the linear-backtracking wildcard
/// algorithm (one saved `*` position), so no pattern costs more than
/// O(len(segment) × len(pattern)).
fn segment_matches(segment: &str, pattern: &str) -> bool {
    let toks = tokenize(pattern);
    let s: Vec<char> = segment.chars().collect();
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match toks.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(t) if tok_matches(t, s[si]) => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    toks[pi..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_has_one_spelling() {
        let t = parse_expires("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(format_expires(t), "2030-01-02T03:04:05Z");
        for bad in [
            "2030-1-02T03:04:05Z",
            "2030-01-02T03:04:05.000Z",
            "2030-01-02T03:04:05+00:00",
            "2030-02-30T03:04:05Z",
            "2030-01-02 03:04:05Z",
            "+030-01-02T03:04:05Z",
            "2é3-01-02T03:04:05Z",
            "2030-01-02T03:04:éZ",
        ] {
            assert!(parse_expires(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let signed = Value::parse(
            br#"{"_type":"root","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z",
                 "keys":{},"roles":{"root":{"keyids":[],"threshold":1}}}"#,
        )
        .unwrap();
        let err = Root::from_signed("root", &signed).unwrap_err();
        assert!(
            matches!(err, Error::Format { ref field, .. } if field == "signed.roles"),
            "{err:?}"
        );
        let signed = Value::parse(
            br#"{"_type":"targets","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z",
                 "targets":{"a":{"length":-1,"hashes":{"sha256":"00"}}}}"#,
        )
        .unwrap();
        let err = Targets::from_signed("t", &signed).unwrap_err();
        assert!(
            matches!(err, Error::Format { ref field, .. } if field == "signed.targets.a.length"),
            "{err:?}"
        );
    }

    #[test]
    fn listing_four_billion_bins_is_lazy() {
        let d = Delegations {
            keys: BTreeMap::new(),
            roles: DelegatedRoles::Succinct(SuccinctRoles {
                keys: RoleKeys {
                    keyids: vec![],
                    threshold: 1,
                },
                bit_length: 32,
                name_prefix: "b".into(),
            }),
        };
        let first: Vec<String> = d.role_names().take(2).collect();
        assert_eq!(first, ["b-00000000", "b-00000001"]);
    }

    #[test]
    fn file_names_as_python_tuf_fetches_them() {
        assert_eq!(metadata_file_name("root", Some(3), false), "3.root.json");
        assert_eq!(metadata_file_name("timestamp", Some(3), true), "timestamp.json");
        assert_eq!(metadata_file_name("snapshot", Some(3), true), "3.snapshot.json");
        assert_eq!(metadata_file_name("snapshot", Some(3), false), "snapshot.json");
        assert_eq!(metadata_file_name("bin-0a", Some(1), true), "1.bin-0a.json");
        let t = TargetFile::from_data(b"x");
        let h = &t.hashes["sha256"];
        assert_eq!(t.hash_prefixed_paths("a/b/c.tgz"), [format!("a/b/{h}.c.tgz")]);
        assert_eq!(t.hash_prefixed_paths("c.tgz"), [format!("{h}.c.tgz")]);
    }

    #[test]
    fn path_patterns_match_per_segment() {
        assert!(path_matches("a/b.tgz", "a/*.tgz"));
        assert!(!path_matches("a/b/c.tgz", "a/*.tgz"));
        assert!(!path_matches("a/b/c.tgz", "a/*"));
        assert!(path_matches("a/b/c.tgz", "a/*/*"));
        assert!(path_matches("file1.txt", "file?.txt"));
        assert!(!path_matches("file10.txt", "file?.txt"));
        assert!(path_matches("x5", "x[0-9]"));
        assert!(!path_matches("x5", "x[!0-9]"));
        assert!(path_matches("x]", "x[]]"));
        assert!(path_matches("x[", "x["));
        assert!(path_matches("", "*"));
        assert!(path_matches("abc", "a*b*c*"));
        assert!(!path_matches("Abc", "a*"));
        assert!(path_matches("targets/x", "*/x"));
        let long = "a".repeat(5000);
        assert!(!path_matches(&long, &"*a".repeat(200).replace("*a*a", "*a*b")));
    }

    #[test]
    fn succinct_bins_as_python_tuf_names_them() {
        let s = SuccinctRoles {
            keys: RoleKeys {
                keyids: vec![],
                threshold: 1,
            },
            bit_length: 5,
            name_prefix: "bin".into(),
        };
        let names: Vec<String> = s.role_names().collect();
        assert_eq!(names.len(), 32);
        assert_eq!(names[0], "bin-00");
        assert_eq!(names[31], "bin-1f");
        assert!(s.is_delegated_role("bin-1f"));
        assert!(!s.is_delegated_role("bin-20"));
        assert!(!s.is_delegated_role("bin-1"));
        assert!(!s.is_delegated_role("bin-+1"));
        // sha256("a") = ca978112…: first byte 0xca = 11001010, top 5 bits 11001.
        assert_eq!(s.role_for_target("a"), "bin-19");
        let s32 = SuccinctRoles {
            bit_length: 32,
            ..s.clone()
        };
        assert_eq!(s32.role_for_target("a"), "bin-ca978112");
        let s1 = SuccinctRoles { bit_length: 1, ..s };
        assert_eq!(s1.role_for_target("a"), "bin-1");
    }
}
