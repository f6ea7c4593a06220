//! Three real seal-signer processes holding a 2-of-3 FROST Ed25519 key:
//! DKG through one signer, signing through any, with one signer killed and
//! then two, the policy on every participant, and no plaintext share at rest.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client, files_containing, timestamp};

use frost_ed25519 as frost;
use frost_ed25519::keys::KeyPackage;
use seal_proto::threshold::{SignCommitRequest, SignShareRequest};
use seal_signer::client::{ClientError, SignerClient};
use seal_signer::testing::{assert_ed25519_signature as verify, metric, ClusterSigner, TestPki, ThresholdCluster};
use seal_signer::threshold::{GrpcPeers, Peer, PeerTransport, ThresholdError, ThresholdHandle};

const WEEK: time::Duration = time::Duration::days(7);

/// Three signers (2 of 3) under one test PKI, and a node's certificate.
/// Fields drop in order: the signers first, the directory last.
struct Setup {
    cluster: ThresholdCluster,
    node_cert: PathBuf,
    node_key: PathBuf,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// `adjust(id, config)` may change a signer's config before it starts.
    fn new(adjust: impl Fn(u16, &mut serde_json::Value)) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path(), "seal");
        let (node_cert, node_key) = pki.leaf("node");
        let cluster = ThresholdCluster::start(
            Path::new(env!("CARGO_BIN_EXE_seal-signer")),
            &pki,
            dir.path(),
            (2, 3),
            &["node*"],
            |id, config| {
                // Bare timestamps, as a Notary server sends them: the
                // binding to the snapshot is tested with seal-node on top
                // (node/tests/signer_failover.rs) and in the policy.
                config["policy"] = serde_json::json!({"notary_compat": true});
                adjust(id, config)
            },
        );
        Setup {
            cluster,
            node_cert,
            node_key,
            pki,
            _dir: dir,
        }
    }

    /// The peer transport of signer `from` (its certificate) to signer `to`, as another signer
    /// of the cluster would call it.
    fn peer_call(&self, from: u16, to: u16) -> GrpcPeers {
        let (caller, callee) = (
            &self.cluster.signers[usize::from(from) - 1],
            &self.cluster.signers[usize::from(to) - 1],
        );
        GrpcPeers::new(
            &[Peer {
                id: to,
                addr: format!("localhost:{}", callee.port),
                name: None,
            }],
            &self.pki.ca_file(),
            &caller.cert,
            &caller.key,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// A client of each signer, with the node's certificate.
    fn clients(&self) -> Vec<SignerClient> {
        self.cluster
            .signers
            .iter()
            .map(|s| {
                client(
                    s.port,
                    &self.pki.ca_file(),
                    &self.node_cert,
                    &self.node_key,
                    Duration::from_secs(30),
                )
            })
            .collect()
    }
}

/// `seal-signer status` with `s`'s config: whether it exited with success,
/// and what it printed.
fn status(s: &ClusterSigner) -> (bool, String) {
    status_with(s, &[])
}

/// [`status`] with more arguments (`--json`).
fn status_with(s: &ClusterSigner, more: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seal-signer"))
        .args(["status", "--config"])
        .arg(&s.config)
        .args(more)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Signer `s`'s stored key package of `key_id`, decrypted with its
/// passphrase (the signer must be stopped: RocksDB locks its directory),
/// and the record's handle.
fn stored_share(s: &ClusterSigner, key_id: &str) -> (KeyPackage, ThresholdHandle, Vec<u8>) {
    let store = seal_signer::store::Store::open(&s.data_dir).unwrap();
    let record = store.key(key_id).unwrap().expect("each signer holds a share");
    assert_eq!(record.backend, "threshold");
    let handle = ThresholdHandle::decode(&record.handle).unwrap();
    let plain = seal_signer::software::decrypt_secret(s.passphrase.as_bytes(), &handle.share_jwe).unwrap();
    (KeyPackage::deserialize(&plain).unwrap(), handle, plain.to_vec())
}

/// Held by each test: the tests of this file start signers on ports picked free and restart
/// them on the same ports, which a signer of a test running beside them could take meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_signers_make_and_use_a_frost_key() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(|_, _| {});
    let clients = setup.clients();
    let cluster = &mut setup.cluster;
    let gun = "example.com/app";

    // DKG through signer 1; signers 2 and 3 know the same key.
    let key = clients[0].create_key("ed25519", gun, "timestamp").await.unwrap();
    assert_eq!(key.algorithm, "ed25519");
    assert_eq!(key.public.len(), 32);
    assert_eq!(
        seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, key.public.clone())
            .unwrap()
            .id(),
        key.key_id
    );
    for c in &clients[1..] {
        let info = c.get_key_info(&key.key_id).await.unwrap();
        assert_eq!(
            (info.public.as_slice(), info.role.as_deref(), info.algorithm.as_str()),
            (key.public.as_slice(), Some("timestamp"), "ed25519")
        );
    }
    // ECDSA cannot be a threshold key.
    match clients[2].create_key("ecdsa", gun, "timestamp").await {
        Err(ClientError::Other(m)) => assert!(m.contains("only ed25519"), "{m}"),
        other => panic!("expected a clear refusal of ecdsa, got {other:?}"),
    }

    // Sign through signer 2: an ordinary Ed25519 signature.
    let t1 = timestamp(1, WEEK);
    let s = clients[1]
        .sign(&key.key_id, &t1, Some(gun), Some("timestamp"))
        .await
        .unwrap();
    assert_eq!((s.method.as_str(), s.key_id.as_str()), ("eddsa", key.key_id.as_str()));
    verify(&key.public, &t1, &s.signature);

    // `seal-signer status` with signer 1's config: all three answer, each
    // holding a share of the key.
    let (ok, out) = status(&cluster.signers[0]);
    assert!(ok, "{out}");
    assert!(out.starts_with("threshold cluster: 2 of 3\n"), "{out}");
    for s in &cluster.signers {
        let this = if s.id == 1 { " (this signer)" } else { "" };
        let line = format!(
            "signer {}{this} at localhost:{}: reachable, holds shares of 1 key(s)\n",
            s.id, s.port
        );
        assert!(out.contains(&line), "{line:?} in {out}");
    }
    assert_eq!(out.matches(&format!("  {}\n", key.key_id)).count(), 3, "{out}");

    // One signer killed: signing still works, through either survivor.
    cluster.signer(3).kill();
    let (ok, out) = status(&cluster.signers[1]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "signer 3 at localhost:{}: UNREACHABLE: ",
            cluster.signers[2].port
        )),
        "{out}"
    );
    assert!(out.contains("signer 2 (this signer) at "), "{out}");
    assert_eq!(out.matches(&format!("  {}\n", key.key_id)).count(), 2, "{out}");
    // The same report as JSON: parsed, signer 3 unreachable with its error, the others' keys.
    let (ok, out) = status_with(&cluster.signers[1], &["--json"]);
    assert!(!ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (&report["min_signers"], &report["max_signers"], &report["all_well"]),
        (&2.into(), &3.into(), &false.into()),
        "{report}"
    );
    let signers = report["signers"].as_array().expect("signers");
    assert_eq!(signers.len(), 3, "{report}");
    assert_eq!((&signers[0]["id"], &signers[0]["is_self"]), (&2.into(), &true.into()));
    for s in signers {
        let up = s["id"] != 3;
        assert_eq!(s["reachable"], up, "{s}");
        assert_eq!(s["error"].is_null(), up, "{s}");
        assert!(s["mismatch"].is_null(), "{s}");
        let keys: Vec<serde_json::Value> = if up { vec![key.key_id.clone().into()] } else { vec![] };
        assert_eq!(s["key_ids"], serde_json::Value::Array(keys), "{s}");
    }
    let t2 = timestamp(2, WEEK);
    verify(
        &key.public,
        &t2,
        &clients[0]
            .sign(&key.key_id, &t2, Some(gun), None)
            .await
            .unwrap()
            .signature,
    );
    let t3 = timestamp(3, WEEK);
    verify(
        &key.public,
        &t3,
        &clients[1].sign(&key.key_id, &t3, None, None).await.unwrap().signature,
    );

    // The policy still refuses a lower version, and a wrong GUN.
    match clients[0].sign(&key.key_id, &timestamp(2, WEEK), None, None).await {
        Err(ClientError::Refused { message, high_water }) => {
            assert!(message.contains("not above"), "{message}");
            assert_eq!(high_water, Some(3));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        clients[1]
            .sign(&key.key_id, &timestamp(4, WEEK), Some("example.com/other"), None)
            .await,
        Err(ClientError::Refused { .. })
    ));

    // Two killed: signing fails cleanly, and the survivor keeps serving.
    cluster.signer(2).kill();
    match clients[0].sign(&key.key_id, &timestamp(4, WEEK), None, None).await {
        Err(ClientError::BackendUnavailable(m)) => assert!(m.contains("needs 2 signers"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(clients[0].get_key_info(&key.key_id).await.unwrap().public, key.public);

    // Signer 1's metrics: the DKG it coordinated, its signing rounds, and
    // both peers unreachable in the last one.
    let m = cluster.signers[0].metrics();
    for (series, at_least) in [
        (
            r#"seal_signer_threshold_rounds_total{outcome="ok",round="dkg_finish"}"#,
            1.0,
        ),
        (
            r#"seal_signer_threshold_rounds_total{outcome="ok",round="sign_share"}"#,
            1.0,
        ),
        (
            r#"seal_signer_threshold_rounds_total{outcome="unavailable",round="sign_commit"}"#,
            1.0,
        ),
        (r#"seal_signer_threshold_peer_unreachable_total{peer="2"}"#, 1.0),
        (r#"seal_signer_threshold_peer_unreachable_total{peer="3"}"#, 1.0),
        (r#"seal_signer_policy_refusals_total{reason="not_newer"}"#, 1.0),
        (r#"seal_signer_signatures_total{backend="threshold"}"#, 1.0),
    ] {
        assert!(metric(&m, series) >= at_least, "{series} in {m}");
    }
    assert!(
        m.contains("seal_signer_threshold_round_seconds_bucket{round=\"sign_share\""),
        "{m}"
    );
    cluster.signer(1).kill();

    // At rest: every share is a JWE; its plaintext is in no file of any data directory.
    let (mut shares, mut packages) = (Vec::new(), Vec::new());
    for s in &cluster.signers {
        let (package, handle, plain) = stored_share(s, &key.key_id);
        assert_eq!(handle.share_jwe.split('.').count(), 5, "share stored as JWE compact");
        assert!(!handle.share_jwe.contains('{'), "share stored as JWE compact");
        assert_eq!(package.verifying_key().serialize().unwrap(), key.public);
        let share = package.signing_share().serialize();
        assert!(
            files_containing(&s.data_dir, &plain).is_empty(),
            "plaintext key package at rest"
        );
        assert!(
            files_containing(&s.data_dir, &share).is_empty(),
            "plaintext signing share at rest"
        );
        shares.push(share);
        packages.push(package);
    }
    shares.sort();
    shares.dedup();
    assert_eq!(shares.len(), 3, "each signer holds its own share");

    // The group secret exists nowhere: k decrypted shares reconstruct it here, in the test, and
    // no data directory contains it; one share alone reconstructs nothing.
    let group = frost_ed25519::keys::reconstruct(&packages[..2]).expect("k shares reconstruct the key");
    assert_eq!(
        frost_ed25519::VerifyingKey::from(&group).serialize().unwrap(),
        key.public,
        "the reconstructed key is the group key"
    );
    let secret = group.serialize();
    for s in &cluster.signers {
        assert!(
            files_containing(&s.data_dir, &secret).is_empty(),
            "the group private key is at rest in {}",
            s.data_dir.display()
        );
    }
    assert!(
        frost_ed25519::keys::reconstruct(&packages[..1]).is_err(),
        "one share reconstructs nothing"
    );
}

/// What an attacker who took over signer 1 holds: its certificate, its
/// share, and a signer process whose policy is off (it signs anything).
/// Alone it cannot make a signature that verifies under the group key, and
/// the honest signers refuse it an older version, telling it their mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_signer_cannot_sign_alone_or_get_a_rollback_signed() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(|id, config| {
        if id == 1 {
            config["policy"]["enforce"] = serde_json::json!(false);
        }
    });
    let clients = setup.clients();
    let gun = "example.com/app";
    let key = clients[1].create_key("ed25519", gun, "timestamp").await.unwrap();

    // Version 3 signed through honest signer 2, then the same content
    // through honest signer 3 (a retry): both honest marks are at 3.
    let t3 = timestamp(3, WEEK);
    for c in &clients[1..] {
        let s = c.sign(&key.key_id, &t3, Some(gun), Some("timestamp")).await.unwrap();
        verify(&key.public, &t3, &s.signature);
    }

    // The compromised signer coordinates: its own policy lets everything
    // through, the honest participant it picks refuses.
    match clients[0].sign(&key.key_id, &timestamp(1, WEEK), Some(gun), None).await {
        Err(ClientError::Refused { message, high_water }) => {
            assert!(
                message.contains("signer 2 refused") || message.contains("signer 3 refused"),
                "{message}"
            );
            assert!(message.contains("not above version 3"), "{message}");
            assert_eq!(high_water, Some(3));
        }
        other => panic!("expected an honest signer's refusal, got {other:?}"),
    }
    for (what, content) in [
        ("arbitrary bytes", b"any bytes at all".to_vec()),
        ("a ten-year timestamp", timestamp(4, time::Duration::days(3650))),
    ] {
        match clients[0].sign(&key.key_id, &content, None, None).await {
            Err(ClientError::Refused { message, .. }) => assert!(message.contains("refused"), "{what}: {message}"),
            other => panic!("{what}: expected an honest signer's refusal, got {other:?}"),
        }
    }

    // The compromised signer's own metrics count the three refusals.
    let m = setup.cluster.signers[0].metrics();
    let refusals: f64 = [2, 3]
        .iter()
        .map(|p| {
            metric(
                &m,
                &format!("seal_signer_threshold_participant_refusals_total{{signer=\"{p}\"}}"),
            )
        })
        .sum();
    assert_eq!(refusals, 3.0, "{m}");

    // Without honest signers the compromised one cannot reach the threshold.
    setup.cluster.signer(2).kill();
    setup.cluster.signer(3).kill();
    match clients[0].sign(&key.key_id, &timestamp(1, WEEK), None, None).await {
        Err(ClientError::BackendUnavailable(m)) => assert!(m.contains("needs 2 signers, 1 answered"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }

    // With its stolen share alone: FROST refuses one signer of a 2-of-3 key,
    // and the share used as a 1-of-1 key signs only as its own verifying
    // share, a signature the group key does not verify.
    setup.cluster.signer(1).kill();
    let (package, handle, _) = stored_share(&setup.cluster.signers[0], &key.key_id);
    let me = *package.identifier();
    let msg = timestamp(1, WEEK);
    let (nonces, commitments) = frost::round1::commit(package.signing_share(), &mut rand::rngs::OsRng);
    let solo_package = frost::SigningPackage::new(BTreeMap::from([(me, commitments)]), &msg);
    assert!(matches!(
        frost::round2::sign(&solo_package, &nonces, &package),
        Err(frost::Error::IncorrectNumberOfCommitments)
    ));
    let share_key = package.verifying_share().serialize().unwrap();
    let as_key = frost::VerifyingKey::deserialize(&share_key).unwrap();
    let solo = KeyPackage::new(me, *package.signing_share(), *package.verifying_share(), as_key, 1);
    let share = frost::round2::sign(&solo_package, &nonces, &solo).unwrap();
    let public =
        frost::keys::PublicKeyPackage::new(BTreeMap::from([(me, *package.verifying_share())]), as_key, Some(1));
    let sig = frost::aggregate(&solo_package, &BTreeMap::from([(me, share)]), &public)
        .unwrap()
        .serialize()
        .unwrap();
    verify(&share_key, &msg, &sig);
    let group = ed25519_dalek::VerifyingKey::from_bytes(key.public.as_slice().try_into().unwrap()).unwrap();
    assert!(group
        .verify_strict(&msg, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .is_err());
    assert!(seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, key.public.clone())
        .unwrap()
        .verify("eddsa", &msg, &sig)
        .is_err());
    assert_eq!(
        handle.public_package().unwrap().verifying_key().serialize().unwrap(),
        key.public
    );

    // The honest signers back; the attacker calls their peer service itself,
    // with signer 1's certificate and share: a rollback is refused with the
    // honest mark, and it cannot pass itself off as signer 3.
    setup.cluster.signer(2).start();
    setup.cluster.signer(3).start();
    let (cert, tls_key) = (
        setup.cluster.signers[0].cert.clone(),
        setup.cluster.signers[0].key.clone(),
    );
    let peers: Vec<Peer> = setup.cluster.signers[1..]
        .iter()
        .map(|s| Peer {
            id: s.id,
            addr: format!("localhost:{}", s.port),
            name: Some(format!("signer-{}", s.id)),
        })
        .collect();
    let transport = GrpcPeers::new(&peers, &setup.pki.ca_file(), &cert, &tls_key, Duration::from_secs(5)).unwrap();
    for honest in [2u16, 3] {
        let commit = |session: &str, coordinator: u32| SignCommitRequest {
            session_id: session.to_owned(),
            coordinator,
            key_id: key.key_id.clone(),
        };
        let e = transport
            .sign_commit(honest, commit("posing-as-3", 3))
            .await
            .unwrap_err();
        assert!(matches!(e, ThresholdError::PermissionDenied(_)), "{e:?}");
        let session = format!("rollback-via-{honest}");
        let theirs = transport.sign_commit(honest, commit(&session, 1)).await.unwrap();
        let (_nonces, ours) = frost::round1::commit(package.signing_share(), &mut rand::rngs::OsRng);
        let them = frost::Identifier::try_from(honest).unwrap();
        let rollback = frost::SigningPackage::new(
            BTreeMap::from([
                (me, ours),
                (
                    them,
                    frost::round1::SigningCommitments::deserialize(&theirs.commitments).unwrap(),
                ),
            ]),
            &msg,
        );
        let e = transport
            .sign_share(
                honest,
                SignShareRequest {
                    session_id: session,
                    coordinator: 1,
                    key_id: key.key_id.clone(),
                    signing_package: rollback.serialize().unwrap(),
                    claimed_gun: gun.to_owned(),
                    claimed_role: "timestamp".to_owned(),
                    named: Default::default(),
                },
            )
            .await
            .unwrap_err();
        // The peer answered FailedPrecondition with its mark in x-seal-high-water.
        match &e {
            ThresholdError::Refused {
                signer,
                message,
                high_water,
            } => {
                assert_eq!(*signer, honest, "{e:?}");
                assert!(message.contains("not above version 3"), "{message}");
                assert_eq!(*high_water, Some(3), "signer {honest} tells its mark");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// `seal-signer refresh-shares` on a running cluster: new shares on every
/// signer, the same group key, and signing goes on; only the signer's own
/// certificate may ask for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_refreshed_through_the_command_without_changing_the_key() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(|_, _| {});
    let clients = setup.clients();
    let gun = "example.com/app";
    let key = clients[0].create_key("ed25519", gun, "timestamp").await.unwrap();
    let t1 = timestamp(1, WEEK);
    verify(
        &key.public,
        &t1,
        &clients[0].sign(&key.key_id, &t1, None, None).await.unwrap().signature,
    );

    // Another signer's certificate may not ask signer 1 for a refresh.
    let as_signer2 = setup.peer_call(2, 1);
    let e = as_signer2
        .refresh_shares(1, &key.key_id, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Asked with signer 3's own config and certificate.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seal-signer"))
        .args(["refresh-shares", "--config"])
        .arg(&setup.cluster.signers[2].config)
        .args(["--key-id", &key.key_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&hex::encode(&key.public)), "{text}");

    // Every pair signs under the same key with the new shares.
    for (i, c) in clients.iter().enumerate() {
        let t = timestamp(2 + i as u64, WEEK);
        verify(
            &key.public,
            &t,
            &c.sign(&key.key_id, &t, None, None).await.unwrap().signature,
        );
        assert_eq!(c.get_key_info(&key.key_id).await.unwrap().public, key.public);
    }
    setup.cluster.signer(2).kill();
    let t = timestamp(9, WEEK);
    verify(
        &key.public,
        &t,
        &clients[2].sign(&key.key_id, &t, None, None).await.unwrap().signature,
    );
    let m = setup.cluster.signers[2].metrics();
    assert_eq!(
        metric(
            &m,
            r#"seal_signer_threshold_rounds_total{outcome="ok",round="dkg_commit"}"#
        ),
        1.0,
        "{m}"
    );
}

/// `seal-signer repair-share` with `s`'s config: whether it exited with
/// success, and what it printed.
fn repair_share(s: &ClusterSigner, key_id: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seal-signer"))
        .args(["repair-share", "--config"])
        .arg(&s.config)
        .args(["--key-id", key_id])
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Signs `msg` with `key_id` through `c`, trying again while the signer
/// answers `Unavailable` (its channels to restarted peers reconnect) for
/// at most 30 s.
async fn sign_when_reachable(c: &SignerClient, key_id: &str, msg: &[u8]) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match c.sign(key_id, msg, None, None).await {
            Ok(s) => return s.signature,
            Err(ClientError::Unavailable(m) | ClientError::BackendUnavailable(m))
                if std::time::Instant::now() < deadline =>
            {
                eprintln!("signing not yet possible, trying again: {m}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("signing failed: {e:?}"),
        }
    }
}

/// A signer whose data directory was lost is started empty and gets its
/// share back with `seal-signer repair-share` from the other holders: the
/// group key does not change, and with signer 1 killed signers 2 and 3
/// sign together. Fewer than k helpers make the repair fail without
/// storing anything; only the signer's own certificate may ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_signer_is_repaired_through_the_command_and_signs_again() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(|_, _| {});
    let clients = setup.clients();
    let gun = "example.com/app";
    let key = clients[0].create_key("ed25519", gun, "timestamp").await.unwrap();
    let t1 = timestamp(1, WEEK);
    verify(
        &key.public,
        &t1,
        &clients[0].sign(&key.key_id, &t1, None, None).await.unwrap().signature,
    );
    setup.cluster.signer(3).kill();
    let (lost, _, _) = stored_share(&setup.cluster.signers[2], &key.key_id);

    // Signer 3 loses its data directory and starts empty.
    std::fs::remove_dir_all(&setup.cluster.signers[2].data_dir).unwrap();
    setup.cluster.signer(3).start();
    let (ok, out) = status(&setup.cluster.signers[2]);
    assert!(ok, "{out}");
    assert!(out.contains("signer 3 (this signer) at "), "{out}");
    assert!(
        out.contains(&format!("key {}: shares only on signers [1, 2]", key.key_id)),
        "{out}"
    );

    // Another signer's certificate may not ask signer 3 for a repair.
    let as_signer2 = setup.peer_call(2, 3);
    let e = as_signer2
        .repair_share(3, &key.key_id, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // With signer 1 killed only one helper answers: the repair fails and
    // signer 3 still holds nothing.
    setup.cluster.signer(1).kill();
    let (ok, out) = repair_share(&setup.cluster.signers[2], &key.key_id);
    assert!(!ok, "{out}");
    assert!(out.contains("share repair needs 2 signers, 1 answered"), "{out}");
    match clients[2].get_key_info(&key.key_id).await {
        Err(ClientError::NotFound(_)) => {}
        other => panic!("expected no key on signer 3, got {other:?}"),
    }

    // Signer 1 back: signers 1 and 2 help, signer 3 holds its share again.
    setup.cluster.signer(1).start();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let out = loop {
        let (ok, out) = repair_share(&setup.cluster.signers[2], &key.key_id);
        if ok {
            break out;
        }
        // Only an unreachable helper (a channel still reconnecting) is retried.
        assert!(
            out.contains("Unavailable") && std::time::Instant::now() < deadline,
            "{out}"
        );
        eprintln!("repair not yet possible, trying again: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.contains(&hex::encode(&key.public)), "{out}");
    assert_eq!(clients[2].get_key_info(&key.key_id).await.unwrap().public, key.public);
    let (ok, out) = repair_share(&setup.cluster.signers[2], &key.key_id);
    assert!(!ok && out.contains("already holds a share"), "{out}");

    // Signer 1 killed: signers 2 and 3 must sign together, through either.
    setup.cluster.signer(1).kill();
    let t2 = timestamp(2, WEEK);
    verify(
        &key.public,
        &t2,
        &sign_when_reachable(&clients[1], &key.key_id, &t2).await,
    );
    let t3 = timestamp(3, WEEK);
    verify(
        &key.public,
        &t3,
        &sign_when_reachable(&clients[2], &key.key_id, &t3).await,
    );

    // At rest: the repaired share is the lost one, a JWE under signer 3's
    // passphrase with the same public key package as signer 2's.
    setup.cluster.signer(2).kill();
    setup.cluster.signer(3).kill();
    let (repaired, handle, plain) = stored_share(&setup.cluster.signers[2], &key.key_id);
    assert_eq!(repaired, lost);
    assert_eq!(handle.share_jwe.split('.').count(), 5, "share stored as JWE compact");
    assert_eq!(
        (handle.self_id, handle.min_signers, handle.participants.clone()),
        (3, 2, vec![1, 2, 3])
    );
    let (_, handle2, _) = stored_share(&setup.cluster.signers[1], &key.key_id);
    assert_eq!(handle.public_package, handle2.public_package);
    assert!(
        files_containing(&setup.cluster.signers[2].data_dir, &plain).is_empty(),
        "plaintext key package at rest"
    );
}

/// A compromised coordinator pairs with the honest signer whose mark is
/// oldest, to get a rollback signed. Signer 3 was down while signers 1 and
/// 2 signed version 5; when it comes back it learns their marks before it
/// serves, so with signer 2 gone it refuses the compromised signer 1's
/// version 4. And with every signer up, a participant's new mark reaches
/// the signer that did not take part: both honest signers refuse the next
/// rollback, whichever one the compromised coordinator picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_signers_share_their_marks_so_no_old_one_can_be_paired_with() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new(|id, config| {
        if id == 1 {
            config["policy"]["enforce"] = serde_json::json!(false);
        }
    });
    let clients = setup.clients();
    let gun = "example.com/marks";
    let key = clients[1].create_key("ed25519", gun, "timestamp").await.unwrap();
    let sign = |c: &SignerClient, version: u64| {
        let (c, key_id) = (c.clone(), key.key_id.clone());
        async move {
            c.sign(&key_id, &timestamp(version, WEEK), Some(gun), Some("timestamp"))
                .await
        }
    };
    sign(&clients[1], 3).await.unwrap();

    // Signer 3 away: version 5 is signed by signers 2 and 1.
    setup.cluster.signer(3).kill();
    sign_when_reachable(&clients[1], &key.key_id, &timestamp(5, WEEK)).await;
    setup.cluster.signer(3).start();
    setup.cluster.signer(2).kill();
    let clients = setup.clients();
    match sign(&clients[0], 4).await {
        Err(ClientError::Refused { message, high_water }) => {
            assert!(message.contains("signer 3 refused"), "{message}");
            assert!(message.contains("not above version 5"), "{message}");
            assert_eq!(high_water, Some(5));
        }
        other => panic!("signer 3 did not refuse the rollback: {other:?}"),
    }

    // All up: version 7 through signer 3 and one of the others; the
    // announcements reach the one left out.
    setup.cluster.signer(2).start();
    let clients = setup.clients();
    sign_when_reachable(&clients[2], &key.key_id, &timestamp(7, WEEK)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for honest in [3u16, 2] {
        // Whichever honest signer answers, it refuses version 6 (the other
        // is paused, not restarted: it learns nothing at start-up).
        let other = if honest == 3 { 2 } else { 3 };
        setup.cluster.signer(other).pause();
        let result = sign(&clients[0], 6).await;
        setup.cluster.signer(other).resume();
        match result {
            Err(ClientError::Refused { message, .. }) => {
                assert!(message.contains(&format!("signer {honest} refused")), "{message}");
                assert!(message.contains("not above version 7"), "{message}");
            }
            other => panic!("signer {honest} did not refuse the rollback: {other:?}"),
        }
    }
}
