//! What a node serves, checked as a client would: its timestamp verified
//! against the server's timestamp key, and later updates of a `TestRepo`.

use std::time::{Duration, Instant};

use seal_signer::testing::assert_ed25519_signature;
use seal_tuf::testing::TestRepo;
use seal_tuf::{KeyType, PublicKey, SignedFile, Timestamp};
use time::OffsetDateTime;

use super::cluster::tuf;
use super::Node;

/// The timestamp `node` serves for `gun`, its signature by `key` verified
/// with seal-tuf and, for an Ed25519 key, also with ed25519-dalek's
/// `verify_strict`.
pub fn served_timestamp(node: &Node, gun: &str, key: &PublicKey) -> Timestamp {
    let ts = node.get(&tuf(gun, "timestamp.json"));
    assert_eq!(ts.status, 200, "{}", ts.text());
    let file = SignedFile::parse("timestamp", ts.body.clone()).unwrap();
    seal_tuf::verify::verify_threshold(&file, &[key], 1).unwrap();
    if key.key_type() == KeyType::Ed25519 {
        let sig = file
            .signatures()
            .iter()
            .find(|s| s.keyid == key.id())
            .expect("a signature by the timestamp key");
        assert_ed25519_signature(key.public_bytes(), file.canonical_signed(), &sig.sig);
    }
    Timestamp::from_signed(file.signed()).unwrap()
}

/// A later targets + snapshot update of `repo` (version `version` of both,
/// listing two targets).
pub fn update(repo: &TestRepo, version: u64) -> Vec<(String, Vec<u8>)> {
    let root = repo.root_file(1);
    let t = repo.targets_file(version, &[("v1", b"one"), ("v2", b"two")]);
    let s = repo.snapshot_file(version, &[("root", &root), ("targets", &t)]);
    vec![("targets".to_owned(), t), ("snapshot".to_owned(), s)]
}

/// Polls until `node` serves a timestamp of `gun` newer than `after` (the
/// refresher re-signed it), never an expired one; returns it.
pub fn refreshed_timestamp(node: &Node, gun: &str, key: &PublicKey, after: &Timestamp) -> Timestamp {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ts = served_timestamp(node, gun, key);
        assert!(ts.expires > OffsetDateTime::now_utc(), "served an expired timestamp");
        if ts.version > after.version {
            assert!(ts.expires > after.expires);
            return ts;
        }
        assert!(Instant::now() < deadline, "the timestamp was not refreshed");
        std::thread::sleep(Duration::from_millis(250));
    }
}
