//! The threshold backend's unit tests: in-process signers over a direct
//! transport.

use super::*;
use std::sync::Weak;

use seal_tuf::metadata::SNAPSHOT;
use seal_tuf::{FileMeta, Timestamp};

/// Direct calls between in-process backends, with switches for dead
/// signers and a signer whose shares are corrupted on the way.
#[derive(Default)]
struct Local {
    nodes: Mutex<BTreeMap<u16, Weak<ThresholdBackend>>>,
    down: Mutex<BTreeSet<u16>>,
    corrupt: Mutex<BTreeSet<u16>>,
}

impl Local {
    fn node(&self, to: u16) -> Result<Arc<ThresholdBackend>, ThresholdError> {
        let unreachable = |message: String| ThresholdError::Unreachable {
            signer: to,
            why: Unanswered::Unavailable,
            message,
        };
        if lock(&self.down).contains(&to) {
            return Err(unreachable(format!("signer {to} is down")));
        }
        lock(&self.nodes)
            .get(&to)
            .and_then(Weak::upgrade)
            .ok_or_else(|| unreachable(format!("signer {to} unknown")))
    }
}

/// What the coordinator gets when `to` answers `r` over gRPC: the
/// participant's error through both edges, as `GrpcPeers` would see it.
fn wire<T>(to: u16, r: Result<T, ThresholdError>) -> Result<T, ThresholdError> {
    r.map_err(|e| transport::from_peer_status(to, &e.into_status()))
}

#[tonic::async_trait]
impl PeerTransport for Local {
    async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, ThresholdError> {
        wire(to, self.node(to)?.dkg_round1(req).await)
    }
    async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, ThresholdError> {
        wire(to, self.node(to)?.dkg_round2(req).await)
    }
    async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, ThresholdError> {
        wire(to, self.node(to)?.dkg_deliver(req).await)
    }
    async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, ThresholdError> {
        wire(to, self.node(to)?.dkg_finish(req).await)
    }
    async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, ThresholdError> {
        wire(to, self.node(to)?.dkg_commit(req).await)
    }
    async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, ThresholdError> {
        wire(to, self.node(to)?.sign_commit(req).await)
    }
    async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, ThresholdError> {
        let mut r = wire(to, self.node(to)?.sign_share(req).await)?;
        if lock(&self.corrupt).contains(&to) {
            r.share[0] ^= 1;
        }
        Ok(r)
    }
    async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, ThresholdError> {
        wire(to, self.node(to)?.repair_round1(req).await)
    }
    async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, ThresholdError> {
        wire(to, self.node(to)?.repair_round2(req).await)
    }
    async fn repair_deliver(
        &self,
        to: u16,
        req: RepairDeliverRequest,
    ) -> Result<RepairDeliverResponse, ThresholdError> {
        wire(to, self.node(to)?.repair_deliver(req).await)
    }
    async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, ThresholdError> {
        let mut r = wire(to, self.node(to)?.repair_finish(req).await)?;
        if lock(&self.corrupt).contains(&to) {
            r.sigma[0] ^= 1;
        }
        Ok(r)
    }
    async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, ThresholdError> {
        let from = u16::try_from(req.from).unwrap_or(0);
        let mark = req.mark.unwrap_or_default();
        let raised = wire(to, self.node(to)?.merge_mark(from, &mark))?;
        Ok(AnnounceMarkResponse { raised })
    }
    async fn marks(&self, to: u16, _req: MarksRequest) -> Result<MarksResponse, ThresholdError> {
        Ok(MarksResponse {
            marks: wire(to, self.node(to)?.marks())?,
        })
    }
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<u16, Arc<ThresholdBackend>>,
    stores: BTreeMap<u16, Arc<Store>>,
    net: Arc<Local>,
}

fn cluster(k: u16, n: u16) -> Cluster {
    cluster_with(k, n, MAX_NONCE_SESSIONS)
}

/// Like [`cluster`], each participant holding nonces of at most
/// `max_nonce_sessions` sessions.
fn cluster_with(k: u16, n: u16, max_nonce_sessions: usize) -> Cluster {
    let net = Arc::new(Local::default());
    let (mut dirs, mut nodes, mut stores) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    for id in 1..=n {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let passphrases = Passphrases::new(
            "main",
            BTreeMap::from([("main".to_owned(), Zeroizing::new(format!("passphrase {id}")))]),
        )
        .unwrap();
        let config = ThresholdConfig {
            min_signers: k,
            self_id: id,
            peers: (1..=n)
                .filter(|p| *p != id)
                .map(|p| Peer {
                    id: p,
                    addr: format!("localhost:{p}"),
                    name: None,
                })
                .collect(),
            peer_timeout: Duration::from_secs(2),
            dkg_timeout: Duration::from_secs(10),
        };
        // The messages here are bare timestamps: the binding to the
        // snapshot they name is the policy's own tests' subject.
        let policy = PolicyConfig {
            notary_compat: true,
            ..PolicyConfig::default()
        };
        let mut b = ThresholdBackend::new(config, store.clone(), passphrases, 1000, policy).unwrap();
        b.max_nonce_sessions = max_nonce_sessions;
        let b = Arc::new(b);
        b.set_transport(net.clone());
        lock(&net.nodes).insert(id, Arc::downgrade(&b));
        dirs.push(dir);
        nodes.insert(id, b);
        stores.insert(id, store);
    }
    Cluster {
        _dirs: dirs,
        nodes,
        stores,
        net,
    }
}

fn timestamp(version: u64) -> Vec<u8> {
    let mut meta = BTreeMap::new();
    meta.insert(
        SNAPSHOT.to_owned(),
        FileMeta::for_bytes(format!("s{version}").as_bytes()),
    );
    Timestamp {
        version,
        expires: time::OffsetDateTime::now_utc() + time::Duration::days(7),
        meta,
    }
    .to_value()
    .to_canonical()
}

fn verify(public: &[u8], msg: &[u8], sig: &[u8]) {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public.try_into().unwrap()).unwrap();
    key.verify_strict(msg, &ed25519_dalek::Signature::from_slice(sig).unwrap())
        .unwrap();
    seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, public.to_vec())
        .unwrap()
        .verify("eddsa", msg, sig)
        .unwrap();
}

async fn make_key(c: &Cluster, via: u16) -> KeyRecord {
    let (key_id, public) = c.nodes[&via]
        .create_key(Algorithm::Ed25519, "example.com/app", "timestamp")
        .await
        .unwrap();
    assert_eq!(public.len(), 32);
    c.stores[&via].key(&key_id).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkg_gives_every_signer_a_share_of_one_key_and_k_of_n_sign() {
    let c = cluster(2, 3);
    let record = make_key(&c, 1).await;
    let mut signing_shares = Vec::new();
    for (id, store) in &c.stores {
        let r = store.key(&record.key_id).unwrap().expect("every signer holds the key");
        assert_eq!(
            (r.public.as_slice(), r.backend.as_str()),
            (record.public.as_slice(), BACKEND_NAME)
        );
        let handle = ThresholdHandle::decode(&r.handle).unwrap();
        assert_eq!(handle.share_jwe.split('.').count(), 5, "share stored as JWE compact");
        assert_eq!((handle.self_id, handle.min_signers), (*id, 2));
        let plain = decrypt_secret(format!("passphrase {id}").as_bytes(), &handle.share_jwe).unwrap();
        let kp = KeyPackage::deserialize(&plain).unwrap();
        signing_shares.push(kp.signing_share().serialize());
        assert_eq!(kp.verifying_key().serialize().unwrap(), record.public);
    }
    // Three different shares; none is the group secret (its public key would match).
    signing_shares.sort();
    signing_shares.dedup();
    assert_eq!(signing_shares.len(), 3);

    // Any signer coordinates; the result is an ordinary Ed25519 signature.
    for (via, version) in [(2u16, 1u64), (1, 2), (3, 3)] {
        let msg = timestamp(version);
        let sig = c.nodes[&via].sign(&record, &Claimed::default(), &msg).await.unwrap();
        assert_eq!(sig.len(), 64);
        verify(&record.public, &msg, &sig);
    }
    // One signer down: still signs.
    lock(&c.net.down).insert(3);
    let msg = timestamp(4);
    verify(
        &record.public,
        &msg,
        &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
    );
    // The policy of every participant refuses a lower version.
    let e = c.nodes[&1]
        .sign(&record, &Claimed::default(), &timestamp(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ThresholdError::Refused {
                high_water: Some(4),
                ..
            }
        ),
        "{e:?}"
    );
    // Two down: fails cleanly.
    lock(&c.net.down).insert(2);
    let e = c.nodes[&1]
        .sign(&record, &Claimed::default(), &timestamp(5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ThresholdError::Unavailable {
                needed: 2,
                reachable: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.into_status().code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_share_is_identified_and_left_out() {
    let c = cluster(2, 3);
    let record = make_key(&c, 3).await;
    lock(&c.net.corrupt).insert(3);
    // With 2 and 3 reachable the coordinator ends up without the cheater.
    for version in 1..=4 {
        let msg = timestamp(version);
        verify(
            &record.public,
            &msg,
            &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
        );
    }
    // With only the cheater left, signing fails, naming it.
    lock(&c.net.down).insert(2);
    let e = c.nodes[&1]
        .sign(&record, &Claimed::default(), &timestamp(9))
        .await
        .unwrap_err();
    assert!(e.to_string().contains('3'), "{e}");
}

/// Signer `id`'s stored key package and public key package of `key_id`.
fn stored(c: &Cluster, id: u16, key_id: &str) -> (KeyPackage, PublicKeyPackage) {
    let record = c.stores[&id].key(key_id).unwrap().unwrap();
    let handle = ThresholdHandle::decode(&record.handle).unwrap();
    let plain = decrypt_secret(format!("passphrase {id}").as_bytes(), &handle.share_jwe).unwrap();
    (
        KeyPackage::deserialize(&plain).unwrap(),
        handle.public_package().unwrap(),
    )
}

/// Whether two participants holding `a` and `b` make a signature that
/// verifies under `public`'s group key.
pub(crate) fn sign_together(a: &KeyPackage, b: &KeyPackage, public: &PublicKeyPackage) -> bool {
    let msg = b"message";
    let (na, ca) = frost::round1::commit(a.signing_share(), &mut rand::rngs::OsRng);
    let (nb, cb) = frost::round1::commit(b.signing_share(), &mut rand::rngs::OsRng);
    let package = frost::SigningPackage::new(BTreeMap::from([(*a.identifier(), ca), (*b.identifier(), cb)]), msg);
    let shares = BTreeMap::from([
        (*a.identifier(), frost::round2::sign(&package, &na, a).unwrap()),
        (*b.identifier(), frost::round2::sign(&package, &nb, b).unwrap()),
    ]);
    match frost::aggregate_custom(&package, &shares, public, frost::CheaterDetection::Disabled) {
        Ok(sig) => {
            let key = public.verifying_key().serialize().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(key.as_slice().try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&sig.serialize().unwrap()).unwrap();
            key.verify_strict(msg, &sig).is_ok()
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_shares_keep_the_group_key_and_do_not_mix_with_old_ones() {
    let c = cluster(2, 3);
    let record = make_key(&c, 1).await;
    let old: BTreeMap<u16, _> = (1..=3).map(|id| (id, stored(&c, id, &record.key_id))).collect();

    assert_eq!(c.nodes[&2].refresh_shares(&record.key_id).await.unwrap(), record.public);
    let new: BTreeMap<u16, _> = (1..=3).map(|id| (id, stored(&c, id, &record.key_id))).collect();
    for id in 1..=3 {
        assert_ne!(new[&id].0.signing_share(), old[&id].0.signing_share(), "signer {id}");
        assert_ne!(
            new[&id].0.verifying_share(),
            old[&id].0.verifying_share(),
            "signer {id}"
        );
        assert_eq!(new[&id].0.verifying_key(), old[&id].0.verifying_key(), "signer {id}");
        assert_eq!(new[&id].1, new[&1].1, "one new public key package");
        let r = c.stores[&id].key(&record.key_id).unwrap().unwrap();
        assert_eq!(
            (r.public.as_slice(), r.gun.as_str()),
            (record.public.as_slice(), record.gun.as_str())
        );
    }

    // Any two signers sign with the new shares, through the service as well.
    for (via, version) in [(1u16, 1u64), (2, 2), (3, 3)] {
        let msg = timestamp(version);
        let r = c.stores[&via].key(&record.key_id).unwrap().unwrap();
        verify(
            &record.public,
            &msg,
            &c.nodes[&via].sign(&r, &Claimed::default(), &msg).await.unwrap(),
        );
    }
    assert!(sign_together(&new[&1].0, &new[&3].0, &new[&1].1));
    assert!(sign_together(&old[&1].0, &old[&3].0, &old[&1].1));
    // An old share and a new one do not make a signature, whichever
    // public key package aggregates them.
    for (a, b) in [(1u16, 2u16), (2, 1), (1, 3), (3, 2)] {
        for public in [&old[&1].1, &new[&1].1] {
            assert!(!sign_together(&old[&a].0, &new[&b].0, public), "old {a} with new {b}");
        }
    }

    // A refresh needs every signer; when one is down, nothing changes.
    lock(&c.net.down).insert(3);
    let e = c.nodes[&1].refresh_shares(&record.key_id).await.unwrap_err();
    assert!(matches!(e, ThresholdError::Unavailable { needed: 3, .. }), "{e:?}");
    for id in 1..=3 {
        assert_eq!(
            stored(&c, id, &record.key_id).0.signing_share(),
            new[&id].0.signing_share()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_share_is_repaired_by_k_helpers_and_signs_again() {
    let c = cluster(2, 3);
    let record = make_key(&c, 1).await;
    let (old, public) = stored(&c, 3, &record.key_id);
    // Signer 3 loses its share.
    c.stores[&3].delete_key(&record.key_id).unwrap();
    c.nodes[&3].forget(&record.key_id);

    // One helper is not enough: nothing is stored.
    lock(&c.net.down).insert(2);
    let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
    assert!(
        matches!(
            e,
            ThresholdError::Unavailable {
                needed: 2,
                reachable: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(c.stores[&3].key(&record.key_id).unwrap().is_none());
    // A helper sending a wrong value is caught before anything is stored.
    lock(&c.net.down).clear();
    lock(&c.net.corrupt).insert(2);
    let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
    assert!(matches!(e, ThresholdError::Protocol(_)), "{e:?}");
    assert!(c.stores[&3].key(&record.key_id).unwrap().is_none());

    lock(&c.net.corrupt).clear();
    assert_eq!(c.nodes[&3].repair_share(&record.key_id).await.unwrap(), record.public);
    let (repaired, repaired_public) = stored(&c, 3, &record.key_id);
    assert_eq!(repaired, old, "the same share as before");
    assert_eq!(repaired_public, public);
    let r = c.stores[&3].key(&record.key_id).unwrap().unwrap();
    assert_eq!((r.gun.as_str(), r.role.as_str()), ("example.com/app", "timestamp"));
    // Holding it now, signer 3 refuses another repair.
    let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
    assert_eq!(e, ThresholdError::AlreadyHeld(record.key_id.clone()));

    // Signers 2 and 3 sign together.
    lock(&c.net.down).insert(1);
    let msg = timestamp(1);
    verify(
        &record.public,
        &msg,
        &c.nodes[&3].sign(&r, &Claimed::default(), &msg).await.unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_nonce_table_drops_the_oldest_session() {
    let c = cluster_with(2, 3, 3);
    let record = make_key(&c, 1).await;
    let standby = &c.nodes[&3];
    for session in ["s1", "s2", "s3", "s4"] {
        standby
            .sign_commit(SignCommitRequest {
                session_id: session.into(),
                coordinator: 1,
                key_id: record.key_id.clone(),
            })
            .await
            .unwrap();
    }
    let held: BTreeSet<String> = lock(&standby.nonces).keys().cloned().collect();
    assert_eq!(held, BTreeSet::from(["s2".into(), "s3".into(), "s4".into()]));
    // The standby still takes part in new sessions.
    lock(&c.net.down).insert(2);
    let msg = timestamp(1);
    verify(
        &record.public,
        &msg,
        &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_used_once_and_packages_are_checked() {
    let c = cluster(2, 3);
    let record = make_key(&c, 2).await;
    let (a, b) = (&c.nodes[&1], &c.nodes[&2]);
    let commit = |s: &str| SignCommitRequest {
        session_id: s.into(),
        coordinator: 1,
        key_id: record.key_id.clone(),
    };
    let ca = a.sign_commit(commit("s1")).await.unwrap();
    let cb = b.sign_commit(commit("s1")).await.unwrap();
    let commitments = BTreeMap::from([
        (identifier(1).unwrap(), decode_commitments(&ca.commitments).unwrap()),
        (identifier(2).unwrap(), decode_commitments(&cb.commitments).unwrap()),
    ]);
    let msg = timestamp(1);
    let package = frost::SigningPackage::new(commitments, &msg).serialize().unwrap();
    let share = |session: &str, package: Vec<u8>| SignShareRequest {
        session_id: session.into(),
        coordinator: 1,
        key_id: record.key_id.clone(),
        signing_package: package,
        claimed_gun: String::new(),
        claimed_role: String::new(),
        named: Default::default(),
    };
    b.sign_share(share("s1", package.clone())).await.unwrap();
    // The same session again: its nonces are gone.
    let e = b.sign_share(share("s1", package.clone())).await.unwrap_err();
    assert!(matches!(e, ThresholdError::SessionGone(_)), "{e:?}");
    assert_eq!(e.into_status().code(), tonic::Code::Aborted);
    // A package without our commitments is refused (and consumes the session).
    b.sign_commit(commit("s2")).await.unwrap();
    let e = b.sign_share(share("s2", package)).await.unwrap_err();
    assert!(matches!(e, ThresholdError::InvalidArgument(_)), "{e:?}");
    assert_eq!(e.into_status().code(), tonic::Code::InvalidArgument);
    // A policy refusal: not metadata.
    let cb = b.sign_commit(commit("s3")).await.unwrap();
    let commitments = BTreeMap::from([
        (identifier(1).unwrap(), decode_commitments(&ca.commitments).unwrap()),
        (identifier(2).unwrap(), decode_commitments(&cb.commitments).unwrap()),
    ]);
    let package = frost::SigningPackage::new(commitments, b"anything")
        .serialize()
        .unwrap();
    let e = b.sign_share(share("s3", package)).await.unwrap_err();
    assert!(matches!(e, ThresholdError::Policy(_)), "{e:?}");
    assert_eq!(e.into_status().code(), tonic::Code::FailedPrecondition);
    // ECDSA is refused with a clear error.
    let e = a.create_key(Algorithm::Ecdsa, "g", "timestamp").await.unwrap_err();
    assert_eq!(e, ThresholdError::Unsupported("ecdsa"));
    assert_eq!(e.into_status().code(), tonic::Code::Unknown);
}

/// Every error a participant answers reaches the peer's coordinator as the
/// same class with the same words, whatever gRPC makes of it on the way.
#[test]
fn errors_cross_both_grpc_edges_with_their_code_message_and_marks() {
    use tonic::Code;
    let refusal = policy::Refusal::NotNewer { high_water: 7, got: 3 };
    let unreachable = |why| ThresholdError::Unreachable {
        signer: 2,
        why,
        message: "tcp connect error".into(),
    };
    // (error on the callee, status it answers, what the caller gets back)
    let cases = [
        (
            ThresholdError::InvalidArgument("bad signing session id".into()),
            Code::InvalidArgument,
            "bad signing session id",
            ThresholdError::InvalidArgument("bad signing session id".into()),
        ),
        (
            ThresholdError::Missing("key k not found".into()),
            Code::NotFound,
            "key k not found",
            ThresholdError::Missing("key k not found".into()),
        ),
        (
            ThresholdError::SessionGone("no live signing session s".into()),
            Code::Aborted,
            "no live signing session s",
            ThresholdError::SessionGone("no live signing session s".into()),
        ),
        (
            ThresholdError::AlreadyExists("signing session exists".into()),
            Code::AlreadyExists,
            "signing session exists",
            ThresholdError::AlreadyExists("signing session exists".into()),
        ),
        (
            ThresholdError::OutOfOrder("DKG session is not in round 1".into()),
            Code::FailedPrecondition,
            "DKG session is not in round 1",
            ThresholdError::Refused {
                signer: 2,
                message: "DKG session is not in round 1".into(),
                high_water: None,
            },
        ),
        (
            ThresholdError::Policy(refusal.clone()),
            Code::FailedPrecondition,
            "signing policy: version 3 is not above version 7 already signed with this key",
            ThresholdError::Refused {
                signer: 2,
                message: "signing policy: version 3 is not above version 7 already signed with this key".into(),
                high_water: Some(7),
            },
        ),
        (
            ThresholdError::MarkTooHigh {
                key_id: "k".into(),
                version: 9,
                own: 1,
                max_jump: 5,
            },
            Code::FailedPrecondition,
            "mark 9 of k is more than 5 above this signer's 1",
            ThresholdError::Refused {
                signer: 2,
                message: "mark 9 of k is more than 5 above this signer's 1".into(),
                high_water: None,
            },
        ),
        (
            ThresholdError::PermissionDenied("signer 4 is not a participant of this DKG".into()),
            Code::PermissionDenied,
            "signer 4 is not a participant of this DKG",
            ThresholdError::PermissionDenied("signer 4 is not a participant of this DKG".into()),
        ),
        (
            ThresholdError::Busy("too many DKG sessions in progress".into()),
            Code::ResourceExhausted,
            "too many DKG sessions in progress",
            ThresholdError::Busy("too many DKG sessions in progress".into()),
        ),
        (
            ThresholdError::Locked("no passphrase for alias \"main\"".into()),
            Code::Unavailable,
            "no passphrase for alias \"main\"",
            ThresholdError::Unreachable {
                signer: 2,
                why: Unanswered::Unavailable,
                message: "no passphrase for alias \"main\"".into(),
            },
        ),
        (
            ThresholdError::DeliveryFailed {
                what: "round-2",
                details: "signer 3: Unavailable: down".into(),
            },
            Code::Unavailable,
            "round-2 delivery failed: signer 3: Unavailable: down",
            ThresholdError::Unreachable {
                signer: 2,
                why: Unanswered::Unavailable,
                message: "round-2 delivery failed: signer 3: Unavailable: down".into(),
            },
        ),
        (
            ThresholdError::Failed("storing the share: disk full".into()),
            Code::Internal,
            "storing the share: disk full",
            ThresholdError::Failed("storing the share: disk full".into()),
        ),
        (
            ThresholdError::Internal("threshold key handle: eof".into()),
            Code::Internal,
            "threshold backend: threshold key handle: eof",
            ThresholdError::Failed("threshold backend: threshold key handle: eof".into()),
        ),
        (
            unreachable(Unanswered::Unavailable),
            Code::Unavailable,
            "tcp connect error",
            unreachable(Unanswered::Unavailable),
        ),
        (
            unreachable(Unanswered::TimedOut),
            Code::DeadlineExceeded,
            "tcp connect error",
            unreachable(Unanswered::TimedOut),
        ),
        (
            unreachable(Unanswered::Cancelled),
            Code::Cancelled,
            "tcp connect error",
            unreachable(Unanswered::Cancelled),
        ),
    ];
    for (error, code, message, back) in cases {
        assert_eq!(error.kind(), format!("{code:?}"), "{error:?}");
        let status = error.clone().into_status();
        assert_eq!((status.code(), status.message()), (code, message), "{error:?}");
        assert!(
            status.metadata().get(crate::wire::UNAVAILABLE_HEADER).is_none(),
            "{error:?}"
        );
        let high_water = status.metadata().get(crate::wire::HIGH_WATER_HEADER);
        assert_eq!(
            high_water.and_then(|v| v.to_str().ok()),
            (error == ThresholdError::Policy(refusal.clone())).then_some("7"),
            "{error:?}"
        );
        assert_eq!(transport::from_peer_status(2, &status), back, "{error:?}");
    }

    // What the signer's clients see of a coordinator's errors.
    let unavailable = ThresholdError::Unavailable {
        operation: "threshold signing",
        needed: 2,
        reachable: 1,
        details: "signer 3: tcp connect error".into(),
    };
    assert_eq!(unavailable.kind(), "Unavailable");
    let s = unavailable.into_status();
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unavailable,
            "threshold signing needs 2 signers, 1 answered: signer 3: tcp connect error"
        )
    );
    assert_eq!(
        s.metadata()
            .get(crate::wire::UNAVAILABLE_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("backend")
    );
    let refused = ThresholdError::Refused {
        signer: 3,
        message: "signing policy: version 3 is not above version 7 already signed with this key".into(),
        high_water: Some(7),
    };
    assert_eq!(refused.kind(), "FailedPrecondition");
    let s = refused.clone().into_status();
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_eq!(
        s.message(),
        "signer 3 refused: signing policy: version 3 is not above version 7 already signed with this key"
    );
    assert_eq!(crate::wire::high_water_of(&s), Some(7));
    for (error, code) in [
        (ThresholdError::Unsupported("ecdsa"), Code::Unknown),
        (ThresholdError::NotFound("k".into()), Code::NotFound),
        (ThresholdError::AlreadyHeld("k".into()), Code::AlreadyExists),
        (ThresholdError::Protocol("p".into()), Code::Internal),
    ] {
        assert_eq!(error.kind(), format!("{code:?}"), "{error:?}");
        let s = error.clone().into_status();
        assert_eq!((s.code(), s.message()), (code, error.to_string().as_str()));
    }
    // A peer's refusal in a list of failures keeps its own words.
    assert_eq!(
        refused.detail(3),
        "signer 3: FailedPrecondition: signing policy: version 3 is not above version 7 already signed with this key"
    );
    // Codes no participant answers (a peer of another version) are named.
    assert_eq!(
        transport::from_peer_status(2, &tonic::Status::unimplemented("no such method")),
        ThresholdError::Failed("Unimplemented: no such method".into())
    );
}
