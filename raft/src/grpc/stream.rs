//! A snapshot in one call, `InstallSnapshotStream`: the chunks openraft's chunked transfer sends
//! one `InstallSnapshot` call each, streamed in order.
//!
//! Chunk by chunk, each chunk waits for the previous one's answer: the sender reads, encodes and
//! encrypts it, the receiver decrypts, decodes, writes and hashes it, one after the other, while
//! the other side idles. Streamed, a task on the sender reads ahead ([`READ_AHEAD`] chunks, and
//! what HTTP/2 flow control lets through) while the receiver works on the current chunk, so the
//! two sides' work overlaps.
//!
//! The receiver gives each chunk to `Raft::install_snapshot` in turn, exactly as the unary call
//! does (its vote check, the archive's checks, the install after the last chunk), and answers
//! with the answer to the last chunk, or with the first error or higher vote, abandoning the rest
//! of the stream. A stream that stops sending for [`STREAM_IDLE_TIMEOUT`] is refused.

use std::io::SeekFrom;
use std::time::Duration;

use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_stream::wrappers::ReceiverStream;

use super::*;

/// Chunks the sender reads ahead of the one the receiver is working on.
const READ_AHEAD: usize = 2;

/// How long the sender waits for its reader task once the call is over.
const READER_GRACE: Duration = Duration::from_secs(1);

/// How long the receiver waits for the next chunk of a stream before refusing it
/// (`DEADLINE_EXCEEDED`): a sender that stopped sending (but keeps its connection alive) would
/// otherwise hold the receiving side's snapshot state until the call's own deadline.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The sender's error for what openraft's replication wants back.
fn streaming_error(
    err: RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
) -> StreamingError<TypeConfig, Fatal<u64>> {
    match err {
        RPCError::Timeout(e) => e.into(),
        RPCError::Unreachable(e) => e.into(),
        RPCError::Network(e) => e.into(),
        RPCError::PayloadTooLarge(e) => NetworkError::new(&e).into(),
        RPCError::RemoteError(RemoteError {
            target,
            target_node,
            source: RaftError::Fatal(fatal),
        }) => RemoteError {
            target,
            target_node,
            source: fatal,
        }
        .into(),
        // A snapshot mismatch (another sender's stream interleaved): the next attempt starts over.
        RPCError::RemoteError(RemoteError {
            source: RaftError::APIError(e),
            ..
        }) => NetworkError::new(&e).into(),
    }
}

impl GrpcClient {
    /// Send `snapshot` as one `InstallSnapshotStream` call.
    pub(super) async fn stream_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let rpc = RPCTypes::InstallSnapshot;
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(Unreachable::new(e).into()),
        };
        let meta = snapshot.meta;
        let signature = meta.signature();
        let read_err = {
            let signature = signature.clone();
            move |e: std::io::Error| {
                StorageError::from_io_error(ErrorSubject::Snapshot(Some(signature)), ErrorVerb::Read, e)
            }
        };
        let mut data = snapshot.snapshot;
        let end = data.seek(SeekFrom::End(0)).await.map_err(read_err.clone())?;
        data.seek(SeekFrom::Start(0)).await.map_err(read_err.clone())?;
        // openraft always sets it for the snapshot transfer; the default is its own.
        let chunk_size = option.snapshot_chunk_size().unwrap_or(3 * 1024 * 1024).max(1);
        let chunks = end.div_ceil(chunk_size as u64).max(1);
        // The whole call may take the per-chunk limit for each chunk.
        let ttl = option
            .hard_ttl()
            .saturating_mul(u32::try_from(chunks).unwrap_or(u32::MAX));

        let (tx, rx) = tokio::sync::mpsc::channel::<RaftRequest>(READ_AHEAD);
        let (target, sender) = (self.target, self.node_id);
        let reader = tokio::spawn(async move {
            let mut offset = 0u64;
            loop {
                let mut buf = Vec::with_capacity(chunk_size);
                while buf.len() < chunk_size {
                    if data.read_buf(&mut buf).await? == 0 {
                        break;
                    }
                }
                let n = buf.len() as u64;
                let done = offset + n >= end;
                if n == 0 && !done {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("snapshot ended at {offset} of {end} bytes"),
                    ));
                }
                // The chunk's bytes go beside the encoded request, not through postcard.
                let req = InstallSnapshotRequest::<TypeConfig> {
                    vote,
                    meta: meta.clone(),
                    offset,
                    data: Vec::new(),
                    done,
                };
                let payload = postcard::to_allocvec(&req).map_err(std::io::Error::other)?;
                let message = RaftRequest {
                    payload,
                    format: PayloadFormat::PostcardOpenraftV09ChunkApart as i32,
                    target,
                    sender,
                    chunk: buf,
                };
                // A send fails once the call is over (answered early, failed, or cancelled).
                if tx.send(message).await.is_err() || done {
                    return Ok(());
                }
                offset += n;
            }
        });
        let mut request = Request::new(ReceiverStream::new(rx));
        request.set_timeout(ttl);
        self.identity.stamp(&mut request);
        let call = tokio::time::timeout(ttl, client.install_snapshot_stream(request));
        let result = tokio::select! {
            closed = cancel => {
                reader.abort();
                return Err(closed.into());
            }
            r = call => r,
        };
        // A local read failure first: the stream it cut short is not the peer's doing. The reader
        // is done by now, or blocked sending into a stream the call no longer drains (the peer
        // answered early): it is not waited for long.
        let stop_reader = reader.abort_handle();
        match tokio::time::timeout(READER_GRACE, reader).await {
            Ok(Ok(Err(e))) => return Err(read_err(e).into()),
            Ok(Err(e)) if e.is_panic() => {
                return Err(read_err(std::io::Error::other(format!("snapshot reader panicked: {e}"))).into())
            }
            Ok(_) => {}
            Err(_) => stop_reader.abort(),
        }
        let reply = match result {
            Err(_) => return Err(streaming_error(self.timeout(rpc, ttl))),
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    target = self.target,
                    "peer has no InstallSnapshotStream (an older build): snapshots go chunk by chunk"
                );
                self.unstreamed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.target);
                return Err(NetworkError::new(&TransportError::Status {
                    rpc: "InstallSnapshotStream",
                    target: self.target,
                    addr: self.node.addr.clone(),
                    code: status.code(),
                    detail: status_detail(&status),
                })
                .into());
            }
            Ok(Err(status)) => return Err(streaming_error(self.status_error(rpc, ttl, &status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let resp: InstallSnapshotResponse<u64> = self.decode_reply(rpc, reply).map_err(streaming_error)?;
        Ok(SnapshotResponse::new(resp.vote))
    }
}

impl RaftService {
    /// `InstallSnapshotStream`: each chunk to the local Raft in turn.
    pub(super) async fn receive_snapshot_stream(
        &self,
        mut request: Request<tonic::Streaming<RaftRequest>>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = RPCTypes::InstallSnapshot;
        let Some(first) = next_chunk(&mut request).await? else {
            return Err(Status::invalid_argument("InstallSnapshotStream: no chunk"));
        };
        let sender = first.sender;
        self.admit(rpc, &request, sender)?;
        let mut next = Some(first);
        while let Some(message) = next {
            if message.sender != sender {
                return Err(Status::invalid_argument(format!(
                    "InstallSnapshotStream from node {sender}: a chunk from node {}",
                    message.sender
                )));
            }
            let req = self.decode_chunk(rpc, message)?;
            let (vote, done) = (req.vote, req.done);
            match self.raft.install_snapshot(req).await {
                Err(e) => return reply::<InstallSnapshotResponse<u64>, _>(rpc, Err(e)),
                Ok(resp) if done || resp.vote > vote => {
                    return reply::<_, RaftError<u64, InstallSnapshotError>>(rpc, Ok(resp))
                }
                Ok(_) => {}
            }
            next = next_chunk(&mut request).await?;
        }
        Err(Status::invalid_argument(format!(
            "InstallSnapshotStream from node {sender}: the stream ended before its last chunk"
        )))
    }

    /// One chunk of a stream: its bytes beside the encoded request
    /// ([`PayloadFormat::PostcardOpenraftV09ChunkApart`]), or inside it (an earlier build's
    /// sender, [`PayloadFormat::PostcardOpenraftV09`]); never both.
    fn decode_chunk(
        &self,
        rpc: RPCTypes,
        mut message: RaftRequest,
    ) -> Result<InstallSnapshotRequest<TypeConfig>, Status> {
        let apart = message.format() == PayloadFormat::PostcardOpenraftV09ChunkApart;
        let chunk = std::mem::take(&mut message.chunk);
        if apart {
            message.format = PayloadFormat::PostcardOpenraftV09 as i32;
        } else if message.format == PayloadFormat::PostcardOpenraftV09 as i32 && !chunk.is_empty() {
            return Err(Status::invalid_argument(format!(
                "InstallSnapshotStream from node {}: chunk bytes outside the request in payload format {}",
                message.sender, message.format
            )));
        }
        let sender = message.sender;
        let mut req: InstallSnapshotRequest<TypeConfig> = self.decode(rpc, message)?;
        if apart {
            if !req.data.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "InstallSnapshotStream from node {sender}: chunk bytes both inside and outside the request"
                )));
            }
            req.data = chunk;
        }
        Ok(req)
    }
}

/// The stream's next message, waiting at most [`STREAM_IDLE_TIMEOUT`].
async fn next_chunk(request: &mut Request<tonic::Streaming<RaftRequest>>) -> Result<Option<RaftRequest>, Status> {
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, request.get_mut().message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "InstallSnapshotStream: no chunk for {} s",
            STREAM_IDLE_TIMEOUT.as_secs()
        ))),
    }
}
