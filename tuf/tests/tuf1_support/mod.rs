//! Builders of TUF 1.0 repositories signed by Seal, shared by the tuf1
//! integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use seal_tuf::cjson::Value;
use seal_tuf::tuf1::metadata::{format_expires, sign};
use seal_tuf::tuf1::repo::{next_snapshot, next_timestamp};
use seal_tuf::tuf1::{Metadata, Root, SigningKey, Snapshot, Targets, Timestamp};
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

pub const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);
pub const EXPIRES: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

pub fn ed() -> SigningKey {
    SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap()
}

pub fn ec() -> SigningKey {
    SigningKey::generate_ecdsa(&mut rand::rngs::OsRng).unwrap()
}

/// A crate JSON value from serde_json's.
pub fn v(j: serde_json::Value) -> Value {
    Value::parse(&serde_json::to_vec(&j).unwrap()).unwrap()
}

/// serde_json's value from a crate JSON value.
pub fn j(v: &Value) -> serde_json::Value {
    serde_json::from_slice(&seal_tuf::tuf1::cjson::to_json(v)).unwrap()
}

pub fn key_json(k: &SigningKey) -> serde_json::Value {
    j(k.public().to_value())
}

pub fn ids(keys: &[&SigningKey]) -> Vec<String> {
    keys.iter().map(|k| k.keyid().to_owned()).collect()
}

pub fn keys_json(keys: &[&SigningKey]) -> serde_json::Value {
    serde_json::Value::Object(keys.iter().map(|k| (k.keyid().to_owned(), key_json(k))).collect())
}

/// Keys of the four top-level roles.
pub struct RootKeys {
    pub root: Vec<SigningKey>,
    pub root_threshold: u64,
    pub timestamp: SigningKey,
    pub snapshot: SigningKey,
    pub targets: SigningKey,
}

impl RootKeys {
    pub fn new() -> RootKeys {
        RootKeys {
            root: vec![ed()],
            root_threshold: 1,
            timestamp: ec(),
            snapshot: ed(),
            targets: ec(),
        }
    }

    pub fn root_json(&self, version: u64, expires: OffsetDateTime) -> serde_json::Value {
        let root: Vec<&SigningKey> = self.root.iter().collect();
        let all: Vec<&SigningKey> = root
            .iter()
            .copied()
            .chain([&self.timestamp, &self.snapshot, &self.targets])
            .collect();
        json!({
            "_type": "root",
            "spec_version": "1.0.31",
            "version": version,
            "expires": format_expires(expires),
            "consistent_snapshot": true,
            "keys": keys_json(&all),
            "roles": {
                "root": {"keyids": ids(&root), "threshold": self.root_threshold},
                "timestamp": {"keyids": ids(&[&self.timestamp]), "threshold": 1},
                "snapshot": {"keyids": ids(&[&self.snapshot]), "threshold": 1},
                "targets": {"keyids": ids(&[&self.targets]), "threshold": 1},
            }
        })
    }

    pub fn root_signers(&self) -> Vec<&SigningKey> {
        self.root.iter().collect()
    }
}

pub fn targets_json(
    version: u64,
    expires: OffsetDateTime,
    targets: serde_json::Value,
    delegations: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut t = json!({
        "_type": "targets",
        "spec_version": "1.0.31",
        "version": version,
        "expires": format_expires(expires),
        "targets": targets,
    });
    if let Some(d) = delegations {
        t["delegations"] = d;
    }
    t
}

pub fn target_entry(data: &[u8]) -> serde_json::Value {
    j(&seal_tuf::tuf1::TargetFile::from_data(data).to_value())
}

pub fn signed(json: serde_json::Value, keys: &[&SigningKey]) -> Vec<u8> {
    sign(&v(json), keys)
}

/// A repository: its keys and the current bytes of every role.
pub struct Repo {
    pub keys: RootKeys,
    pub root: Vec<u8>,
    pub targets: BTreeMap<String, Vec<u8>>,
    pub snapshot: Vec<u8>,
    pub timestamp: Vec<u8>,
}

impl Repo {
    /// A repository with top-level targets `targets` (bytes already signed)
    /// and delegated roles, snapshot and timestamp made by `repo`.
    pub fn new(keys: RootKeys, targets: BTreeMap<String, Vec<u8>>) -> Repo {
        let root = signed(keys.root_json(1, EXPIRES), &keys.root_signers());
        let mut r = Repo {
            keys,
            root,
            targets,
            snapshot: Vec::new(),
            timestamp: Vec::new(),
        };
        r.publish(EXPIRES);
        r
    }

    pub fn root_md(&self) -> Metadata<Root> {
        Metadata::from_bytes("root", &self.root).unwrap()
    }

    pub fn targets_mds(&self) -> BTreeMap<String, Metadata<Targets>> {
        self.targets
            .iter()
            .map(|(n, b)| (n.clone(), Metadata::from_bytes(n, b).unwrap()))
            .collect()
    }

    /// A new snapshot and timestamp over the current targets roles.
    pub fn publish(&mut self, expires: OffsetDateTime) {
        let root = self.root_md();
        let cur_sn: Option<Metadata<Snapshot>> =
            (!self.snapshot.is_empty()).then(|| Metadata::from_bytes("snapshot", &self.snapshot).unwrap());
        let cur_ts: Option<Metadata<Timestamp>> =
            (!self.timestamp.is_empty()).then(|| Metadata::from_bytes("timestamp", &self.timestamp).unwrap());
        self.snapshot = next_snapshot(
            &root,
            cur_sn.as_ref(),
            &self.targets_mds(),
            expires,
            &[&self.keys.snapshot],
        )
        .unwrap();
        let sn: Metadata<Snapshot> = Metadata::from_bytes("snapshot", &self.snapshot).unwrap();
        self.timestamp = next_timestamp(&root, cur_ts.as_ref(), &sn, expires, &[&self.keys.timestamp]).unwrap();
    }
}

/// A simple repository: top-level targets with one target, no delegations.
pub fn simple_repo() -> Repo {
    let keys = RootKeys::new();
    let t = signed(
        targets_json(1, EXPIRES, json!({"a.txt": target_entry(b"a")}), None),
        &[&keys.targets],
    );
    Repo::new(keys, BTreeMap::from([("targets".to_owned(), t)]))
}
