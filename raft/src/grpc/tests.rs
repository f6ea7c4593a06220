use super::*;

fn client() -> GrpcClient {
    GrpcClient {
        node_id: 1,
        target: 2,
        node: BasicNode::new("127.0.0.1:1"),
        client: Err(TransportError::InvalidAddress {
            target: 2,
            addr: "x".into(),
            reason: "test".into(),
        }),
        max_message_bytes: 1,
        identity: ClusterIdentity::default(),
    }
}

#[test]
fn statuses_map_to_what_openraft_should_do() {
    let c = client();
    let ttl = Duration::from_millis(50);
    let map = |s: Status| c.status_error::<RaftError<u64>>(RPCTypes::Vote, ttl, &s);
    for s in [
        Status::unavailable("connection refused"),
        Status::cancelled("connection closed"),
        Status::failed_precondition("meant for node 5"),
        // What tonic makes of a TLS alert: UNKNOWN, with the transport error as its source.
        Status::from_error(Box::new(std::io::Error::other("received fatal alert: UnknownCA"))),
    ] {
        let e = map(s.clone());
        assert!(matches!(e, RPCError::Unreachable(_)), "{s:?} -> {e:?}");
    }
    assert!(matches!(
        map(Status::deadline_exceeded("late")),
        RPCError::Timeout(Timeout { action: RPCTypes::Vote, id: 1, target: 2, timeout }) if timeout == ttl
    ));
    for s in [
        Status::invalid_argument("undecodable"),
        Status::internal("x"),
        Status::unknown("x"),
    ] {
        let e = map(s.clone());
        assert!(matches!(e, RPCError::Network(_)), "{s:?} -> {e:?}");
    }
    let text = map(Status::unavailable("connection refused")).to_string();
    assert!(text.contains("Vote to node 2 at 127.0.0.1:1"), "{text}");
}

#[tokio::test]
async fn an_unusable_address_is_unreachable() {
    let mut c = client();
    let err = c
        .vote(
            VoteRequest {
                vote: openraft::Vote::new(1, 1),
                last_log_id: None,
            },
            RPCOption::new(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn an_oversized_append_entries_batch_is_split() {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    let entry = |i: u64| crate::types::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
        payload: EntryPayload::Blank,
    };
    let req = |n: u64| AppendEntriesRequest {
        vote: openraft::Vote::new_committed(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries: (1..=n).map(entry).collect(),
    };
    let mut c = client();
    c.max_message_bytes = REQUEST_FRAMING + 16;
    let opt = RPCOption::new(Duration::from_millis(50));
    match c.append_entries(req(40), opt.clone()).await {
        Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 20),
        other => panic!("{other:?}"),
    }
    c.max_message_bytes = REQUEST_FRAMING;
    let err = c.append_entries(req(1), opt).await.unwrap_err();
    assert!(err.to_string().contains("raft message limit"), "{err}");
}

#[test]
fn backoff_grows_to_its_cap() {
    let client = client();
    let delays: Vec<Duration> = client.backoff().take(8).collect();
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn raft_errors_round_trip_through_the_wire_encoding() {
    use openraft::error::{Fatal, SnapshotMismatch};
    use openraft::SnapshotSegmentId;
    let stopped: RaftError<u64> = RaftError::Fatal(Fatal::Stopped);
    let bytes = postcard::to_allocvec(&stopped).unwrap();
    assert_eq!(postcard::from_bytes::<RaftError<u64>>(&bytes).unwrap(), stopped);

    let mismatch: RaftError<u64, InstallSnapshotError> =
        RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "s1".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "s1".into(),
                offset: 4096,
            },
        }));
    let bytes = postcard::to_allocvec(&mismatch).unwrap();
    assert_eq!(
        postcard::from_bytes::<RaftError<u64, InstallSnapshotError>>(&bytes).unwrap(),
        mismatch
    );
}

#[test]
fn higher_vote_round_trips_in_responses() {
    use openraft::{CommittedLeaderId, LogId, Vote};
    let higher = Vote::new_committed(9, 3);
    let resp: AppendEntriesResponse<u64> = AppendEntriesResponse::HigherVote(higher);
    let bytes = postcard::to_allocvec(&resp).unwrap();
    assert_eq!(
        postcard::from_bytes::<AppendEntriesResponse<u64>>(&bytes).unwrap(),
        resp
    );

    let vote = VoteResponse {
        vote: higher,
        vote_granted: false,
        last_log_id: Some(LogId::new(CommittedLeaderId::new(9, 3), 42)),
    };
    let bytes = postcard::to_allocvec(&vote).unwrap();
    assert_eq!(postcard::from_bytes::<VoteResponse<u64>>(&bytes).unwrap(), vote);
}
