//! The `seal` CLI with what Notary's CLI accepts: a root certificate whose
//! CN is the wildcard `docker/*` (as a PrintableString, as other tools
//! write it), and `trust_pinning.certs` entries ending in `*`.

mod common;

use common::{Node, Seal};

/// A root key file (PKCS#8 PEM) and a self-signed certificate for it whose
/// CN is the PrintableString `cn`.
fn root_pair(seal: &Seal, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    seal.key_and_cert("root", |key| {
        let now = time::OffsetDateTime::now_utc();
        seal_tuf::testing::printable_cn_cert(
            key,
            cn,
            now - time::Duration::hours(1),
            now + time::Duration::days(3650),
        )
    })
}

#[test]
fn init_with_a_docker_star_root_certificate_publishes_and_reads() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let (key, cert) = root_pair(&a, "docker/*");
    let gun = "docker/repoName1";
    a.ok(&[
        "init",
        gun,
        "--rootkey",
        key.to_str().unwrap(),
        "--rootcert",
        cert.to_str().unwrap(),
    ]);
    let payload = a.file("v1.txt", b"payload one\n");
    a.ok(&["add", gun, "v1", payload.to_str().unwrap()]);
    a.ok(&["publish", gun]);
    // Another client trusts it on first use and reads the target.
    let b = Seal::new(&node.url);
    let list = b.ok(&["list", gun]).stdout;
    assert!(list.contains("v1"), "{list}");

    // The same certificate cannot serve a GUN outside docker/.
    let c = Seal::new(&node.url);
    let (key, cert) = root_pair(&c, "docker/*");
    let other = "library/app";
    c.ok(&[
        "init",
        other,
        "--rootkey",
        key.to_str().unwrap(),
        "--rootcert",
        cert.to_str().unwrap(),
    ]);
    let r = c.fails(&["publish", other]);
    assert!(
        r.stderr
            .contains("no valid (or pinned) root certificate for library/app"),
        "{}",
        r.stderr
    );
    assert!(Seal::new(&node.url)
        .fails(&["list", other])
        .stderr
        .contains("does not have"));
}

/// The root key ID the trust directory of `seal` pins for `gun` (the one
/// its cached root lists).
fn root_key_id(seal: &Seal, gun: &str) -> String {
    let root = std::fs::read(seal.dir().join("tuf").join(gun).join("metadata/root.json")).expect("cached root");
    let v: serde_json::Value = serde_json::from_slice(&root).unwrap();
    v["signed"]["roles"]["root"]["keyids"][0].as_str().unwrap().to_owned()
}

#[test]
fn a_wildcard_trust_pin_covers_every_gun_under_its_prefix() {
    let node = Node::start();
    let publisher = Seal::new(&node.url);
    let gun = "example.com/pinned/app";
    publisher.ok(&["init", "-p", gun]);
    let id = root_key_id(&publisher, gun);

    let reader = |pins: serde_json::Value| {
        let r = Seal::new(&node.url);
        let config = serde_json::json!({"trust_pinning": {"certs": pins}});
        std::fs::write(r.dir().join("config.json"), config.to_string()).unwrap();
        r
    };
    // A pin for the prefix naming another key: the root is refused, where
    // an unmatched pin would have fallen back to trust on first use.
    let wrong = "0".repeat(64);
    let r = reader(serde_json::json!({"example.com/pinned/*": [wrong]})).fails(&["list", gun]);
    assert!(r.stderr.contains("pinned"), "{}", r.stderr);
    // The longest matching prefix wins over a shorter one.
    let r = reader(serde_json::json!({"example.com/*": [id], "example.com/pinned/*": [wrong]}));
    r.fails(&["list", gun]);
    let r = reader(serde_json::json!({"example.com/*": [wrong], "example.com/pinned/*": [id]}));
    r.ok(&["list", gun]);
    // The GUN's own entry wins over every prefix.
    let r = reader(serde_json::json!({"example.com/pinned/*": [wrong], gun: [id]}));
    r.ok(&["list", gun]);
    // disable_tofu refuses only a first contact without a pin.
    let r = Seal::new(&node.url);
    std::fs::write(
        r.dir().join("config.json"),
        serde_json::json!({"trust_pinning": {"disable_tofu": true}}).to_string(),
    )
    .unwrap();
    let failed = r.fails(&["list", gun]);
    assert!(
        failed.stderr.contains("trust on first use is disabled"),
        "{}",
        failed.stderr
    );
}
