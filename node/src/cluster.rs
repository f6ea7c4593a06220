//! Cluster mode of a node: write forwarding to the leader and the `cluster` admin commands' output.
//!
//! # Write forwarding
//!
//! [`forward_layer`] wraps the HTTP router of a cluster node. It hands the [`Forwarder`] to the
//! router's handler (a request extension, [`crate::http::ClusterWrites`]), which first admits
//! the request — GUN prefixes, authentication, authorization, the same checks and config as on
//! the leader — and only then, for a write (publish, delete, key rotation) on a node that does
//! not lead, reads its body (within `limits.max_body_bytes`, and with the other bodies held for
//! forwarding within `limits.max_forward_bytes_in_flight`, else 503) and sends the whole request
//! — method, path and query, headers, body — over the Raft port's `seal.raft.v1.Forwarding`
//! service to the leader, which runs it through its own router (authentication included,
//! [`RouterHandler`]) and returns the response; the client gets that response unchanged, plus an
//! `X-Seal-Forwarded-To` header naming the leader. A caller the leader would refuse is refused
//! here, before its body is read, and nothing is forwarded. A read that turns out to need a write
//! (a key minted on first `GET`, an expired timestamp regenerated) answers
//! [`ApiError::NotLeader`] locally and is then sent to the leader the same way. A successful forwarded write is answered once this node has applied the
//! leader's index too (up to [`APPLY_WAIT`]), so a client reads its own writes from the node it
//! wrote through; so is a forwarded read, so that the files it names (by hash) are served here
//! next (a read this node cannot catch up with in time is answered 503 instead). When the leader
//! was handed a write but its answer was lost, the 503 carries `X-Seal-Outcome: unknown`: the
//! write may or may not have happened.
//!
//! # Reads
//!
//! Every node's router holds a [`ReadGate`] ([`crate::http::AppState::reads`], so it also runs
//! on requests forwarded to the leader), which the router's handler runs once it has admitted the
//! request
//! (authentication and authorization first: an anonymous client of a private collection gets
//! its 401 before any of this, and learns nothing of the collection). Before a read of metadata,
//! keys or the changefeed the gate checks the node's freshness:
//!
//! * by default, a cluster node serves from its local state only while that state is within
//!   `raft.max_staleness_ms` of the leader's ([`seal_raft::ReadState::staleness`]); beyond it the
//!   answer is 503 `UNAVAILABLE`, never stale data;
//! * `?consistent` or `X-Seal-Consistency: linearizable` asks for a linearizable read: the leader
//!   confirms its leadership with a quorum (openraft's ReadIndex) and waits until it has applied
//!   the read index; a follower or learner forwards such a read to the leader;
//! * `X-Seal-Min-Version: N` on a metadata `GET` (current file) asks for at least version N of
//!   that role: a follower waits up to [`MIN_VERSION_WAIT`] for its applied state to reach it,
//!   then forwards to the leader; the leader confirms its leadership and answers 404
//!   `METADATA_NOT_FOUND` if it has no version N or above.
//!
//! Every response carries `X-Seal-Applied-Index` and `X-Seal-Last-Contact` (milliseconds since
//! this node last heard from the leader; 0 on the leader; absent before it ever heard from one)
//! of the node whose state produced it: a forwarded request carries the leader's. The index is
//! read after the response was built ([`SealRaft::served_index`]): any node that has applied it
//! serves everything the response showed.
//!
//! While no leader is known (an election), or the leader cannot be reached, or it refuses with
//! `not_leader` (it lost leadership before running the request), the request waits and tries again
//! for up to [`FORWARD_BOUND`], then answers 503 with Notary's `UNAVAILABLE` body. The wait is on
//! Raft's metrics, not a timer: the request goes on the moment this node learns of another leader
//! (or after [`LEADER_CHANGE_WAIT`], to the same one). Nothing is
//! retried once a leader may have run it: a request whose outcome is unknown (the connection broke
//! under it) answers 503 as well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{request::Parts, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use seal_raft::admin::{BoxFuture, ClusterStatus, ForwardedRequest, ForwardedResponse, HttpHeader};
use seal_raft::{ForwardHandler, ReadState, SealRaft, WriteError};
use tower::ServiceExt as _;

use crate::backend::RaftBackend;
use crate::error::{ApiError, NotLeader};
use crate::http::{ClusterReads, ClusterWrites};
use crate::routes::{MetadataSelector, Route as ApiRoute};

/// How long a request waits for a reachable leader before answering 503.
pub const FORWARD_BOUND: Duration = Duration::from_secs(5);
/// How long a forwarding node waits for Raft to name another leader after the one it knew
/// was unreachable or said it no longer leads, before trying that one again.
pub const LEADER_CHANGE_WAIT: Duration = Duration::from_millis(500);
/// Response header naming the leader a request was forwarded to.
pub const FORWARDED_TO: &str = "x-seal-forwarded-to";

/// Response header: the last Raft log index applied by the node that produced the response.
pub const APPLIED_INDEX: &str = "x-seal-applied-index";
/// Response header: milliseconds since that node last heard from the leader (0 on the leader).
pub const LAST_CONTACT: &str = "x-seal-last-contact";
/// Request header asking for a read's consistency; `linearizable` is the one value understood.
pub const CONSISTENCY: &str = "x-seal-consistency";
/// Request header: serve at least this version of the requested role.
pub const MIN_VERSION: &str = "x-seal-min-version";
/// Response header `unknown` on a write's 503 when this node cannot know whether the write
/// happened: it handed the write to the leader and lost the answer.
pub const OUTCOME: &str = "x-seal-outcome";
/// How long a node that has not applied the version a client asked for waits before forwarding.
pub const MIN_VERSION_WAIT: Duration = Duration::from_secs(2);

/// How long a node that forwarded a write waits to apply it before answering (the leader has
/// already committed it), so that a client reading from the same node sees its own write.
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

/// Headers that describe one connection, not the request: never copied across a forward.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "proxy-connection"
    )
}

/// The state of [`forward_layer`].
#[derive(Clone)]
pub struct Forwarder {
    raft: Arc<SealRaft>,
    node_id: u64,
    max_body_bytes: u64,
    bound: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("node_id", &self.node_id).finish()
    }
}

/// Where a request should run.
enum Route {
    /// Here: this node leads.
    Local,
    /// The leader's answer.
    Forwarded(Response),
}

impl Forwarder {
    /// Forwarding for node `node_id` over `raft`, of bodies up to `max_body_bytes` (the handler
    /// reads them within `limits.max_body_bytes` already; a larger one handed over is refused).
    pub fn new(raft: Arc<SealRaft>, node_id: u64, max_body_bytes: u64) -> Forwarder {
        Forwarder {
            raft,
            node_id,
            max_body_bytes,
            bound: FORWARD_BOUND,
        }
    }

    fn unavailable(&self, reason: String) -> Response {
        tracing::warn!(node_id = self.node_id, %reason, "request not forwarded");
        ApiError::Unavailable { reason, source: None }.into_response()
    }

    /// Send `request` to the leader, waiting for one up to the bound. `Local` when this node
    /// leads (and `may_run_here`).
    async fn send(&self, request: ForwardedRequest, may_run_here: bool) -> Route {
        let deadline = Instant::now() + self.bound;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Route::Forwarded(
                    self.unavailable(format!("no reachable Raft leader within {} s", self.bound.as_secs())),
                );
            }
            if self.raft.wait_for_leader(remaining).await.is_none() {
                continue;
            }
            let Some((leader, addr)) = self.raft.leader() else {
                continue;
            };
            if leader == self.node_id {
                if may_run_here {
                    return Route::Local;
                }
                // Led here now, but the local attempt already said "not the leader": let the
                // client retry rather than run it twice.
                return Route::Forwarded(self.unavailable("leadership changed during the request; retry".into()));
            }
            let Some(addr) = addr else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match self.raft.forward(&addr, request.clone()).await {
                Ok(r) if r.not_leader => {
                    // Woken as soon as this node's Raft learns of another leader; the same one
                    // is tried again after a while if none comes (a stale answer).
                    self.raft
                        .wait_for_leader_other_than(leader, remaining.min(LEADER_CHANGE_WAIT))
                        .await;
                }
                Ok(r) => return Route::Forwarded(into_response(r, leader)),
                Err(e) if e.is_unreachable() => {
                    tracing::debug!(leader, %addr, error = %e, "leader unreachable; waiting for a new one");
                    self.raft
                        .wait_for_leader_other_than(leader, remaining.min(LEADER_CHANGE_WAIT))
                        .await;
                }
                Err(e) => {
                    let mut response = self.unavailable(format!(
                        "forwarding to the leader (node {leader}) failed; the request's outcome is unknown: {e}"
                    ));
                    response
                        .headers_mut()
                        .insert(OUTCOME, HeaderValue::from_static("unknown"));
                    return Route::Forwarded(response);
                }
            }
        }
    }
}

/// The proto form of a request's head and `body`.
fn to_forwarded(parts: &axum::http::request::Parts, body: Bytes) -> ForwardedRequest {
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    ForwardedRequest {
        method: parts.method.as_str().to_owned(),
        uri,
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| !hop_by_hop(n.as_str()))
            .map(|(n, v)| HttpHeader {
                name: n.as_str().to_owned(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
        body: body.to_vec(),
        sender: 0,
    }
}

/// The leader's answer as this node's response.
fn into_response(r: ForwardedResponse, leader: u64) -> Response {
    let status = u16::try_from(r.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(Body::from(r.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for h in r.headers {
        if hop_by_hop(&h.name) || h.name == "content-length" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(h.name.as_str()), HeaderValue::from_bytes(&h.value)) {
            headers.append(n, v);
        }
    }
    headers.insert(FORWARDED_TO, HeaderValue::from(leader));
    response
}

/// Axum middleware of a cluster node: see the module documentation.
pub async fn forward_layer(State(fw): State<Forwarder>, request: Request, next: Next) -> Response {
    let mut response = forward_or_run(&fw, request, next).await;
    stamp(&fw.raft, &mut response);
    response
}

async fn forward_or_run(fw: &Forwarder, mut request: Request, next: Next) -> Response {
    // The handler forwards an admitted write through this (see the module documentation).
    let writes: Arc<dyn ClusterWrites> = Arc::new(fw.clone());
    request.extensions_mut().insert(writes);
    if !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    // A read the handler admitted but that needs the leader answers `NotLeader`: send it on.
    let (parts, body) = request.into_parts();
    let head = to_forwarded(&parts, Bytes::new());
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.extensions().get::<NotLeader>().is_none() {
        return response;
    }
    match fw.send(head, false).await {
        Route::Forwarded(r) => applied_here(fw, r, Forwarded::Read).await,
        Route::Local => response,
    }
}

#[async_trait::async_trait]
impl ClusterWrites for Forwarder {
    fn leads(&self) -> bool {
        self.raft.metrics().is_leader
    }

    async fn forward(&self, parts: Parts, body: Bytes) -> Result<Response, (Parts, Bytes)> {
        if body.len() as u64 > self.max_body_bytes {
            return Ok(ApiError::TooLarge {
                limit: "limits.max_body_bytes",
                max: self.max_body_bytes,
            }
            .into_response());
        }
        match self.send(to_forwarded(&parts, body.clone()), true).await {
            Route::Forwarded(r) => Ok(applied_here(self, r, Forwarded::Write).await),
            Route::Local => Err((parts, body)),
        }
    }
}

/// What a forwarded request was, for [`applied_here`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    Read,
    Write,
}

/// Answers a successful forwarded request once this node has applied the leader's index too
/// (up to [`APPLY_WAIT`]): a client then reads its own writes from the node it wrote through,
/// and after a forwarded read (linearizable, or a minimum version) finds on this node the
/// files that answer names (the snapshot and targets a timestamp lists, by hash).
///
/// If this node has not applied that index in time, a write's answer is still relayed (the
/// write happened; hiding it would invite a retry of something done), but a read is answered
/// 503: its timestamp would name files this node cannot serve yet, and the client can simply
/// ask again.
async fn applied_here(fw: &Forwarder, r: Response, what: Forwarded) -> Response {
    let index = r
        .headers()
        .get(APPLIED_INDEX)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let (true, Some(index)) = (r.status().is_success(), index) {
        if !fw.raft.wait_applied(index, APPLY_WAIT).await {
            tracing::warn!(
                index,
                ?what,
                "a forwarded request was answered but its index is not yet applied here"
            );
            if what == Forwarded::Read {
                return ApiError::Unavailable {
                    reason: format!(
                        "node {} has not applied the leader's index {index} within {} ms",
                        fw.node_id,
                        APPLY_WAIT.as_millis()
                    ),
                    source: None,
                }
                .into_response();
            }
        }
    }
    r
}

/// Adds [`APPLIED_INDEX`] and [`LAST_CONTACT`] of `raft` unless the response already has them
/// (a forwarded response carries the leader's). The index is [`SealRaft::served_index`], read
/// after the response was built: a node that has applied it serves everything the response
/// named.
fn stamp(raft: &SealRaft, response: &mut Response) {
    stamp_with(raft.served_index(), raft.read_state(), response);
}

fn stamp_with(served_index: u64, state: ReadState, response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key(APPLIED_INDEX) {
        headers.insert(APPLIED_INDEX, HeaderValue::from(served_index));
    }
    if let Some(contact) = state.last_contact {
        if !headers.contains_key(LAST_CONTACT) {
            let ms = u64::try_from(contact.as_millis()).unwrap_or(u64::MAX);
            headers.insert(LAST_CONTACT, HeaderValue::from(ms));
        }
    }
}

/// Which reads a node may serve from its local state, and the Raft headers of its answers
/// ([`crate::http::ClusterReads`]).
#[derive(Clone)]
pub struct ReadGate {
    backend: Arc<RaftBackend>,
    max_staleness: Option<Duration>,
}

impl std::fmt::Debug for ReadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGate")
            .field("max_staleness", &self.max_staleness)
            .finish()
    }
}

impl ReadGate {
    /// Reads through `backend`; `max_staleness` is the bound of a cluster node (`None`: a single
    /// node, which is its own leader and never stale).
    pub fn new(backend: Arc<RaftBackend>, max_staleness: Option<Duration>) -> ReadGate {
        ReadGate { backend, max_staleness }
    }

    fn raft(&self) -> &SealRaft {
        self.backend.raft()
    }

    /// The staleness bound of a plain read: `Ok` when a cluster node's local state is within
    /// `raft.max_staleness_ms` of the leader's (always on a single node), else why not.
    fn within_bound(&self) -> Result<(), String> {
        match self.max_staleness {
            Some(bound) => fresh_enough(self.raft().node_id(), &self.raft().read_state(), bound),
            None => Ok(()),
        }
    }

    /// Confirm leadership with a quorum and apply up to the read index; `NotLeader` on a follower
    /// (the forwarding layer then sends the request to the leader).
    async fn linearize(&self) -> Result<(), ApiError> {
        let m = self.raft().metrics();
        if !m.is_leader {
            return Err(ApiError::NotLeader { leader: m.leader });
        }
        match self.raft().ensure_linearizable(FORWARD_BOUND).await {
            Ok(_) => Ok(()),
            Err(WriteError::ForwardToLeader { leader_id, .. }) => Err(ApiError::NotLeader { leader: leader_id }),
            Err(e) => Err(ApiError::Unavailable {
                reason: format!("linearizable read: {e}"),
                source: Some(crate::error::Cause::new(e)),
            }),
        }
    }

    /// Wait until at least version `min` of (gun, role) is applied here; see the module
    /// documentation.
    async fn wait_for_version(&self, gun: &str, role: &str, min: u64, mut linearized: bool) -> Result<(), ApiError> {
        let deadline = Instant::now() + MIN_VERSION_WAIT;
        loop {
            if self.backend.current_version(gun, role)? >= Some(min) {
                return Ok(());
            }
            let m = self.raft().metrics();
            if m.is_leader {
                if linearized {
                    // The leader has applied everything committed: there is no version `min`.
                    return Err(ApiError::MetadataNotFound);
                }
                self.linearize().await?;
                linearized = true;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::NotLeader { leader: m.leader });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait::async_trait]
impl ClusterReads for ReadGate {
    async fn before_read(
        &self,
        route: &ApiRoute,
        query: Option<&str>,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), ApiError> {
        let linearizable = wants_linearizable(query, headers);
        let min_version = min_version(headers)?;
        if linearizable {
            self.linearize().await?;
        } else {
            self.within_bound()
                .map_err(|reason| ApiError::Unavailable { reason, source: None })?;
        }
        if let (
            Some(min),
            ApiRoute::GetMetadata {
                gun,
                role,
                role_valid: true,
                selector: MetadataSelector::Current,
            },
        ) = (min_version, route)
        {
            self.wait_for_version(gun, role, min, linearizable).await?;
        }
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        match self.max_staleness {
            Some(_) => self.within_bound(),
            None => {
                let m = self.raft().metrics();
                if !m.is_leader {
                    return Err(format!("node {} is not the Raft leader", m.node_id));
                }
                self.backend
                    .current_version("_health", "root")
                    .map(|_| ())
                    .map_err(|e| format!("the store cannot be read: {e}"))
            }
        }
    }

    fn stamp(&self, response: &mut Response) {
        stamp(self.raft(), response);
    }
}

/// Whether a read asks to be linearizable: a `consistent` query parameter (any value) or
/// `X-Seal-Consistency: linearizable`.
fn wants_linearizable(query: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    let in_query = query
        .unwrap_or("")
        .split(['&', ';'])
        .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == "consistent");
    in_query
        || headers
            .get(CONSISTENCY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("linearizable"))
}

/// The [`MIN_VERSION`] header, if present.
fn min_version(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(MIN_VERSION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidParameters {
            detail: Some(format!("{MIN_VERSION} must be a non-negative integer, not {value:?}")),
        })
}

/// Whether node `node_id` in `state` may serve reads from its local state under `bound`; the
/// reason for a 503 otherwise.
fn fresh_enough(node_id: u64, state: &ReadState, bound: Duration) -> Result<(), String> {
    let ms = |d: Duration| d.as_millis();
    match state.staleness {
        Some(age) if age <= bound => Ok(()),
        Some(age) => Err(format!(
            "node {node_id} was last in sync with the Raft leader {} ms ago, beyond raft.max_staleness_ms = {}",
            ms(age),
            ms(bound)
        )),
        None if state.is_leader => Err(format!(
            "node {node_id} leads but has not yet confirmed its leadership and applied its term's first entry"
        )),
        None => Err(match state.last_contact {
            Some(c) => format!(
                "node {node_id} has not caught up with the Raft leader (last contact {} ms ago)",
                ms(c)
            ),
            None => format!("node {node_id} has not heard from a Raft leader"),
        }),
    }
}

/// Runs requests forwarded to this node (the leader) through its HTTP router.
#[derive(Clone)]
pub struct RouterHandler {
    router: Router,
}

impl RouterHandler {
    /// A handler over `router` (the node's router without [`forward_layer`]).
    pub fn new(router: Router) -> RouterHandler {
        RouterHandler { router }
    }

    async fn run(&self, req: ForwardedRequest) -> Result<ForwardedResponse, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::MalformedUpload {
            reason: format!("forwarded request: {e}"),
        };
        let mut builder = Request::builder().method(req.method.as_str()).uri(req.uri.as_str());
        for h in &req.headers {
            builder = builder.header(h.name.as_str(), h.value.as_slice());
        }
        let request = builder.body(Body::from(req.body)).map_err(|e| bad(&e))?;
        let response = match self.router.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| ApiError::unknown(format!("reading the response to a forwarded request: {e}"), e))?;
        Ok(ForwardedResponse {
            not_leader: false,
            status: u32::from(parts.status.as_u16()),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| HttpHeader {
                    name: n.as_str().to_owned(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            body: body.to_vec(),
        })
    }
}

impl ForwardHandler for RouterHandler {
    fn handle(&self, request: ForwardedRequest) -> BoxFuture<'_, ForwardedResponse> {
        Box::pin(async move {
            match self.run(request).await {
                Ok(r) => r,
                Err(e) => {
                    let status = u32::from(e.status().as_u16());
                    let response = e.into_response();
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap_or_default();
                    ForwardedResponse {
                        not_leader: false,
                        status,
                        headers: vec![HttpHeader {
                            name: "content-type".into(),
                            value: b"application/json".to_vec(),
                        }],
                        body: body.to_vec(),
                    }
                }
            }
        })
    }
}

/// How an operator's command reaches a running cluster: one node's Raft address and an identity
/// the cluster CA signed (`seal-node cluster`, `backup`, `import-notary`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterAccess {
    /// The Raft address (`host:port`) of a node of the running cluster.
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// The cluster CA certificate (PEM).
    #[arg(long, global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// A certificate signed by the cluster CA (PEM).
    #[arg(long, global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true)]
    pub key: Option<std::path::PathBuf>,
}

impl ClusterAccess {
    /// The address and TLS files, when all four were given.
    pub fn given(self) -> Option<(String, seal_raft::ClusterTls)> {
        match (self.addr, self.ca, self.cert, self.key) {
            (Some(addr), Some(ca_file), Some(cert_file), Some(key_file)) => Some((
                addr,
                seal_raft::ClusterTls {
                    ca_file,
                    cert_file,
                    key_file,
                },
            )),
            _ => None,
        }
    }
}

/// `seal-node cluster status` output: the leader and term, then one row per member. A status
/// carrying a state digest (`cluster status --digest`) has two more lines before the rows:
/// `state digest: <hex>` and `state digest index: <log index>` (`-` when nothing was applied).
pub fn format_status(s: &ClusterStatus) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut out = format!(
        "answered by: node {}\nleader: {}\nterm: {}\nlast log index: {}\napplied index: {}\n\
         snapshot index: {}\npurged index: {}\n",
        s.answered_by,
        s.leader_id.map_or_else(|| "none".to_owned(), |l| format!("node {l}")),
        s.term,
        opt(s.last_log_index),
        opt(s.applied_index),
        opt(s.snapshot_index),
        opt(s.purged_index),
    );
    out.push_str(&format!("cluster id: {}\n", s.cluster_id.as_deref().unwrap_or("none")));
    if let Some(digest) = &s.state_digest {
        out.push_str(&format!(
            "state digest: {digest}\nstate digest index: {}\n",
            opt(s.state_digest_applied_index)
        ));
    }
    out.push_str(&format!(
        "{:<6} {:<24} {:<8} {:<8} {:<10} {:<6}\n",
        "ID", "RAFT ADDR", "ROLE", "LEADER", "MATCHED", "LAG"
    ));
    for m in &s.members {
        out.push_str(&format!(
            "{:<6} {:<24} {:<8} {:<8} {:<10} {:<6}\n",
            m.id,
            m.raft_addr,
            if m.voter { "voter" } else { "learner" },
            if s.leader_id == Some(m.id) { "*" } else { "" },
            opt(m.matched_index),
            opt(m.lag),
        ));
    }
    if !s.dependencies.is_empty() {
        out.push_str(&format!(
            "signers as node {} sees them:\n{:<32} {:<9} DETAIL\n",
            s.answered_by, "SIGNER", "STATE"
        ));
        for d in s.dependencies.iter().filter(|d| d.kind == "signer") {
            out.push_str(&format!("{:<32} {:<9} {}\n", d.name, d.state, d.detail));
        }
    }
    out
}

/// `seal-node cluster status --json`: what [`format_status`] prints, as one JSON object whose
/// field names are stable (documented in `docs/cluster.md`). Every field is always present;
/// unknown numbers are `null`, and so are `state_digest` and `state_digest_applied_index`
/// without `--digest`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusJson {
    /// The node that answered.
    pub answered_by: u64,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its last applied index.
    pub applied_index: Option<u64>,
    /// Last index its snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Last index purged from its log.
    pub purged_index: Option<u64>,
    /// Hex sha256 of its whole state machine (`--digest` only).
    pub state_digest: Option<String>,
    /// The applied index the digest covers (`--digest` only).
    pub state_digest_applied_index: Option<u64>,
    /// Every member, in id order.
    pub members: Vec<MemberJson>,
    /// The remote signers as the answering node sees them (empty with an in-process signer).
    pub signers: Vec<SignerJson>,
}

/// One member in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberJson {
    /// Node id.
    pub id: u64,
    /// Raft address.
    pub raft_addr: String,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// Whether it is the leader.
    pub leader: bool,
    /// Last index the leader knows it holds (leader answers only).
    pub matched_index: Option<u64>,
    /// Entries behind the leader's last log index (leader answers only).
    pub lag: Option<u64>,
}

/// One signer in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignerJson {
    /// `host:port`.
    pub name: String,
    /// `up`, `unknown`, `degraded` or `down`.
    pub state: String,
    /// Why it is degraded or down.
    pub detail: String,
}

impl From<&ClusterStatus> for StatusJson {
    fn from(s: &ClusterStatus) -> StatusJson {
        StatusJson {
            answered_by: s.answered_by,
            leader_id: s.leader_id,
            term: s.term,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            state_digest: s.state_digest.clone(),
            state_digest_applied_index: s.state_digest.as_ref().and(s.state_digest_applied_index),
            members: s
                .members
                .iter()
                .map(|m| MemberJson {
                    id: m.id,
                    raft_addr: m.raft_addr.clone(),
                    role: if m.voter { "voter" } else { "learner" },
                    leader: s.leader_id == Some(m.id),
                    matched_index: m.matched_index,
                    lag: m.lag,
                })
                .collect(),
            signers: s
                .dependencies
                .iter()
                .filter(|d| d.kind == "signer")
                .map(|d| SignerJson {
                    name: d.name.clone(),
                    state: d.state.clone(),
                    detail: d.detail.clone(),
                })
                .collect(),
        }
    }
}

/// [`StatusJson`] of `s` as one line of JSON.
pub fn format_status_json(s: &ClusterStatus) -> String {
    serde_json::to_string(&StatusJson::from(s)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The remote signers as a cluster status reports them.
pub fn signer_statuses(signer: &crate::remote_signer::RemoteSigner) -> Vec<seal_raft::admin::DependencyStatus> {
    signer
        .statuses()
        .into_iter()
        .map(|(name, health)| seal_raft::admin::DependencyStatus {
            kind: "signer".into(),
            name,
            state: health.state().into(),
            detail: health.detail(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_raft::admin::MemberState;

    #[test]
    fn status_table_names_every_member_and_the_leader() {
        let s = ClusterStatus {
            answered_by: 2,
            leader_id: Some(2),
            term: 3,
            last_log_index: Some(10),
            applied_index: Some(10),
            snapshot_index: Some(8),
            purged_index: None,
            members: vec![
                MemberState {
                    id: 1,
                    raft_addr: "127.0.0.1:7001".into(),
                    voter: true,
                    matched_index: Some(9),
                    lag: Some(1),
                },
                MemberState {
                    id: 2,
                    raft_addr: "127.0.0.1:7002".into(),
                    voter: true,
                    matched_index: Some(10),
                    lag: Some(0),
                },
                MemberState {
                    id: 4,
                    raft_addr: "127.0.0.1:7004".into(),
                    voter: false,
                    matched_index: None,
                    lag: None,
                },
            ],
            state_digest: None,
            state_digest_applied_index: None,
            dependencies: Vec::new(),
            cluster_id: Some("seal-abc".into()),
            holds_data: true,
        };
        let text = format_status(&s);
        assert!(text.contains("leader: node 2"), "{text}");
        assert!(
            text.contains("snapshot index: 8\npurged index: -\ncluster id: seal-abc\nID "),
            "{text}"
        );
        assert!(!text.contains("digest"), "{text}");
        let rows: Vec<&str> = text.lines().skip(9).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("1 ") && rows[0].contains("voter") && rows[0].contains(" 1"));
        assert!(rows[1].contains('*'));
        assert!(rows[2].contains("learner") && rows[2].contains('-'));

        // With a digest (`cluster status --digest`): two more lines before the table.
        let with_digest = ClusterStatus {
            state_digest: Some("ab01".into()),
            state_digest_applied_index: Some(10),
            ..s.clone()
        };
        let text = format_status(&with_digest);
        assert!(
            text.contains("cluster id: seal-abc\nstate digest: ab01\nstate digest index: 10\nID "),
            "{text}"
        );
        assert_eq!(text.lines().skip(11).count(), 3, "{text}");
        let never_applied = ClusterStatus {
            state_digest_applied_index: None,
            ..with_digest
        };
        assert!(format_status(&never_applied).contains("state digest index: -\n"));

        // With the answering node's signers: a table after the members.
        let with_signers = ClusterStatus {
            dependencies: vec![
                seal_raft::admin::DependencyStatus {
                    kind: "signer".into(),
                    name: "signer-1:7899".into(),
                    state: "down".into(),
                    detail: "connection refused (for 2.0s)".into(),
                },
                seal_raft::admin::DependencyStatus {
                    kind: "signer".into(),
                    name: "signer-2:7899".into(),
                    state: "up".into(),
                    detail: String::new(),
                },
            ],
            ..s
        };
        let text = format_status(&with_signers);
        let tail: Vec<&str> = text.lines().skip(12).collect();
        assert_eq!(tail[0], "signers as node 2 sees them:", "{text}");
        assert!(tail[2].starts_with("signer-1:7899") && tail[2].contains("down") && tail[2].contains("refused"));
        assert!(tail[3].starts_with("signer-2:7899") && tail[3].contains("up"), "{text}");

        // The same as JSON, every field present.
        let json: serde_json::Value = serde_json::from_str(&format_status_json(&with_signers)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "answered_by": 2, "leader_id": 2, "term": 3, "last_log_index": 10, "applied_index": 10,
                "snapshot_index": 8, "purged_index": null, "state_digest": null,
                "state_digest_applied_index": null,
                "members": [
                    {"id": 1, "raft_addr": "127.0.0.1:7001", "role": "voter", "leader": false,
                     "matched_index": 9, "lag": 1},
                    {"id": 2, "raft_addr": "127.0.0.1:7002", "role": "voter", "leader": true,
                     "matched_index": 10, "lag": 0},
                    {"id": 4, "raft_addr": "127.0.0.1:7004", "role": "learner", "leader": false,
                     "matched_index": null, "lag": null},
                ],
                "signers": [
                    {"name": "signer-1:7899", "state": "down", "detail": "connection refused (for 2.0s)"},
                    {"name": "signer-2:7899", "state": "up", "detail": ""},
                ],
            })
        );
    }

    #[test]
    fn linearizable_is_asked_by_query_or_header() {
        let none = axum::http::HeaderMap::new();
        assert!(wants_linearizable(Some("consistent"), &none));
        assert!(wants_linearizable(Some("a=1&consistent=true"), &none));
        assert!(!wants_linearizable(Some("inconsistent=1"), &none));
        assert!(!wants_linearizable(None, &none));
        let mut h = axum::http::HeaderMap::new();
        h.insert(CONSISTENCY, HeaderValue::from_static("Linearizable"));
        assert!(wants_linearizable(None, &h));
        h.insert(CONSISTENCY, HeaderValue::from_static("stale"));
        assert!(!wants_linearizable(None, &h));
    }

    #[test]
    fn min_version_header_must_be_a_number() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(min_version(&h).unwrap(), None);
        h.insert(MIN_VERSION, HeaderValue::from_static(" 7 "));
        assert_eq!(min_version(&h).unwrap(), Some(7));
        h.insert(MIN_VERSION, HeaderValue::from_static("-1"));
        assert!(matches!(min_version(&h), Err(ApiError::InvalidParameters { .. })));
    }

    #[test]
    fn freshness_within_the_bound_only() {
        let bound = Duration::from_secs(5);
        let state = |is_leader, staleness: Option<u64>, contact: Option<u64>| ReadState {
            is_leader,
            applied_index: Some(3),
            last_contact: contact.map(Duration::from_millis),
            staleness: staleness.map(Duration::from_millis),
        };
        assert!(fresh_enough(1, &state(false, Some(200), Some(100)), bound).is_ok());
        assert!(fresh_enough(1, &state(true, Some(5000), Some(0)), bound).is_ok());
        let e = fresh_enough(2, &state(false, Some(5001), Some(5001)), bound).unwrap_err();
        assert!(e.contains("node 2") && e.contains("5001 ms"), "{e}");
        let e = fresh_enough(2, &state(false, None, Some(40)), bound).unwrap_err();
        assert!(e.contains("not caught up"), "{e}");
        let e = fresh_enough(2, &state(false, None, None), bound).unwrap_err();
        assert!(e.contains("not heard"), "{e}");
        assert!(fresh_enough(2, &state(true, None, Some(0)), bound).is_err());
    }

    /// The leader's answer to a forwarded request, stamped with `index`.
    fn answered_at(index: u64) -> Response {
        let mut r = Response::new(Body::from("the leader's answer"));
        r.headers_mut().insert(APPLIED_INDEX, HeaderValue::from(index));
        r
    }

    #[tokio::test]
    async fn a_forwarded_read_not_caught_up_with_in_time_is_503_and_a_write_is_relayed() {
        let dir = tempfile::tempdir().unwrap();
        let config = seal_raft::RaftConfig::new(1, "127.0.0.1:1", dir.path());
        let raft = Arc::new(SealRaft::open(config).await.unwrap());
        raft.wait_until_leader(Duration::from_secs(10)).await.unwrap();
        let fw = Forwarder::new(raft.clone(), 1, 1024);
        let here = raft.served_index();

        // An index this node has applied: relayed at once, read or write.
        for what in [Forwarded::Read, Forwarded::Write] {
            let started = Instant::now();
            let r = applied_here(&fw, answered_at(here), what).await;
            assert_eq!(r.status(), StatusCode::OK, "{what:?}");
            assert!(started.elapsed() < APPLY_WAIT, "{what:?}");
        }

        // An index this node never reaches: after the wait, a read is refused with Notary's
        // 503 body, since its answer would name files this node cannot serve yet…
        let started = Instant::now();
        let r = applied_here(&fw, answered_at(here + 1_000), Forwarded::Read).await;
        assert!(started.elapsed() >= APPLY_WAIT);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("UNAVAILABLE") && body.contains("node 1"), "{body}");
        // …while a write, which has happened, is relayed as the leader answered.
        let r = applied_here(&fw, answered_at(here + 1_000), Forwarded::Write).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], b"the leader's answer");
        // A refusal from the leader is relayed as it is: nothing to wait for.
        let mut refused = answered_at(here + 1_000);
        *refused.status_mut() = StatusCode::NOT_FOUND;
        let started = Instant::now();
        let r = applied_here(&fw, refused, Forwarded::Read).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(started.elapsed() < APPLY_WAIT);
    }

    #[test]
    fn stamp_keeps_the_forwarded_values() {
        let state = ReadState {
            is_leader: false,
            applied_index: Some(9),
            last_contact: Some(Duration::from_millis(120)),
            staleness: Some(Duration::from_millis(120)),
        };
        let mut r = Response::new(Body::empty());
        stamp_with(9, state, &mut r);
        assert_eq!(r.headers()[APPLIED_INDEX], "9");
        assert_eq!(r.headers()[LAST_CONTACT], "120");
        let mut forwarded = Response::new(Body::empty());
        forwarded.headers_mut().insert(APPLIED_INDEX, HeaderValue::from(12u64));
        forwarded.headers_mut().insert(LAST_CONTACT, HeaderValue::from(0u64));
        stamp_with(9, state, &mut forwarded);
        assert_eq!(forwarded.headers()[APPLIED_INDEX], "12");
        assert_eq!(forwarded.headers()[LAST_CONTACT], "0");
        let mut never = Response::new(Body::empty());
        stamp_with(
            0,
            ReadState {
                last_contact: None,
                applied_index: None,
                ..state
            },
            &mut never,
        );
        assert_eq!(never.headers()[APPLIED_INDEX], "0");
        assert!(!never.headers().contains_key(LAST_CONTACT));
    }

    #[test]
    fn hop_by_hop_headers_are_not_copied() {
        assert!(hop_by_hop("transfer-encoding"));
        assert!(!hop_by_hop("authorization"));
        assert!(!hop_by_hop("content-type"));
    }
}
