//! The `seal` binary against a real seal-node: Notary's CLI session from
//! the fixtures' transcript, a second trust directory, root key rotation,
//! a delegation published by a client holding only the delegation key, and
//! the failures a user must see clearly.

mod common;

use common::{Node, Seal, TokenServer};

const GUN: &str = "example.com/interop/app";

/// A delegation key pair made the way the fixtures' README made it with
/// openssl: an unencrypted EC private key and a self-signed certificate.
fn delegation_pair(seal: &Seal, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    seal.key_and_cert(name, |key| {
        let now = time::OffsetDateTime::now_utc();
        seal_tuf::certs::self_signed_cert(
            key,
            name,
            now - time::Duration::hours(1),
            now + time::Duration::days(365),
        )
        .expect("certificate")
    })
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn notary_cli_session_end_to_end() {
    let node = Node::start();
    full_session(&node.url, &[]);
}

#[test]
fn the_session_passes_with_token_auth_and_needs_credentials_to_write() {
    let tokens = TokenServer::start(
        "alice",
        "correct horse battery",
        serde_json::json!([{"type": "repository", "name": "example.com/*", "actions": ["*", "push", "pull"]}]),
        serde_json::json!([{"name": "example.com/*", "actions": ["pull"]}]),
    );
    let node = Node::start_with_auth(tokens.node_auth());
    let auth = base64_of("alice:correct horse battery");
    full_session(&node.url, &[("SEAL_AUTH", &auth)]);

    // Without credentials: reads get an anonymous token, writes fail in one line.
    let other = "example.com/interop/other";
    let owner = Seal::new(&node.url).with_env("NOTARY_AUTH", &auth);
    owner.ok(&["init", other]);
    let v = owner.file("v.txt", b"v");
    owner.ok(&["add", other, "v", v.to_str().unwrap()]);
    owner.ok(&["publish", other]);
    let reader = Seal::new(&node.url);
    assert!(reader.ok(&["list", other]).stdout.contains('v'));
    // Writing (here: init, which fetches the server's timestamp key with
    // push access) needs credentials.
    let r = reader.fails(&["init", "example.com/interop/third"]);
    assert!(r.stderr.contains("SEAL_AUTH"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // Wrong credentials are refused by the token service.
    let wrong = Seal::new(&node.url).with_env("SEAL_AUTH", &base64_of("alice:wrong"));
    let r = wrong.fails(&["init", "example.com/interop/fourth"]);
    assert!(r.stderr.contains("refused the credentials of alice"), "{}", r.stderr);
    // A user's token does not reach outside its GUNs.
    let outside = Seal::new(&node.url).with_env("SEAL_AUTH", &auth);
    let r = outside.fails(&["init", "other.org/app"]);
    assert!(
        r.stderr.contains("401") && r.stderr.contains("UNAUTHORIZED"),
        "{}",
        r.stderr
    );
}

#[test]
fn private_reads_answer_insufficient_scope_with_the_credentials() {
    // No anonymous rules and the node's default `anonymous_read: false`:
    // an anonymous token grants nothing, so every read needs the user's.
    let tokens = TokenServer::start(
        "alice",
        "correct horse battery",
        serde_json::json!([{"type": "repository", "name": "example.com/*", "actions": ["*", "push", "pull"]}]),
        serde_json::json!([]),
    );
    let node = Node::start_with_auth(tokens.node_auth());
    let auth = base64_of("alice:correct horse battery");
    let gun = "example.com/private/app";
    let owner = Seal::new(&node.url).with_env("SEAL_AUTH", &auth);
    owner.ok(&["init", gun]);
    let v = owner.file("v.txt", b"private payload");
    owner.ok(&["add", gun, "v", v.to_str().unwrap()]);
    owner.ok(&["publish", gun]);

    // A fresh trust directory with the credentials in either variable reads
    // everything: the anonymous token's 401 is answered with the user's.
    let digest = sha256_hex(b"private payload");
    for var in ["SEAL_AUTH", "NOTARY_AUTH"] {
        let reader = Seal::new(&node.url).with_env(var, &auth);
        let list = reader.ok(&["list", gun]).stdout;
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["v", &digest, "15", "targets"]),
            "{var}: {list}"
        );
        assert_eq!(
            reader.ok(&["lookup", gun, "v"]).stdout.trim(),
            format!("v sha256:{digest} 15")
        );
    }
    // The owner's own reads go the same way.
    assert!(owner.ok(&["list", gun]).stdout.contains(&digest));

    // Without credentials the read stops in one line naming SEAL_AUTH.
    let anonymous = Seal::new(&node.url);
    let r = anonymous.fails(&["list", gun]);
    assert!(
        r.stderr.contains("requires authentication: set SEAL_AUTH"),
        "{}",
        r.stderr
    );
    // Wrong credentials are refused by the token service.
    let wrong = Seal::new(&node.url).with_env("SEAL_AUTH", &base64_of("alice:wrong"));
    let r = wrong.fails(&["list", gun]);
    assert!(r.stderr.contains("refused the credentials of alice"), "{}", r.stderr);
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Notary's CLI session against the server at `url`, each trust directory
/// run with `env` added.
fn full_session(url: &str, env: &[(&str, &str)]) {
    let client = || env.iter().fold(Seal::new(url), |s, (k, v)| s.with_env(k, v));
    let a = client();
    let v1 = a.file("v1.txt", b"version one data\n");
    let v2 = a.file("v2.txt", b"version two data, a bit more\n");
    let p = |x: &std::path::Path| x.to_str().unwrap().to_owned();

    a.ok(&["init", GUN]);
    let out = a.ok(&["add", GUN, "v1", &p(&v1)]).stdout;
    assert_eq!(
        out.trim(),
        format!("Addition of target \"v1\" to repository \"{GUN}\" staged for next publish.")
    );
    let out = a.ok(&["publish", GUN]).stdout;
    assert!(
        out.contains(&format!("Successfully published changes for repository {GUN}")),
        "{out}"
    );

    let list = a.ok(&["list", GUN]).stdout;
    let d1 = sha256_hex(b"version one data\n");
    assert!(list.starts_with("NAME"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["v1", &d1, "17", "targets"]),
        "{list}"
    );
    assert_eq!(a.ok(&["lookup", GUN, "v1"]).stdout.trim(), format!("v1 sha256:{d1} 17"));

    // Delegation: import the key, delegate with all paths, publish.
    let (rkey, rcert) = delegation_pair(&a, "releases");
    a.ok(&["key", "import", &p(&rkey), "--role", "targets/releases"]);
    let out = a
        .ok(&[
            "delegation",
            "add",
            "-p",
            GUN,
            "targets/releases",
            &p(&rcert),
            "--all-paths",
        ])
        .stdout;
    assert!(
        out.contains("with paths [\"\" <all paths>]") && out.contains("Successfully published"),
        "{out}"
    );
    let dl = a.ok(&["delegation", "list", GUN]).stdout;
    assert!(
        dl.contains("targets/releases") && dl.contains("\"\" <all paths>"),
        "{dl}"
    );

    a.ok(&["add", GUN, "v2", &p(&v2), "--roles", "targets/releases"]);
    a.ok(&["publish", GUN]);
    let list = a.ok(&["list", GUN]).stdout;
    let d2 = sha256_hex(b"version two data, a bit more\n");
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["v2", &d2, "29", "targets/releases"]),
        "{list}"
    );

    // A second trust directory sees the same targets (trust on first use).
    let b = client();
    assert_eq!(b.ok(&["list", GUN]).stdout, list);
    assert_eq!(b.ok(&["lookup", GUN, "v2"]).stdout.trim(), format!("v2 sha256:{d2} 29"));

    // The snapshot key moves to the server; the old local one is gone.
    let out = a.ok(&["key", "rotate", GUN, "snapshot", "-r"]).stdout;
    assert_eq!(
        out.trim(),
        format!("Successfully rotated snapshot key for repository {GUN}")
    );
    assert!(!a.ok(&["key", "list"]).stdout.contains("snapshot"));
    assert_eq!(a.ok(&["list", GUN]).stdout, list);

    a.ok(&["remove", GUN, "v1"]);
    assert!(a.ok(&["status", GUN]).stdout.contains("delete"));
    a.ok(&["publish", GUN]);
    let list = a.ok(&["list", GUN]).stdout;
    assert!(!list.contains("v1 ") && list.contains("v2"), "{list}");

    let out = a.ok(&["witness", "-p", GUN, "targets/releases"]).stdout;
    assert!(
        out.contains("\t- targets/releases") && out.contains("Successfully published"),
        "{out}"
    );
    assert_eq!(a.ok(&["list", GUN]).stdout, list);
    // The other client follows the root rotation and the new versions.
    assert_eq!(b.ok(&["list", GUN]).stdout, list);

    // verify: content on stdin, printed back when it matches.
    let r = a.run_with_stdin(&["verify", GUN, "v2"], b"version two data, a bit more\n");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "version two data, a bit more\n"),
        "{}",
        r.stderr
    );
    let r = a.run_with_stdin(&["verify", GUN, "v2"], b"tampered\n");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not match target v2"), "{}", r.stderr);

    let out = a.ok(&["delete", GUN, "--remote"]).stdout;
    assert!(
        out.contains("Successfully deleted local and remote trust data"),
        "{out}"
    );
    let r = a.fails(&["list", GUN]);
    assert!(
        r.stderr.contains(&format!("does not have trust data for {GUN}")),
        "{}",
        r.stderr
    );
}

#[test]
fn root_key_rotation_is_followed_by_other_clients() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let b = Seal::new(&node.url);
    let f = a.file("t.txt", b"payload");
    a.ok(&["init", "-p", "example.com/rot"]);
    a.ok(&["add", "-p", "example.com/rot", "t", f.to_str().unwrap()]);
    let before = b.ok(&["list", "example.com/rot"]).stdout;

    let old_root: Vec<String> = root_key_ids(&a);
    a.ok(&["key", "rotate", "example.com/rot", "root"]);
    let new_root = root_key_ids(&a);
    assert_eq!(new_root.len(), 2, "old and new root keys are both kept locally");
    assert!(old_root.iter().all(|k| new_root.contains(k)));

    // B trusted root v1; it verifies v2 through the chain and keeps working.
    assert_eq!(b.ok(&["list", "example.com/rot"]).stdout, before);
    a.ok(&["add", "-p", "example.com/rot", "u", f.to_str().unwrap()]);
    assert!(b.ok(&["list", "example.com/rot"]).stdout.contains("u "));
    let root = std::fs::read(b.dir().join("tuf/example.com/rot/metadata/root.json")).unwrap();
    let root = seal_tuf::SignedFile::parse("root", root).unwrap();
    assert_eq!(seal_tuf::Root::from_signed(root.signed()).unwrap().version, 2);
}

fn root_key_ids(s: &Seal) -> Vec<String> {
    s.ok(&["key", "list"])
        .stdout
        .lines()
        .filter(|l| l.starts_with("root "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn a_delegate_publishes_with_only_the_delegation_key() {
    let node = Node::start();
    let owner = Seal::new(&node.url);
    let delegate = Seal::new(&node.url);
    let gun = "example.com/delegated";
    owner.ok(&["init", "-p", gun]);
    owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    let (key, cert) = delegation_pair(&delegate, "ci");
    owner.ok(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/ci",
        cert.to_str().unwrap(),
        "--paths",
        "builds/",
    ]);

    delegate.ok(&["key", "import", key.to_str().unwrap(), "--role", "targets/ci"]);
    let f = delegate.file("b.bin", b"build output");
    // Outside the delegated paths: refused locally, nothing uploaded.
    delegate.ok(&["add", gun, "other/x", f.to_str().unwrap(), "--roles", "targets/ci"]);
    let r = delegate.fails(&["publish", gun]);
    assert!(
        r.stderr.contains("outside the paths delegated to targets/ci"),
        "{}",
        r.stderr
    );
    delegate.ok(&["reset", gun, "--all"]);

    delegate.ok(&[
        "add",
        "-p",
        gun,
        "builds/1",
        f.to_str().unwrap(),
        "--roles",
        "targets/ci",
    ]);
    let list = owner.ok(&["list", gun]).stdout;
    assert!(list.contains("builds/1") && list.contains("targets/ci"), "{list}");
    // The delegate cannot touch the top-level targets role.
    delegate.ok(&["add", gun, "top", f.to_str().unwrap()]);
    let r = delegate.fails(&["publish", gun]);
    assert!(r.stderr.contains("no private key for role targets"), "{}", r.stderr);
    assert!(
        delegate.ok(&["status", gun]).stdout.contains("top"),
        "a failed publish keeps the changelist"
    );
}

#[test]
fn failures_are_one_clear_line_and_change_nothing() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let gun = "example.com/errors";
    a.ok(&["init", "-p", gun]);
    let f = a.file("t.txt", b"x");

    // Wrong passphrase: nothing is published, the change stays staged.
    a.ok(&["add", gun, "t", f.to_str().unwrap()]);
    let mut env = a.env.clone();
    for (k, v) in env.iter_mut() {
        if k == "NOTARY_TARGETS_PASSPHRASE" {
            *v = "not the passphrase".into();
        }
    }
    let a_wrong = Seal {
        server: a.server.clone(),
        trust: tempfile::TempDir::new().unwrap(),
        env,
    };
    copy_dir(a.dir(), a_wrong.dir());
    let r = a_wrong.fails(&["publish", gun]);
    assert!(r.stderr.to_lowercase().contains("passphrase"), "{}", r.stderr);
    assert!(a_wrong.ok(&["status", gun]).stdout.contains(" t"));
    a.fails(&["lookup", gun, "t"]);

    // Offline server.
    let offline = Seal::new("http://127.0.0.1:9");
    let r = offline.fails(&["list", gun]);
    assert!(r.stderr.contains("unreachable"), "{}", r.stderr);

    // The server's refusal shows Notary's error code.
    let r = a.fails(&["list", "example.com/never"]);
    assert!(r.stderr.contains("does not have trust data"), "{}", r.stderr);
    let r = a.fails(&["lookup", gun, "missing"]);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);
    let r = a.fails(&["add", gun, "x", "/nonexistent/file"]);
    assert!(r.stderr.contains("/nonexistent/file"), "{}", r.stderr);
    let r = a.fails(&["list", "../escape"]);
    assert!(r.stderr.contains("not a valid collection name"), "{}", r.stderr);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&t).unwrap();
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[test]
fn more_commands_addhash_delegation_removal_and_key_files() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let gun = "example.com/more";
    a.ok(&["init", "-p", gun]);

    // addhash: a target known only by its hashes and size.
    let sum = sha256_hex(b"remote artifact");
    a.ok(&["addhash", "-p", gun, "art", "15", "--sha256", &sum]);
    assert_eq!(
        a.ok(&["lookup", gun, "art"]).stdout.trim(),
        format!("art sha256:{sum} 15")
    );
    let r = a.fails(&["addhash", gun, "bad", "1", "--sha256", "abc"]);
    assert!(r.stderr.contains("64 hex digits"), "{}", r.stderr);

    // status and reset.
    let f = a.file("x.txt", b"x");
    a.ok(&["add", gun, "x", f.to_str().unwrap()]);
    a.ok(&["add", gun, "y", f.to_str().unwrap()]);
    let st = a.ok(&["status", gun]).stdout;
    assert!(st.contains("create") && st.contains(" x") && st.contains(" y"), "{st}");
    a.ok(&["reset", gun, "-n", "0"]);
    let st = a.ok(&["status", gun]).stdout;
    assert!(!st.contains(" x\n") && st.contains(" y"), "{st}");
    a.ok(&["reset", gun, "--all"]);
    assert!(a.ok(&["status", gun]).stdout.contains("No unpublished changes"));

    // A delegation added, then removed entirely.
    let (_, cert) = delegation_pair(&a, "team");
    a.ok(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/team",
        cert.to_str().unwrap(),
        "--paths",
        "team/",
    ]);
    assert!(a.ok(&["delegation", "list", gun]).stdout.contains("targets/team"));
    a.fails(&["delegation", "remove", gun, "targets/team"]);
    a.ok(&["delegation", "remove", "-y", "-p", gun, "targets/team"]);
    assert!(a.ok(&["delegation", "list", gun]).stdout.contains("No delegations"));

    // key generate -o writes an encrypted key Seal can import; export
    // returns the stored bytes; remove drops the file.
    let prefix = a.dir().join("gen");
    a.ok(&[
        "key",
        "generate",
        "ecdsa",
        "--role",
        "targets/team",
        "-o",
        prefix.to_str().unwrap(),
    ]);
    let pem = std::fs::read_to_string(prefix.with_extension("key")).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: targets/team\n"),
        "{pem}"
    );
    assert!(std::fs::read_to_string(prefix.with_extension("pub"))
        .unwrap()
        .contains("BEGIN PUBLIC KEY"));
    let b = Seal::new(&node.url);
    b.ok(&["key", "import", prefix.with_extension("key").to_str().unwrap()]);
    let list = b.ok(&["key", "list"]).stdout;
    let id = list
        .lines()
        .find(|l| l.starts_with("targets/team"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("imported key listed")
        .to_owned();
    let out = b.dir().join("export.pem");
    b.ok(&["key", "export", "--key", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(b.dir().join(format!("private/{id}.key")))
            .unwrap()
            .replacen("\nrole:", &format!("\npath: {id}\nrole:"), 1)
    );
    b.ok(&["key", "remove", "-y", &id]);
    assert!(!b.ok(&["key", "list"]).stdout.contains(&id));
    b.fails(&["key", "remove", "-y", &id]);
}

#[test]
fn https_with_a_custom_ca() {
    let Some(fx) = common::fixtures() else { return };
    let pki = fx.join("certs/local-test-pki");
    let node = Node::start_tls(&pki.join("notary-server.crt"), &pki.join("notary-server.key"));
    let a = Seal::new(&node.url);
    // Without the CA the server's certificate is not trusted.
    let r = a.fails(&["init", "example.com/tls"]);
    assert!(r.stderr.contains("unreachable"), "{}", r.stderr);
    let ca = pki.join("root-ca.crt");
    a.ok(&["--tlscacert", ca.to_str().unwrap(), "init", "-p", "example.com/tls"]);
    // The same through the config file, with a path relative to it.
    std::fs::copy(&ca, a.dir().join("ca.crt")).unwrap();
    std::fs::write(
        a.dir().join("config.json"),
        format!(r#"{{"remote_server":{{"url":"{}","root_ca":"ca.crt"}}}}"#, node.url),
    )
    .unwrap();
    let r = a.run(&["list", "example.com/tls"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn notarys_trust_directory_keys_are_read() {
    let Some(fx) = common::fixtures() else { return };
    let a = Seal::new("http://127.0.0.1:9");
    let private = a.dir().join("private");
    std::fs::create_dir_all(&private).unwrap();
    let keys = fx.join("keys/example.com_interop_app");
    for e in std::fs::read_dir(&keys).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().len() == 68 {
            std::fs::copy(&p, private.join(p.file_name().unwrap())).unwrap();
        }
    }
    let list = a.ok(&["key", "list"]).stdout;
    for (role, id) in [
        (
            "root",
            "ebdd8e3b6b65e2638700ae9e64b6de9a95853acb8242cecf882a4ed3ec518bba",
        ),
        (
            "targets",
            "0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701",
        ),
        (
            "targets/releases",
            "e2069a2d6863a8a5e1f061d8f9549ff3678315ffe94e3d8c89331c16480d1fd8",
        ),
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(role) && l.contains(id)),
            "{role} {id} not in\n{list}"
        );
    }
    // The passphrase check is real: passwd with the right old passphrase
    // re-encrypts, a wrong one is refused.
    let r = a.run(&[
        "key",
        "passwd",
        "0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut wrong = Seal::new("http://127.0.0.1:9");
    wrong.env = vec![("NOTARY_TARGETS_PASSPHRASE".into(), "nope".into())];
    std::fs::create_dir_all(wrong.dir().join("private")).unwrap();
    std::fs::copy(
        keys.join("0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701.key"),
        wrong
            .dir()
            .join("private/0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701.key"),
    )
    .unwrap();
    let r = wrong.fails(&[
        "key",
        "passwd",
        "0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701",
    ]);
    assert!(r.stderr.contains("passphrase"), "{}", r.stderr);
}

#[test]
fn guns_with_url_characters_reach_the_server_as_they_are() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let b = Seal::new(&node.url);
    let f = a.file("t.txt", b"odd payload");
    let digest = sha256_hex(b"odd payload");
    let odd = [
        "example.com/a%2Fb",
        "example.com/q?x=1&y=2",
        "example.com/sp ace#frag",
        "example.com/semi;colon,comma+plus",
        "example.com/ünï",
    ];
    for gun in odd {
        a.ok(&["init", gun]);
        a.ok(&["add", gun, "t", f.to_str().unwrap()]);
        a.ok(&["publish", gun]);
        // Another trust directory finds it under the same name.
        let list = b.ok(&["list", gun]).stdout;
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["t", &digest, "11", "targets"]),
            "{gun}: {list}"
        );
        assert_eq!(
            b.ok(&["lookup", gun, "t"]).stdout.trim(),
            format!("t sha256:{digest} 11")
        );
    }
    // Locally, each GUN's characters are kept as they are.
    assert!(b.dir().join("tuf/example.com/a%2Fb/metadata/timestamp.json").is_file());
    assert!(b
        .dir()
        .join("tuf/example.com/q?x=1&y=2/metadata/timestamp.json")
        .is_file());
    // The server stored each under its exact name: what an unescaped URL
    // would have named instead has no trust data.
    for misread in ["example.com/a/b", "example.com/q", "example.com/sp ace"] {
        let r = b.fails(&["list", misread]);
        assert!(r.stderr.contains("does not have trust data"), "{misread}: {}", r.stderr);
    }
}

/// The expiry of the timestamp cached in `seal`'s trust directory for `gun`.
fn cached_timestamp_expiry(seal: &Seal, gun: &str) -> time::OffsetDateTime {
    let bytes = std::fs::read(seal.dir().join(format!("tuf/{gun}/metadata/timestamp.json"))).unwrap();
    let file = seal_tuf::SignedFile::parse("timestamp", bytes).unwrap();
    seal_tuf::Timestamp::from_signed(file.signed()).unwrap().expires
}

#[test]
fn reads_fall_back_to_valid_cached_metadata_when_the_server_is_down() {
    // Timestamps that live 15 s, so that the cached one expires in the test.
    let node = Node::start_with_config(serde_json::json!({"timestamps": {"timestamp_lifetime_secs": 15}}));
    let mut a = Seal::new(&node.url);
    let gun = "example.com/offline";
    let f = a.file("t.txt", b"cached payload");
    let digest = sha256_hex(b"cached payload");
    a.ok(&["init", gun]);
    a.ok(&["add", gun, "t", f.to_str().unwrap()]);
    a.ok(&["publish", gun]);
    // An online read caches a timestamp with a few seconds left to run.
    let mut online = a.ok(&["list", gun]).stdout;
    while cached_timestamp_expiry(&a, gun) - time::OffsetDateTime::now_utc() < time::Duration::seconds(6) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        online = a.ok(&["list", gun]).stdout;
    }
    assert!(online.contains(&digest), "{online}");

    // Connection refused, then a server answering 503: the cached, still
    // valid metadata answers, with one warning line.
    for (down, why) in [
        (common::closed_port_url(), "unreachable"),
        (common::failing_server(503), "server answered 503"),
    ] {
        a.server = down.clone();
        let r = a.ok(&["list", gun]);
        assert_eq!(r.stdout, online, "{down}");
        let warning = r.stderr.trim_end();
        assert!(
            warning.starts_with("* warning: ")
                && warning.contains(why)
                && warning.contains(&format!("using the cached trust data of {gun}"))
                && warning.lines().count() == 1,
            "{warning:?}"
        );
        let r = a.ok(&["lookup", gun, "t"]);
        assert_eq!(r.stdout.trim(), format!("t sha256:{digest} 14"));
        assert!(r.stderr.contains("using the cached trust data"), "{}", r.stderr);
    }

    // Once the cached timestamp has expired, the cache is refused too.
    let expires = cached_timestamp_expiry(&a, gun);
    let wait = expires - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(500);
    std::thread::sleep(std::time::Duration::try_from(wait).unwrap_or_default());
    a.server = common::closed_port_url();
    for cmd in [vec!["list", gun], vec!["lookup", gun, "t"]] {
        let r = a.fails(&cmd);
        assert!(
            r.stderr.contains("unreachable")
                && r.stderr
                    .contains(&format!("the cached trust data of {gun} cannot be used"))
                && r.stderr.contains("timestamp: metadata expired"),
            "{}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    // The server back: a fresh timestamp, the same targets.
    a.server = node.url.clone();
    assert_eq!(a.ok(&["list", gun]).stdout, online);
}

#[test]
fn a_delegation_whose_last_key_is_removed_is_published_and_then_skipped() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let gun = "example.com/keyless";
    let f = a.file("t.txt", b"team build");
    let p = |x: &std::path::Path| x.to_str().unwrap().to_owned();
    a.ok(&["init", "-p", gun]);
    let (key, cert) = delegation_pair(&a, "team");
    a.ok(&["key", "import", &p(&key), "--role", "targets/team"]);
    a.ok(&["delegation", "add", "-p", gun, "targets/team", &p(&cert), "--all-paths"]);
    a.ok(&["add", "-p", gun, "team/1", &p(&f), "--roles", "targets/team"]);
    a.ok(&["add", "-p", gun, "top", &p(&f)]);
    let list = a.ok(&["list", gun]).stdout;
    assert!(list.contains("team/1") && list.contains("targets/team"), "{list}");
    let id = a
        .ok(&["delegation", "list", gun])
        .stdout
        .lines()
        .find(|l| l.starts_with("targets/team"))
        .and_then(|l| l.split_whitespace().find(|w| w.len() == 64).map(str::to_owned))
        .expect("the delegation's key ID");
    assert_eq!(id.len(), 64, "{id}");

    // Removing the only key is staged, as Notary stages it ...
    let out = a.ok(&["delegation", "remove", gun, "targets/team", &id]).stdout;
    assert!(
        out.contains(&format!("Removal of delegation role targets/team with keys [{id}]")),
        "{out}"
    );
    let status = a.ok(&["status", gun]).stdout;
    assert!(status.contains("update") && status.contains("targets/team"), "{status}");
    // ... and published, with Notary's warning.
    let r = a.ok(&["publish", gun]);
    assert!(
        r.stderr
            .contains("role targets/team has fewer keys than its threshold of 1; it will not be usable until keys are added to it"),
        "{}",
        r.stderr
    );
    // The published parent keeps the role, with no keys.
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.dir().join(format!("tuf/{gun}/metadata/targets.json"))).unwrap())
            .unwrap();
    let role = &targets["signed"]["delegations"]["roles"][0];
    assert_eq!(role["name"], "targets/team", "{targets}");
    assert!(
        role["keyids"].is_null() || role["keyids"].as_array().is_some_and(Vec::is_empty),
        "{role}"
    );
    assert_eq!(
        targets["signed"]["delegations"]["keys"],
        serde_json::json!({}),
        "{targets}"
    );

    // Listing works: the delegation no longer verifies, so it is skipped
    // with a warning and none of its targets is trusted. So for a second
    // trust directory that never saw it verify.
    let b = Seal::new(&node.url);
    for reader in [&a, &b] {
        let r = reader.ok(&["list", gun]);
        assert!(r.stdout.contains("top") && !r.stdout.contains("team/1"), "{}", r.stdout);
        let warning = r.stderr.trim_end();
        assert!(
            warning.starts_with("* warning: skipping delegation targets/team of example.com/keyless: ")
                && warning.contains("valid signatures did not meet threshold (0 of 1)")
                && warning.lines().count() == 1,
            "{warning:?}"
        );
        let r = reader.run(&["lookup", gun, "team/1"]);
        assert_ne!(r.code, 0, "{}", r.stdout);
        assert!(
            r.stderr.contains("* fatal: no trust data for target team/1"),
            "{}",
            r.stderr
        );
        let dl = reader.ok(&["delegation", "list", gun]).stdout;
        assert!(dl.contains("targets/team"), "{dl}");
    }
}

/// `key list` as (role, GUN, key ID) rows, without the location column.
fn key_rows(seal: &Seal) -> Vec<(String, String, String)> {
    let out = seal.ok(&["key", "list"]).stdout;
    let location = seal.dir().join("private").display().to_string();
    out.lines()
        .skip_while(|l| !l.starts_with("ROLE"))
        .skip(2)
        .filter_map(|l| l.trim().strip_suffix(location.as_str()))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            match cells[..] {
                [role, id] => (role.to_owned(), String::new(), id.to_owned()),
                [role, gun, id] => (role.to_owned(), gun.to_owned(), id.to_owned()),
                _ => panic!("unexpected key list line {l:?}"),
            }
        })
        .collect()
}

#[test]
fn key_export_and_import_round_trip_every_key_of_a_collection() {
    let node = Node::start();
    let a = Seal::new(&node.url);
    let gun = "example.com/keys";
    a.ok(&["init", "-p", gun]);
    let (ops, _) = delegation_pair(&a, "ops");
    a.ok(&["key", "import", ops.to_str().unwrap(), "--role", "targets/ops"]);
    let keys = key_rows(&a);
    assert_eq!(keys.len(), 4, "{keys:?}");

    let out = a.dir().join("export.pem");
    a.ok(&["key", "export", "-o", out.to_str().unwrap()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // One block per key, sorted by key ID, each with Notary's headers in
    // Go's order: gun (for a collection's own keys), path, role.
    let text = std::fs::read_to_string(&out).unwrap();
    let blocks: Vec<&str> = text.split_inclusive("-----END ENCRYPTED PRIVATE KEY-----\n").collect();
    assert_eq!(blocks.len(), 4, "{text}");
    for (block, (role, key_gun, id)) in blocks.iter().zip(&keys) {
        let mut headers = vec![];
        if !key_gun.is_empty() {
            headers.push(format!("gun: {key_gun}"));
        }
        headers.push(format!("path: {id}"));
        headers.push(format!("role: {role}"));
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], "-----BEGIN ENCRYPTED PRIVATE KEY-----");
        assert_eq!(lines[1..=headers.len()], headers, "{block}");
        assert_eq!(lines[headers.len() + 1], "");
        // The encrypted key itself is the stored one.
        let stored = std::fs::read_to_string(a.dir().join(format!("private/{id}.key"))).unwrap();
        let body = |t: &str| t.lines().skip_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        assert_eq!(body(block), body(&stored));
    }
    assert_eq!(
        keys.iter()
            .map(|k| k.0.as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        ["root", "snapshot", "targets", "targets/ops"].into()
    );

    // Another trust directory imports every key, under the same ID, role and GUN.
    let b = Seal::new(&node.url);
    b.ok(&["key", "import", out.to_str().unwrap()]);
    assert_eq!(key_rows(&b), keys);
    // And signs with them: targets and snapshot for a new target.
    let f = b.file("from-b.txt", b"signed by b");
    b.ok(&["add", "-p", gun, "from-b", f.to_str().unwrap()]);
    assert!(a.ok(&["list", gun]).stdout.contains("from-b"));

    // --key and --gun choose keys; not both at once.
    let targets_id = &keys.iter().find(|k| k.0 == "targets").unwrap().2;
    let one = a.ok(&["key", "export", "--key", targets_id]).stdout;
    assert_eq!(one.matches("BEGIN").count(), 1);
    assert!(one.contains(&format!("path: {targets_id}\n")), "{one}");
    let own = a.ok(&["key", "export", "--gun", gun]).stdout;
    assert_eq!(own.matches("BEGIN").count(), 2, "targets and snapshot only: {own}");
    let r = a.fails(&["key", "export", "--gun", gun, "--key", targets_id]);
    assert!(r.stderr.contains("not a mix"), "{}", r.stderr);
}

/// The Notary fixture key file `id`, as Notary's `key export` writes it:
/// its block with a `path: <id>` header, headers sorted as Go sorts them.
fn notary_export(keys: &std::path::Path, id: &str) -> String {
    let text = std::fs::read_to_string(keys.join(format!("{id}.key"))).unwrap();
    let mut lines = text.lines();
    let begin = lines.next().unwrap().to_owned();
    let mut headers: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    headers.push(format!("path: {id}"));
    headers.sort();
    let rest: Vec<&str> = lines.collect();
    format!("{begin}\n{}\n\n{}\n", headers.join("\n"), rest.join("\n"))
}

#[test]
fn notarys_key_export_round_trips_through_seal() {
    let Some(fx) = common::fixtures() else { return };
    let keys = fx.join("keys/example.com_interop_app");
    const APP: &str = "example.com/interop/app";
    const TARGETS: &str = "0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701";
    const RELEASES: &str = "e2069a2d6863a8a5e1f061d8f9549ff3678315ffe94e3d8c89331c16480d1fd8";
    const ROOT: &str = "ebdd8e3b6b65e2638700ae9e64b6de9a95853acb8242cecf882a4ed3ec518bba";

    // A trust directory holding the key files Notary's CLI wrote.
    let a = Seal::new("http://127.0.0.1:9");
    std::fs::create_dir_all(a.dir().join("private")).unwrap();
    for id in [TARGETS, RELEASES, ROOT] {
        std::fs::copy(
            keys.join(format!("{id}.key")),
            a.dir().join(format!("private/{id}.key")),
        )
        .unwrap();
    }
    // seal key export writes, byte for byte, what notary key export would.
    let expected: String = [TARGETS, RELEASES, ROOT]
        .iter()
        .map(|id| notary_export(&keys, id))
        .collect();
    let out = a.dir().join("all.pem");
    a.ok(&["key", "export", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    assert_eq!(
        a.ok(&["key", "export", "--key", RELEASES]).stdout,
        notary_export(&keys, RELEASES)
    );
    // Only the targets key carries the GUN (Notary matches the gun header).
    assert_eq!(
        a.ok(&["key", "export", "--gun", APP]).stdout,
        notary_export(&keys, TARGETS)
    );

    // seal key import takes every key of Notary's export.
    let b = Seal::new("http://127.0.0.1:9");
    b.ok(&["key", "import", out.to_str().unwrap()]);
    assert_eq!(
        key_rows(&b),
        [
            ("targets".to_owned(), APP.to_owned(), TARGETS.to_owned()),
            ("targets/releases".to_owned(), String::new(), RELEASES.to_owned()),
            ("root".to_owned(), String::new(), ROOT.to_owned()),
        ]
    );
    // Each is usable: it decrypts with its role's passphrase.
    for id in [TARGETS, RELEASES, ROOT] {
        b.ok(&["key", "passwd", id]);
    }

    // What Notary refuses is refused, block by block, and the rest imported:
    // a targets key without a GUN, a path naming another key.
    let no_gun = notary_export(&keys, TARGETS).replace(&format!("gun: {APP}\n"), "");
    let misnamed = notary_export(&keys, RELEASES).replace(&format!("path: {RELEASES}"), &format!("path: {ROOT}"));
    let bad = a.file(
        "bad.pem",
        format!("{no_gun}{misnamed}{}", notary_export(&keys, ROOT)).as_bytes(),
    );
    let c = Seal::new("http://127.0.0.1:9");
    let r = c.fails(&["key", "import", bad.to_str().unwrap()]);
    for part in [
        "imported 1 of 3 keys".to_owned(),
        format!("key block 1 (path {TARGETS}): a targets key belongs to one collection: a GUN is required"),
        format!("key block 2 (path {ROOT})"),
        format!("the path header names key {ROOT}, but the block holds key {RELEASES}"),
    ] {
        assert!(r.stderr.contains(&part), "{part:?} not in {}", r.stderr);
    }
    assert_eq!(key_rows(&c), [("root".to_owned(), String::new(), ROOT.to_owned())]);
}
