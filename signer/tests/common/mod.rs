//! Shared pieces of the signer's integration tests: a client with a node's
//! certificate, timestamp metadata to sign, and a search of data files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use seal_signer::client::{ClientConfig, SignerClient};
use seal_tuf::metadata::SNAPSHOT;
use seal_tuf::{FileMeta, Timestamp};
use time::OffsetDateTime;

/// A client of the signer on `port`, presenting `cert`/`key`, trusting `ca`.
pub fn client(port: u16, ca: &Path, cert: &Path, key: &Path, timeout: Duration) -> SignerClient {
    SignerClient::new(&ClientConfig {
        hostname: "localhost".into(),
        port,
        ca_file: ca.to_owned(),
        cert_file: cert.to_owned(),
        key_file: key.to_owned(),
        timeout,
    })
    .unwrap()
}

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
