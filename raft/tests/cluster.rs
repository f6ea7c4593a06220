//! Multi-node clusters in one process over real loopback gRPC with mutual TLS: each node has its
//! own RocksDB directory and its own certificate from a throw-away CA (seal-testkit's `TestPki`).
//!
//! Waits poll Raft metrics with deadlines of 30 s; nothing depends on timing beyond that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, ServerState, Vote};
use seal_proto::raft::raft_client::RaftClient;
use seal_proto::raft::{PayloadFormat, RaftRequest};
use seal_raft::grpc::{GrpcNetwork, RaftService};
use seal_raft::{AdminClient, ClusterTls, MembershipError, RaftConfig, SealRaft, WriteError};
use seal_storage::{ApplyOutcome, Command, MetaFile};
use seal_testkit::pki::TestPki;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

const WAIT: Duration = Duration::from_secs(30);
const T0: i64 = 1_795_305_296_210_447_549;
const DAY: i64 = 86_400_000_000_000;

// ---------------------------------------------------------------------------------------------
// Test PKI

/// A throw-away certificate authority (seal-testkit's), its files in a directory of its own.
struct Ca {
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        Ca {
            pki: TestPki::new(dir.path(), name),
            _dir: dir,
        }
    }

    /// A node certificate for 127.0.0.1 and localhost (server and client use), trusting this CA.
    fn node_tls(&self, name: &str) -> ClusterTls {
        self.node_tls_trusting(name, self)
    }

    /// Like [`Ca::node_tls`], but trusting the CA `trusted`.
    fn node_tls_trusting(&self, name: &str, trusted: &Ca) -> ClusterTls {
        let (cert_file, key_file) = self.pki.leaf(name);
        ClusterTls {
            ca_file: trusted.pki.ca_file(),
            cert_file,
            key_file,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// Timeouts a little above the LAN defaults: several nodes share this process and two cores.
fn config(id: u64, addr: &str, dir: &Path) -> RaftConfig {
    let mut c = RaftConfig::new(id, addr, dir);
    c.heartbeat_interval = Duration::from_millis(100);
    c.election_timeout_min = Duration::from_millis(500);
    c.election_timeout_max = Duration::from_millis(1000);
    c.snapshot_logs_since_last = None;
    c
}

/// A cluster node serving Raft and the cluster admin service, as `seal-node` runs it.
async fn open(config: RaftConfig, tls: &ClusterTls) -> SealRaft {
    let node = SealRaft::open_cluster_with_admin(config, tls.clone())
        .await
        .expect("open cluster node");
    assert!(node.listen_addr().is_some());
    node
}

fn addr_of(node: &SealRaft) -> String {
    node.listen_addr().expect("cluster node listens").to_string()
}

/// Start `n` voters (ids 1..=n) on free loopback ports under `root`, initialize them from node 1
/// and wait for a leader all agree on.
async fn start_voters(root: &Path, ca: &Ca, n: u64, tweak: impl Fn(&mut RaftConfig)) -> Vec<SealRaft> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let tls = ca.node_tls(&format!("node{id}"));
        let mut c = config(id, "127.0.0.1:0", &root.join(format!("node{id}")));
        tweak(&mut c);
        nodes.push(open(c, &tls).await);
    }
    let members: BTreeMap<u64, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64 + 1, addr_of(n)))
        .collect();
    nodes[0].initialize(members).await.expect("initialize");
    agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    nodes
}

/// Wait until every node in `nodes` knows the same leader, which is one of them and leads.
async fn agreed_leader(nodes: &[&SealRaft]) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let ms: Vec<_> = nodes.iter().map(|n| n.metrics()).collect();
        if let Some(l) = ms[0].leader {
            if ms.iter().all(|m| m.leader == Some(l)) && ms.iter().any(|m| m.node_id == l && m.is_leader) {
                return l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader within {WAIT:?}: {ms:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn by_id<'a>(nodes: &[&'a SealRaft], id: u64) -> &'a SealRaft {
    nodes
        .iter()
        .find(|n| n.metrics().node_id == id)
        .copied()
        .expect("node present")
}

fn file(role: &str, gun: &str, version: u64) -> MetaFile {
    MetaFile {
        role: role.into(),
        version,
        bytes: format!("{{\"signed\":{{\"_type\":\"{role}\",\"gun\":\"{gun}\",\"version\":{version}}}}}").into_bytes(),
    }
}

/// The first publish of GUN `g/<i>`.
fn publish(i: u64) -> Command {
    let gun = format!("g/{i}");
    Command::Publish {
        files: vec![file("targets", &gun, 1), file("timestamp", &gun, 1)],
        expected: vec![("targets".into(), None), ("timestamp".into(), None)],
        timestamp_expires_unix_nanos: Some(T0 + DAY),
        at_unix_nanos: T0 + i as i64,
        gun,
    }
}

/// Propose `command` through whichever node leads, retrying while there is none or it changes;
/// returns the outcome once one node acknowledged it.
async fn write_via_leader(nodes: &[&SealRaft], command: Command) -> ApplyOutcome {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(leader) = nodes.iter().find(|n| n.metrics().is_leader) {
            match tokio::time::timeout(WAIT, leader.write(command.clone())).await {
                Ok(Ok(outcome)) => return outcome,
                Ok(Err(e)) if e.is_retryable() => {}
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => panic!("write not answered within {WAIT:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader accepted the write within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `node` has applied at least `index`.
async fn applied_at_least(node: &SealRaft, index: u64) {
    node.raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "catch up")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "node {} did not apply {index}: {e}; {:?}",
                node.metrics().node_id,
                node.metrics()
            )
        });
}

/// Wait until every node (the leader included) has applied the leader's whole log, then check each holds GUNs `g/<i>` for
/// every `i` in `guns` and that all their states are identical.
async fn check_replicated(nodes: &[&SealRaft], guns: impl IntoIterator<Item = u64> + Clone) {
    let leader = nodes.iter().find(|n| n.metrics().is_leader).expect("a leader");
    // The leader's log covers every acknowledged write (its applied-index metric may trail the
    // acknowledgement by a moment).
    let index = leader.metrics().last_log_index.expect("leader has a log");
    let mut digests = BTreeSet::new();
    for node in nodes {
        applied_at_least(node, index).await;
        let reader = node.read();
        for i in guns.clone() {
            let gun = format!("g/{i}");
            let (version, bytes) = reader
                .current(&gun, "targets")
                .unwrap()
                .unwrap_or_else(|| panic!("node {} lacks {gun}", node.metrics().node_id));
            assert_eq!(version, 1);
            assert_eq!(bytes, file("targets", &gun, 1).bytes);
        }
        digests.insert(reader.state_digest().unwrap());
    }
    assert_eq!(digests.len(), 1, "nodes differ: {digests:?}");
}

async fn shutdown_all(nodes: Vec<SealRaft>) {
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_elect_a_leader_and_replicate_writes() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let nodes = start_voters(root.path(), &ca, 3, |_| {}).await;
    let refs: Vec<&SealRaft> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;

    for i in 1..=20 {
        assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
    }
    check_replicated(&refs, 1..=20).await;

    // Asked for its state digest, each node answers itself (not the leader) with the digest of
    // its own state machine and the index it covers: the same on all three.
    let admin_tls = ca.node_tls("admin");
    let mut answers = BTreeSet::new();
    for node in &refs {
        let client = AdminClient::new(&addr_of(node), &admin_tls).unwrap();
        let s = client.status_with_digest().await.expect("status with digest");
        assert_eq!(s.answered_by, node.metrics().node_id);
        let digest = s.state_digest.clone().expect("the digest asked for");
        assert_eq!(digest, node.read().state_digest().unwrap());
        assert_eq!(s.state_digest_applied_index, node.metrics().applied_index);
        assert!(s.state_digest_applied_index >= Some(20), "{s:?}");
        answers.insert((digest, s.state_digest_applied_index));
        let plain = client.status().await.expect("status");
        assert_eq!((plain.state_digest, plain.state_digest_applied_index), (None, None));
        assert_eq!(plain.answered_by, leader_id, "a plain status is the leader's");
    }
    assert_eq!(answers.len(), 1, "nodes differ: {answers:?}");

    // Every node knows the whole membership, and a follower names the leader and its address.
    let leader_addr = addr_of(by_id(&refs, leader_id));
    for node in &refs {
        let m = node.raft().metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        assert_eq!(voters, BTreeSet::from([1, 2, 3]));
        if node.metrics().node_id != leader_id {
            assert_eq!(
                node.write(publish(99)).await,
                Err(WriteError::ForwardToLeader {
                    leader_id: Some(leader_id),
                    leader_addr: Some(leader_addr.clone()),
                })
            );
            // The cluster exists: initializing again is refused with a typed error.
            let again = node
                .initialize(BTreeMap::from([(node.metrics().node_id, addr_of(node))]))
                .await;
            assert!(
                matches!(again, Err(MembershipError::AlreadyInitialized { .. })),
                "{again:?}"
            );
        }
    }
    // Nothing was written by the refused writes.
    assert!(refs
        .iter()
        .all(|n| n.read().current("g/99", "targets").unwrap().is_none()));
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_shutdown_elects_a_new_leader_and_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let mut nodes = start_voters(root.path(), &ca, 3, |_| {}).await;
    let (old_leader, old_term) = {
        let refs: Vec<&SealRaft> = nodes.iter().collect();
        for i in 1..=10 {
            assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
        }
        let l = agreed_leader(&refs).await;
        (l, by_id(&refs, l).metrics().term)
    };

    // Kill the leader.
    let pos = nodes.iter().position(|n| n.metrics().node_id == old_leader).unwrap();
    let dead = nodes.remove(pos);
    let dead_addr = addr_of(&dead);
    let dead_dir = root.path().join(format!("node{old_leader}"));
    dead.shutdown().await.expect("shutdown leader");

    // The other two elect a new leader and take writes again.
    let survivors: Vec<&SealRaft> = nodes.iter().collect();
    let new_leader = agreed_leader(&survivors).await;
    assert_ne!(new_leader, old_leader);
    assert!(by_id(&survivors, new_leader).metrics().term > old_term);
    for i in 11..=20 {
        assert_eq!(write_via_leader(&survivors, publish(i)).await, ApplyOutcome::Applied);
    }
    // Every write acknowledged before and after the failover is on both survivors.
    check_replicated(&survivors, 1..=20).await;

    // The old leader restarts on its address and data and catches up by log.
    let tls = ca.node_tls(&format!("node{old_leader}-again"));
    let back = open(config(old_leader, &dead_addr, &dead_dir), &tls).await;
    assert_eq!(addr_of(&back), dead_addr);
    nodes.push(back);
    let all: Vec<&SealRaft> = nodes.iter().collect();
    assert_eq!(write_via_leader(&all, publish(21)).await, ApplyOutcome::Applied);
    agreed_leader(&all).await;
    check_replicated(&all, 1..=21).await;
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_added_after_log_purge_catches_up_by_snapshot_and_is_promoted() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    // Snapshot every 20 entries (whatever the state's size), keep no log behind a snapshot, send
    // snapshots in 4 KiB chunks.
    let small_snapshots = |c: &mut RaftConfig| {
        c.snapshot_logs_since_last = Some(20);
        c.snapshot_log_percent = 0;
        c.max_in_snapshot_log_to_keep = 0;
        c.snapshot_max_chunk_size = 4096;
    };
    let mut nodes = start_voters(root.path(), &ca, 3, small_snapshots).await;
    let refs: Vec<&SealRaft> = nodes.iter().collect();
    for i in 1..=120 {
        assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
    }
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&refs, leader_id);
    // The leader has purged its log up to a snapshot: a new node cannot get the start by log.
    let purged = leader
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.map(|p| p.index).unwrap_or(0) >= 60, "log purged")
        .await
        .expect("leader purges its log")
        .purged
        .expect("purged")
        .index;
    let snapshot_len = std::fs::read_dir(root.path().join(format!("node{leader_id}/snapshots")))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| seal_storage::dir_size(&e.path()).unwrap().1)
        .max()
        .expect("a snapshot");
    assert!(
        snapshot_len > 3 * 4096,
        "snapshot of {snapshot_len} bytes would not need several chunks"
    );

    let tls = ca.node_tls("node4");
    let mut c4 = config(4, "127.0.0.1:0", &root.path().join("node4"));
    small_snapshots(&mut c4);
    let learner = open(c4, &tls).await;
    let at = tokio::time::timeout(WAIT, leader.add_learner(4, addr_of(&learner), true))
        .await
        .expect("learner caught up in time")
        .expect("add learner");
    assert!(at > purged);
    applied_at_least(&learner, at).await;
    let lm = learner.metrics();
    assert!(
        lm.snapshot_index.is_some_and(|s| s >= purged),
        "the learner holds no snapshot covering the purged log: {lm:?}"
    );
    assert!(!lm.is_leader);
    assert_eq!(learner.raft().metrics().borrow().state, ServerState::Learner);

    // It keeps up by log afterwards, and serves the same state.
    for i in 121..=130 {
        assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
    }
    let mut with_learner = refs.clone();
    with_learner.push(&learner);
    check_replicated(&with_learner, 1..=130).await;

    // Membership wrappers: an unknown node cannot be made a voter; the learner can.
    assert_eq!(
        leader.change_membership(BTreeSet::from([1, 2, 3, 9])).await,
        Err(MembershipError::LearnerNotFound { node_id: 9 })
    );
    let follower = refs.iter().find(|n| n.metrics().node_id != leader_id).unwrap();
    assert!(matches!(
        follower.change_membership(BTreeSet::from([1, 2, 3, 4])).await,
        Err(MembershipError::ForwardToLeader { leader_id: Some(l), .. }) if l == leader_id
    ));
    assert!(matches!(
        leader.add_learner(5, "no-port", false).await,
        Err(MembershipError::InvalidAddress { node_id: 5, .. })
    ));
    leader
        .change_membership(BTreeSet::from([1, 2, 3, 4]))
        .await
        .expect("promote the learner");
    learner
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.state == ServerState::Follower && m.membership_config.membership().voter_ids().count() == 4,
            "promoted",
        )
        .await
        .expect("learner becomes a voter");
    drop(refs);
    drop(with_learner);
    nodes.push(learner);
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_learner_is_sent_a_snapshot_built_for_it_not_the_log_since_the_last() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    // No snapshot by policy; ten entries kept behind one.
    let keep_ten = |c: &mut RaftConfig| {
        c.snapshot_logs_since_last = None;
        c.max_in_snapshot_log_to_keep = 10;
    };
    let mut nodes = start_voters(root.path(), &ca, 1, keep_ten).await;
    let refs: Vec<&SealRaft> = nodes.iter().collect();
    for i in 1..=60 {
        assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
    }
    let leader = refs[0];
    let applied = leader.metrics().applied_index.expect("applied");
    assert_eq!(leader.metrics().snapshot_index, None);

    let join = |id: u64| {
        let mut c = config(id, "127.0.0.1:0", &root.path().join(format!("node{id}")));
        keep_ten(&mut c);
        let tls = ca.node_tls(&format!("node{id}"));
        async move { open(c, &tls).await }
    };
    let learner = join(4).await;
    tokio::time::timeout(WAIT, leader.add_learner(4, addr_of(&learner), true))
        .await
        .expect("learner caught up in time")
        .expect("add learner");
    // More than ten entries since the last snapshot (none): one was built for the learner, and
    // it was sent that instead of the 60 entries.
    let built = leader
        .metrics()
        .snapshot_index
        .expect("a snapshot built for the new learner");
    assert!(built >= applied, "snapshot at {built}, applied {applied}");
    applied_at_least(&learner, applied).await;
    let lm = learner.metrics();
    assert!(
        lm.snapshot_index.is_some_and(|s| s >= applied),
        "the learner was not sent the fresh snapshot: {lm:?}"
    );

    // Fewer than ten entries since it: the next learner is sent that snapshot and the log after.
    for i in 61..=63 {
        assert_eq!(write_via_leader(&refs, publish(i)).await, ApplyOutcome::Applied);
    }
    let second = join(5).await;
    tokio::time::timeout(WAIT, leader.add_learner(5, addr_of(&second), true))
        .await
        .expect("second learner caught up in time")
        .expect("add second learner");
    assert_eq!(leader.metrics().snapshot_index, Some(built));
    let mut all = refs.clone();
    all.push(&learner);
    all.push(&second);
    check_replicated(&all, 1..=63).await;
    drop(all);
    drop(refs);
    nodes.push(learner);
    nodes.push(second);
    shutdown_all(nodes).await;
}

/// A hand-made gRPC client (not seal-raft's, which refuses to load a certificate its CA does not
/// sign) trusting `tls`'s CA file and presenting `tls`'s certificate, or none.
fn raw_client(tls: &ClusterTls, addr: &str, present_certificate: bool) -> RaftClient<Channel> {
    let read = |p: &Path| std::fs::read(p).unwrap();
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca_file)))
        .domain_name("127.0.0.1");
    if present_certificate {
        config = config.identity(Identity::from_pem(read(&tls.cert_file), read(&tls.key_file)));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect_lazy();
    RaftClient::new(channel)
}

fn vote_at(term: u64, id: u64) -> VoteRequest<u64> {
    VoteRequest {
        vote: Vote::new(term, id),
        last_log_id: None,
    }
}

/// A `Vote` call from node `sender` to node `target`, encoded as seal-raft encodes it.
/// A vote request as a cluster member sends it to `to`: addressed to node `target`, carrying
/// `to`'s cluster id.
fn raw_vote(to: &SealRaft, target: u64, sender: u64, vote: &VoteRequest<u64>) -> tonic::Request<RaftRequest> {
    let mut request = tonic::Request::new(RaftRequest {
        payload: postcard::to_allocvec(vote).unwrap(),
        format: PayloadFormat::PostcardOpenraftV09 as i32,
        target,
        sender,
        chunk: Vec::new(),
    });
    if let Some(id) = to.cluster_id() {
        request
            .metadata_mut()
            .insert(seal_raft::CLUSTER_ID_HEADER, id.parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_the_ca_signed_but_not_on_the_allow_list_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let nodes = start_voters(root.path(), &ca, 1, |c| {
        c.allowed_peer_names = seal_proto::peer::AllowedNames(vec!["node*".into()]);
    })
    .await;
    let leader = &nodes[0];
    let leader_addr = addr_of(leader);
    let term = leader.metrics().term;

    // A cluster node is answered.
    let node = ca.node_tls("node7");
    let reply = raw_client(&node, &leader_addr, true)
        .vote(raw_vote(leader, 1, 7, &vote_at(0, 7)))
        .await
        .expect("an allowed peer is answered");
    assert!(reply.into_inner().result.is_some());

    // A node of another cluster (its certificate signed by the same CA, allowed by name, as a
    // copy of a member's data directory would be) is refused before Raft: its vote at a much
    // higher term would depose the leader. So is one carrying no cluster id.
    for cluster_id in [Some("seal-another-cluster"), None] {
        let mut vote = raw_vote(leader, 1, 9, &vote_at(term + 100, 9));
        match cluster_id {
            Some(id) => {
                vote.metadata_mut()
                    .insert(seal_raft::CLUSTER_ID_HEADER, id.parse().unwrap());
            }
            None => {
                vote.metadata_mut().remove(seal_raft::CLUSTER_ID_HEADER);
            }
        }
        let status = raw_client(&node, &leader_addr, true).vote(vote).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        let m = leader.metrics();
        assert!(
            m.is_leader && m.term == term,
            "a vote of another cluster reached raft: {m:?}"
        );
    }

    // Another service holding a certificate from the same CA is refused by
    // the service, and its vote at a much higher term never reaches Raft.
    let frontend = ca.node_tls("registry-frontend");
    let status = raw_client(&frontend, &leader_addr, true)
        .vote(raw_vote(leader, 1, 9, &vote_at(term + 100, 9)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("registry-frontend"), "{status:?}");
    let m = leader.metrics();
    assert!(m.is_leader && m.term == term, "the refused vote reached raft: {m:?}");
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_certificate_from_another_ca_is_refused_both_ways() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let other_ca = Ca::new("someone else's");

    let nodes = start_voters(root.path(), &ca, 1, |_| {}).await;
    let leader = &nodes[0];
    let leader_addr = addr_of(leader);
    let term = leader.metrics().term;
    let option = RPCOption::new(Duration::from_secs(5));
    let max = RaftConfig::new(0, "", "").max_rpc_message_bytes;

    // Control: a peer with a certificate from the cluster CA gets an answer (its stale vote is
    // not granted).
    let good = ca.node_tls("peer7");
    let mut net = GrpcNetwork::new(7, &good, max)
        .expect("network")
        .of_cluster(seal_raft::ClusterIdentity::fixed(leader.cluster_id().unwrap()));
    let mut client = net.new_client(1, &BasicNode::new(leader_addr.clone())).await;
    let resp = client
        .vote(vote_at(0, 7), option.clone())
        .await
        .expect("a cluster peer is answered");
    assert!(!resp.vote_granted);

    // The same peer addressing the wrong node id at that address is refused, as unreachable.
    let mut wrong = net.new_client(5, &BasicNode::new(leader_addr.clone())).await;
    let err = wrong.vote(vote_at(0, 7), option.clone()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("meant for node 5"), "{err}");

    // A client presenting a certificate from another CA (while trusting the cluster CA), or none,
    // never reaches Raft, where a vote at a much higher term would depose the leader. The same
    // hand-made client with a cluster certificate is answered.
    let mut control = raw_client(&good, &leader_addr, true);
    let reply = control
        .vote(raw_vote(leader, 1, 7, &vote_at(0, 7)))
        .await
        .expect("answered");
    assert!(reply.into_inner().result.is_some());
    let rogue_client_tls = other_ca.node_tls_trusting("rogue-client", &ca);
    let anonymous = raw_client(&good, &leader_addr, false);
    let rogue = raw_client(&rogue_client_tls, &leader_addr, true);
    for mut rogue in [anonymous.clone(), rogue.clone(), anonymous, rogue] {
        let status = rogue
            .vote(raw_vote(leader, 1, 9, &vote_at(term + 100, 9)))
            .await
            .unwrap_err();
        // Refused by the transport (the TLS layer), not answered by the service.
        let by_transport = std::error::Error::source(&status).is_some_and(|e| e.is::<tonic::transport::Error>());
        assert!(by_transport, "{status:?}");
    }
    let m = leader.metrics();
    assert!(m.is_leader && m.term == term, "the rogue vote reached raft: {m:?}");

    // A server that does not accept the cluster CA's client certificates (its own certificate is
    // the cluster's, so our side is satisfied) refuses us after the handshake: unreachable.
    let picky = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let picky_addr = picky.local_addr().unwrap().to_string();
    let picky_tls = ca.node_tls_trusting("picky", &other_ca);
    let read = |p: &Path| std::fs::read(p).unwrap();
    let picky_server = tonic::transport::Server::builder()
        .tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(
                    read(&picky_tls.cert_file),
                    read(&picky_tls.key_file),
                ))
                .client_ca_root(Certificate::from_pem(read(&picky_tls.ca_file))),
        )
        .unwrap()
        .add_service(RaftService::new(leader.raft().clone(), 8).into_server(max))
        .serve_with_incoming(TcpIncoming::from(picky));
    let picky_task = tokio::spawn(picky_server);
    let mut to_picky = net.new_client(8, &BasicNode::new(picky_addr)).await;
    let err = to_picky.vote(vote_at(0, 7), option.clone()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    picky_task.abort();

    // A server presenting a certificate from another CA gets nothing from the cluster: added as
    // a learner next to a legitimate one, it never receives a single entry.
    let rogue_server_tls = other_ca.node_tls_trusting("rogue-server", &other_ca);
    let rogue_server = open(config(9, "127.0.0.1:0", &root.path().join("node9")), &rogue_server_tls).await;
    let legit_tls = ca.node_tls("node2");
    let legit = open(config(2, "127.0.0.1:0", &root.path().join("node2")), &legit_tls).await;
    leader
        .add_learner(9, addr_of(&rogue_server), false)
        .await
        .expect("membership entry");
    let at = leader
        .add_learner(2, addr_of(&legit), false)
        .await
        .expect("membership entry");
    applied_at_least(&legit, at).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rm = rogue_server.metrics();
    assert_eq!(rm.last_log_index, None, "the rogue node received entries: {rm:?}");
    assert_eq!(rm.leader, None);
    let replication = leader
        .raft()
        .metrics()
        .borrow()
        .replication
        .clone()
        .expect("leader replicates");
    assert_eq!(replication.get(&9), Some(&None), "{replication:?}");
    assert!(
        replication.get(&2).is_some_and(|m| m.is_some_and(|l| l.index >= at)),
        "{replication:?}"
    );

    // Asked directly, the rogue server's certificate is refused by a cluster client.
    let mut to_rogue = net.new_client(9, &BasicNode::new(addr_of(&rogue_server))).await;
    let err = to_rogue.vote(vote_at(0, 7), option.clone()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    rogue_server.shutdown().await.unwrap();
    legit.shutdown().await.unwrap();
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_fail_at_open_with_the_file_named() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let good = ca.node_tls("n1");
    let missing = ClusterTls {
        key_file: PathBuf::from("/nonexistent/key.pem"),
        ..good.clone()
    };
    let not_a_cert = ClusterTls {
        cert_file: good.key_file.clone(),
        ..good.clone()
    };
    // A CA file with a PEM block that is no certificate: rustls would quietly trust nothing.
    let garbage_ca = root.path().join("garbage-ca.pem");
    std::fs::write(
        &garbage_ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad_ca = ClusterTls {
        ca_file: garbage_ca.clone(),
        ..good.clone()
    };
    // This node's certificate from another CA than the cluster's.
    let another = Ca::new("another");
    let foreign = another.node_tls_trusting("n1-foreign", &ca);
    for (tls, path) in [
        (missing, "/nonexistent/key.pem".to_string()),
        (not_a_cert, good.key_file.display().to_string()),
        (bad_ca, garbage_ca.display().to_string()),
        (foreign.clone(), foreign.cert_file.display().to_string()),
    ] {
        let err = SealRaft::open_cluster(config(1, "127.0.0.1:0", &root.path().join("n1")), tls)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path), "{text}");
        assert!(matches!(err, seal_raft::Error::Tls { .. }), "{err:?}");
    }
}

/// Waits until `count()` equals `want`.
async fn until_count(what: &str, want: u64, count: impl Fn() -> u64) {
    let deadline = Instant::now() + WAIT;
    while count() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} after {WAIT:?}, expected {want}",
            count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    use tokio::io::AsyncReadExt as _;
    const CAP: usize = 8;
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("seal test cluster");
    let nodes = start_voters(root.path(), &ca, 1, |c| c.max_connections = CAP).await;
    let node = &nodes[0];
    let addr = addr_of(node);
    let counts = node.connection_counts().expect("a cluster node counts its connections");
    let peer = ca.node_tls("node7");

    // Clients that connect and never start a TLS handshake hold every slot...
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    until_count("open connections", CAP as u64, || counts.open()).await;
    assert_eq!(counts.refused(), 0);

    // ...so each further connection is closed on arrival (end of stream at once, not after the
    // 10 s handshake timeout) and counted; a cluster peer is turned away too.
    for _ in 0..4 {
        let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut byte))
            .await
            .expect("a connection over the cap is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(counts.refused(), 4);
    let status = raw_client(&peer, &addr, true)
        .vote(raw_vote(node, 1, 7, &vote_at(0, 7)))
        .await
        .unwrap_err();
    assert!(counts.refused() >= 5, "{status:?}");
    assert_eq!(counts.open(), CAP as u64);

    // Once they are gone, the port serves again.
    drop(idle);
    until_count("open connections", 0, || counts.open()).await;
    let reply = raw_client(&peer, &addr, true)
        .vote(raw_vote(node, 1, 7, &vote_at(0, 7)))
        .await
        .expect("a peer is answered once the idle connections are gone");
    assert!(reply.into_inner().result.is_some());
    assert!(node.metrics().is_leader);
    shutdown_all(nodes).await;
}
