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
        unstreamed: Arc::default(),
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

/// A peer speaking the Raft service without a Raft: it reassembles what it is sent and answers
/// every chunk with `vote`; `streams` says whether it has `InstallSnapshotStream` (an older build
/// answers UNIMPLEMENTED).
#[derive(Clone)]
struct FakePeer {
    streams: bool,
    vote: Vote,
    received: Arc<Mutex<Vec<u8>>>,
    calls: Arc<Mutex<Vec<&'static str>>>,
    formats: Arc<Mutex<Vec<PayloadFormat>>>,
}

impl FakePeer {
    fn take_chunk(&self, req: RaftRequest) -> Result<(bool, Response<RaftReply>), Status> {
        let mut chunk: InstallSnapshotRequest<TypeConfig> =
            postcard::from_bytes(&req.payload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.formats.lock().unwrap().push(req.format());
        if req.format() == PayloadFormat::PostcardOpenraftV09ChunkApart {
            assert!(chunk.data.is_empty(), "the bytes go beside the request, not in it");
            chunk.data = req.chunk;
        }
        let mut received = self.received.lock().unwrap();
        assert_eq!(chunk.offset, received.len() as u64, "chunks arrive in order");
        received.extend_from_slice(&chunk.data);
        let resp = InstallSnapshotResponse { vote: self.vote };
        // A higher vote answers at once, as a Raft does, leaving the rest of a stream unread.
        Ok((
            chunk.done || self.vote > chunk.vote,
            reply::<_, RaftError<u64, InstallSnapshotError>>(RPCTypes::InstallSnapshot, Ok(resp))?,
        ))
    }
}

#[tonic::async_trait]
impl RaftRpc for FakePeer {
    async fn append_entries(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn vote(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.calls.lock().unwrap().push("InstallSnapshot");
        Ok(self.take_chunk(request.into_inner())?.1)
    }

    async fn install_snapshot_stream(
        &self,
        request: Request<tonic::Streaming<RaftRequest>>,
    ) -> Result<Response<RaftReply>, Status> {
        if !self.streams {
            return Err(Status::unimplemented("seal.raft.v1.Raft/InstallSnapshotStream"));
        }
        self.calls.lock().unwrap().push("InstallSnapshotStream");
        let mut stream = request.into_inner();
        while let Some(message) = stream.message().await? {
            let (done, reply) = self.take_chunk(message)?;
            if done {
                return Ok(reply);
            }
        }
        Err(Status::invalid_argument("ended early"))
    }
}

/// A client of `peer`, served on a local port over plain HTTP/2.
async fn client_of(peer: FakePeer) -> GrpcClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServer::new(peer))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    GrpcClient {
        client: Ok(RaftClient::new(channel)),
        node: BasicNode::new(addr.to_string()),
        ..client()
    }
}

/// A snapshot of a few files (one larger than a chunk), and the archive bytes it streams.
async fn snapshot(dir: &std::path::Path) -> (Snapshot, Vec<u8>) {
    use rand::RngCore as _;
    use tokio::io::AsyncReadExt as _;
    let files = dir.join("checkpoint");
    std::fs::create_dir(&files).unwrap();
    let mut big = vec![0u8; 7 * 1024 * 1024 + 17];
    rand::thread_rng().fill_bytes(&mut big);
    std::fs::write(files.join("000009.sst"), &big).unwrap();
    std::fs::write(files.join("CURRENT"), b"MANIFEST-000005\n").unwrap();
    std::fs::write(files.join("MANIFEST-000005"), b"manifest").unwrap();
    let mut expected = Vec::new();
    crate::snapshot_data::SnapshotData::send(&files, &dir.join("read-back"))
        .unwrap()
        .read_to_end(&mut expected)
        .await
        .unwrap();
    let data = crate::snapshot_data::SnapshotData::send(&files, &dir.join("sending")).unwrap();
    let meta = crate::types::SnapshotMeta {
        snapshot_id: "1-2-3".into(),
        ..Default::default()
    };
    (
        Snapshot {
            meta,
            snapshot: Box::new(data),
        },
        expected,
    )
}

fn fake_peer(streams: bool, vote: Vote) -> FakePeer {
    FakePeer {
        streams,
        vote,
        received: Arc::default(),
        calls: Arc::default(),
        formats: Arc::default(),
    }
}

/// `c.full_snapshot` as leader (1, 1), with a 10 s per-chunk limit.
async fn send_snapshot(
    c: &mut GrpcClient,
    snap: Snapshot,
    cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
    c.full_snapshot(Vote::new(1, 1), snap, cancel, RPCOption::new(Duration::from_secs(10)))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_streams_in_one_call_and_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, expected) = snapshot(dir.path()).await;
    let peer = fake_peer(true, Vote::new(1, 1));
    let mut c = client_of(peer.clone()).await;
    let resp = send_snapshot(&mut c, snap, std::future::pending()).await.unwrap();
    assert_eq!(resp.vote, Vote::new(1, 1));
    assert_eq!(*peer.calls.lock().unwrap(), vec!["InstallSnapshotStream"]);
    assert!(expected.len() > 2 * 3 * 1024 * 1024, "several chunks");
    let formats = peer.formats.lock().unwrap().clone();
    assert!(formats.len() >= 3, "{formats:?}");
    assert!(
        formats
            .iter()
            .all(|f| *f == PayloadFormat::PostcardOpenraftV09ChunkApart),
        "{formats:?}"
    );
    assert!(
        *peer.received.lock().unwrap() == expected,
        "the archive arrives byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_without_the_stream_gets_later_snapshots_chunk_by_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = snapshot(dir.path()).await;
    let peer = fake_peer(false, Vote::new(1, 1));
    let mut c = client_of(peer.clone()).await;
    let err = send_snapshot(&mut c, snap, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, StreamingError::Network(_)), "{err}");
    assert!(err.to_string().contains("Unimplemented"), "{err}");
    // Remembered for the target, by every client of this network: the next attempt (openraft
    // makes it with a fresh snapshot) takes openraft's chunked transfer.
    assert!(c.unstreamed.lock().unwrap().contains(&c.target));
    assert!(peer.received.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_higher_vote_comes_back_and_a_cancel_ends_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = snapshot(dir.path()).await;
    // The peer has a higher vote: it answers the first chunk with it (openraft steps down on
    // it), and the call ends promptly although the sender had more to stream.
    let peer = fake_peer(true, Vote::new(5, 3));
    let mut c = client_of(peer.clone()).await;
    let started = std::time::Instant::now();
    let resp = send_snapshot(&mut c, snap, std::future::pending()).await.unwrap();
    assert_eq!(resp.vote, Vote::new(5, 3));
    assert_eq!(peer.received.lock().unwrap().len(), 3 * 1024 * 1024, "one chunk read");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Cancelled (replication closed): the call ends at once with that.
    let (snap, _) = {
        let dir2 = dir.path().join("again");
        std::fs::create_dir(&dir2).unwrap();
        snapshot(&dir2).await
    };
    let err = send_snapshot(&mut c, snap, std::future::ready(ReplicationClosed::new("test")))
        .await
        .unwrap_err();
    assert!(matches!(err, StreamingError::Closed(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_mixes_senders_stops_short_or_is_empty_is_refused_and_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, archive) = snapshot(dir.path()).await;
    let node = crate::SealRaft::open(crate::RaftConfig::new(1, "127.0.0.1:1", dir.path().join("node")))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftService::new(node.raft().clone(), 1).into_server(64 << 20))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let raw = RaftClient::new(channel);
    let chunk = |sender: u64, target: u64, offset: usize, len: usize| {
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(7, sender),
            meta: crate::types::SnapshotMeta {
                snapshot_id: "7-2-1".into(),
                ..Default::default()
            },
            offset: offset as u64,
            data: archive[offset..offset + len].to_vec(),
            done: offset + len == archive.len(),
        };
        // As an earlier build sends it: the bytes inside the request.
        RaftRequest {
            payload: postcard::to_allocvec(&req).unwrap(),
            format: PayloadFormat::PostcardOpenraftV09 as i32,
            target,
            sender,
            chunk: Vec::new(),
        }
    };
    // As this build sends it: the bytes beside the request.
    let apart = |sender: u64, target: u64, offset: usize, len: usize| {
        let mut message = chunk(sender, target, offset, len);
        let mut req: InstallSnapshotRequest<TypeConfig> = postcard::from_bytes(&message.payload).unwrap();
        message.chunk = std::mem::take(&mut req.data);
        message.payload = postcard::to_allocvec(&req).unwrap();
        message.format = PayloadFormat::PostcardOpenraftV09ChunkApart as i32;
        message
    };
    let send = |messages: Vec<RaftRequest>| {
        let mut raw = raw.clone();
        async move {
            raw.install_snapshot_stream(tokio_stream::iter(messages))
                .await
                .unwrap_err()
        }
    };
    let refused = send(vec![]).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("no chunk"), "{refused:?}");
    let refused = send(vec![chunk(2, 1, 0, 4096), chunk(3, 1, 4096, 4096)]).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("a chunk from node 3"), "{refused:?}");
    let refused = send(vec![chunk(2, 1, 0, 4096), chunk(2, 1, 4096, 4096)]).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("ended before its last chunk"), "{refused:?}");
    let refused = send(vec![chunk(2, 5, 0, 4096)]).await;
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Bytes beside the request are taken (the stream is refused only for ending early); in the
    // earlier format, or both inside and beside, they are refused.
    let refused = send(vec![apart(2, 1, 0, 4096), apart(2, 1, 4096, 4096)]).await;
    assert!(refused.message().contains("ended before its last chunk"), "{refused:?}");
    let mut beside_too = chunk(2, 1, 0, 4096);
    beside_too.chunk = vec![1; 16];
    let refused = send(vec![beside_too.clone()]).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("outside the request"), "{refused:?}");
    beside_too.format = PayloadFormat::PostcardOpenraftV09ChunkApart as i32;
    let refused = send(vec![beside_too]).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("both inside and outside"), "{refused:?}");
    // Outside a stream, bytes beside the request have no place.
    let mut unary = chunk(2, 1, 0, 4096);
    unary.chunk = vec![1; 16];
    let refused = raw.clone().install_snapshot(unary).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("only InstallSnapshotStream takes"),
        "{refused:?}"
    );
    let mut unknown = apart(2, 1, 0, 4096);
    unknown.format = 9;
    let refused = send(vec![unknown]).await;
    assert!(
        refused.message().contains("unsupported payload format 9"),
        "{refused:?}"
    );
    // Nothing was installed.
    assert_eq!(node.raft().metrics().borrow().snapshot, None);
    node.shutdown().await.unwrap();
}
