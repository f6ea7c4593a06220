//! Shared pieces of the signer's integration tests: a client with a node's
//! certificate, timestamp metadata to sign, and a search of data files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use seal_signer::testing::client;
use seal_tuf::metadata::SNAPSHOT;
use seal_tuf::{FileMeta, Timestamp};
use time::OffsetDateTime;

/// The canonical `signed` of timestamp `version`, expiring `life` from now.
pub fn timestamp(version: u64, life: time::Duration) -> Vec<u8> {
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(
        SNAPSHOT.to_owned(),
        FileMeta::for_bytes(format!("snapshot {version}").as_bytes()),
    );
    Timestamp {
        version,
        expires: OffsetDateTime::now_utc() + life,
        meta,
    }
    .to_value()
    .to_canonical()
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if let Ok(b) = std::fs::read(&p) {
            if b.windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
    out
}
