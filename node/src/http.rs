//! The node's HTTP app: Notary v0.7.0's API in front of a [`Backend`].
//!
//! Every request goes to one fallback handler that parses the path with
//! [`routes::parse`], applies the GUN prefix filter and the auth hook, reads
//! and limits upload bodies, calls the backend, sets headers, records metrics
//! and maps errors through [`ApiError`]. The HTTP layer itself holds no lock:
//! [`AppState`] is immutable and shared.
//!
//! # Admission first
//!
//! The handler *admits* a request — GUN prefixes, then authentication and
//! authorization — before any work that depends on the collection or costs
//! the cluster anything. The cluster's work is therefore left to the handler,
//! which runs it only on an admitted request: [`ClusterReads`] (the staleness
//! bound, linearizable reads, `X-Seal-Min-Version` waits), held in
//! [`AppState::reads`], and [`ClusterWrites`] (forwarding a write to the Raft
//! leader), a request extension that `cluster::forward_layer` adds. An
//! anonymous client thus gets the same 401 for a collection that exists and
//! one that does not, starts no quorum round and no wait, and a follower reads
//! no body of, and forwards nothing for, a caller the leader would refuse.
//! Bodies read to be forwarded are bounded together by
//! `limits.max_forward_bytes_in_flight` ([`ForwardBudget`]); past it the
//! answer is 503 `UNAVAILABLE`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use time::OffsetDateTime;

use crate::cache::CachePolicy;
use crate::config::{NodeConfig, UploadLimits};
use crate::error::{go_escape, ApiError};
use crate::metrics::{Metrics, METRICS_CONTENT_TYPE};
use crate::multipart::{parse_upload, RoleFile};
use crate::routes::{self, KeyRole, MetadataSelector, Route};
use crate::signer::PublicKeyInfo;
use seal_tuf::tuf1::is_valid_repository_name;

/// Content type of served metadata and keys.
pub const METADATA_CONTENT_TYPE: &str = "application/json";
/// Notary's page size when `records=0`.
pub const DEFAULT_CHANGEFEED_RECORDS: u32 = 100;

/// One stored metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMetadata {
    /// The exact bytes to serve.
    pub bytes: Bytes,
    /// When it was stored (for `Last-Modified`), if known.
    pub last_modified: Option<OffsetDateTime>,
}

/// Whether this node may serve reads now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Serve.
    Ready,
    /// Answer 503 (for example: no known leader, or beyond the staleness bound).
    Unavailable {
        /// Why, sent to the client as detail.
        reason: String,
    },
}

/// A changefeed request, parsed and defaulted as Notary does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangefeedQuery {
    /// One collection, or `None` for all.
    pub gun: Option<String>,
    /// `change_id`: the record id to page from (exclusive); `-1` means the
    /// end of the feed; default 0.
    pub change_id: i64,
    /// How many records at most (`records`, with 0 meaning 100).
    pub records: u32,
    /// `true` when `records` was negative: newest first, going backwards
    /// from `change_id`.
    pub reversed: bool,
}

/// The kind of a changefeed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeCategory {
    /// A timestamp was written.
    Update,
    /// The collection was deleted.
    Deletion,
}

/// One changefeed record (one per timestamp write, or a deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The record's id, increasing.
    pub id: u64,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// The collection.
    pub gun: String,
    /// The timestamp's version (0 for a deletion).
    pub version: u64,
    /// Hex sha256 of the timestamp ("" for a deletion).
    pub sha256: String,
    /// Update or deletion.
    pub category: ChangeCategory,
}

/// What the HTTP layer needs from the store, the TUF core and Raft.
///
/// Read methods (`get_*`, `changefeed`, `health`, `readiness`) must not wait
/// on any lock that a write holds: they serve the locally applied state.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Whether reads may be served now; checked before every read route.
    fn readiness(&self) -> Readiness;

    /// The current file of `role` (for `timestamp`, regenerated if expired).
    async fn get_current(&self, gun: &str, role: &str) -> Result<Option<StoredMetadata>, ApiError>;

    /// The file of `role` whose sha256 is `sha256_hex` (lowercase).
    async fn get_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
    ) -> Result<Option<StoredMetadata>, ApiError>;

    /// Version `version` of `role`.
    async fn get_by_version(&self, gun: &str, role: &str, version: u64) -> Result<Option<StoredMetadata>, ApiError>;

    /// Validates and commits an upload (answer after commit and apply).
    async fn publish(&self, gun: &str, files: Vec<RoleFile>) -> Result<(), ApiError>;

    /// Deletes a collection (succeeds for an unknown GUN).
    async fn delete_gun(&self, gun: &str) -> Result<(), ApiError>;

    /// The server-held public key of `role` (minting one if needed).
    async fn get_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError>;

    /// Mints a new pending key for `role`.
    async fn rotate_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError>;

    /// A TUF 1.0 repository's metadata file named `file` (`3.root.json`, `timestamp.json`, …)
    /// and whether it was named by version (immutable); `None` when the repository, role or
    /// version is unknown. A timestamp is regenerated first if expired.
    async fn tuf1_metadata(&self, repository: &str, file: &str) -> Result<Option<(StoredMetadata, bool)>, ApiError> {
        let _ = (repository, file);
        Ok(None)
    }

    /// Validates the metadata files (role → bytes) uploaded to a TUF 1.0 repository (the first
    /// upload, with root, creates it) and commits them with the next snapshot and timestamp.
    async fn tuf1_upload(&self, repository: &str, files: BTreeMap<String, Vec<u8>>) -> Result<(), ApiError> {
        let _ = (repository, files);
        Err(ApiError::NoStorage)
    }

    /// A TUF 1.0 repository's online keys as `crate::tuf1::keys_body` writes them, made first
    /// when `create`; `None` when there are none and `create` is false.
    async fn tuf1_keys(&self, repository: &str, create: bool) -> Result<Option<Vec<u8>>, ApiError> {
        let _ = (repository, create);
        Ok(None)
    }

    /// Has the signer make a new online key for `role` of a TUF 1.0 repository, kept beside
    /// the ones held (the service signs with whichever keys root lists); the keys as
    /// `crate::tuf1::keys_body` writes them.
    async fn tuf1_rotate_key(&self, repository: &str, role: KeyRole) -> Result<Vec<u8>, ApiError> {
        let _ = (repository, role);
        Err(ApiError::NoStorage)
    }

    /// The names of TUF 1.0 repositories (once their first upload committed), in order, at most
    /// `limit`, after `after` when given.
    async fn tuf1_list(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, ApiError> {
        let _ = (after, limit);
        Ok(Vec::new())
    }

    /// Changefeed records matching `query`.
    async fn changefeed(&self, query: &ChangefeedQuery) -> Result<Vec<ChangeRecord>, ApiError>;

    /// The node's checks: what fails and what is degraded.
    async fn health(&self) -> Health;

    /// Brings the gauges that describe this node's state up to date, before `/metrics` is
    /// encoded.
    fn export_metrics(&self) {}
}

/// The outcome of the health checks, each named as Notary names it.
///
/// A failing check (no Raft leader, storage unreadable) makes the node
/// unhealthy: 503 with the failures. A degraded check (`Trust operational`:
/// the signer is down, so reads work and writes answer 503) is reported with
/// 200, as Notary treats an unreachable signer: a load balancer keeps the
/// node for reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Failing checks and their errors.
    pub failing: BTreeMap<String, String>,
    /// Degraded checks and their errors.
    pub degraded: BTreeMap<String, String>,
}

/// The hook where authentication plugs in: `auth::TokenAuth` when `auth.type = "token"`.
pub trait AuthHook: Send + Sync + 'static {
    /// Allows the request, or answers with an error (typically 401).
    fn check(&self, route: &Route, headers: &HeaderMap) -> Result<(), ApiError>;
}

/// A node's work before a read (`cluster::ReadGate`): the staleness bound, a linearizable read,
/// an `X-Seal-Min-Version` wait; and the Raft headers of every answer. Held in
/// [`AppState::reads`] (not a middleware: a layer per request cost its boxing and a request
/// extension); the handler runs it on admitted reads only.
#[async_trait]
pub trait ClusterReads: Send + Sync + 'static {
    /// `Ok` to serve the read of `route` here; otherwise the answer (`NotLeader`: the cluster
    /// layer sends the read on to the leader).
    async fn before_read(&self, route: &Route, query: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError>;

    /// `Ok` when a plain read (no consistency or version asked for) would be served here now;
    /// otherwise why not. `GET /_seal/ready` answers with it.
    fn ready(&self) -> Result<(), String>;

    /// Headers every answer carries (`X-Seal-Applied-Index`, `X-Seal-Last-Contact`), unless it
    /// already has them (an answer forwarded from the leader keeps the leader's).
    fn stamp(&self, response: &mut Response);
}

/// A cluster node's forwarding of writes to the Raft leader (`cluster::Forwarder`).
/// `cluster::forward_layer` hands it to the handler as a request extension
/// (`Arc<dyn ClusterWrites>`); the handler reads the body and forwards admitted writes only.
#[async_trait]
pub trait ClusterWrites: Send + Sync + 'static {
    /// Whether this node leads, so that writes run here.
    fn leads(&self) -> bool;
    /// The leader's answer to the write `parts` with `body`, or the request back when it is to
    /// run here after all (this node was elected meanwhile).
    async fn forward(&self, parts: Parts, body: Bytes) -> Result<Response, (Parts, Bytes)>;
}

/// The bytes of request bodies a node holds to forward them to the leader, bounded by
/// `limits.max_forward_bytes_in_flight`. Shared by every request of one node; taking never waits.
#[derive(Debug, Clone)]
pub struct ForwardBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    max: u64,
    used: AtomicU64,
}

impl ForwardBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> ForwardBudget {
        ForwardBudget {
            inner: Arc::new(BudgetInner {
                max,
                used: AtomicU64::new(0),
            }),
        }
    }

    /// The bound, in bytes.
    pub fn max(&self) -> u64 {
        self.inner.max
    }

    /// Bytes taken now.
    pub fn in_use(&self) -> u64 {
        self.inner.used.load(Ordering::SeqCst)
    }

    /// Takes `n` bytes, or `None` when that would pass the bound.
    fn take(&self, n: u64) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.grow(n).then_some(reservation)
    }

    fn full(&self) -> ApiError {
        ApiError::Unavailable {
            reason: format!(
                "request bodies being forwarded to the Raft leader fill limits.max_forward_bytes_in_flight ({} bytes); retry",
                self.inner.max
            ),
            source: None,
        }
    }
}

/// Bytes taken from a [`ForwardBudget`], given back when dropped.
#[derive(Debug)]
struct Reservation {
    budget: ForwardBudget,
    bytes: u64,
}

impl Reservation {
    /// Takes `n` more bytes; `false` (and nothing taken) when that would pass the bound.
    fn grow(&mut self, n: u64) -> bool {
        let inner = &self.budget.inner;
        let taken = inner
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(n).filter(|total| *total <= inner.max)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.inner.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Everything handlers share; immutable once built.
#[derive(Clone)]
pub struct AppState {
    /// The store, TUF core and Raft behind the API.
    pub backend: Arc<dyn Backend>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Upload limits.
    pub limits: UploadLimits,
    /// Cache policy of current files.
    pub current_cache: CachePolicy,
    /// Cache policy of checksum- and version-named files.
    pub consistent_cache: CachePolicy,
    /// `repositories.gun_prefixes`.
    pub gun_prefixes: Arc<Vec<String>>,
    /// Authentication, when configured.
    pub auth: Option<Arc<dyn AuthHook>>,
    /// Bodies read to be forwarded to the Raft leader (`limits.max_forward_bytes_in_flight`).
    pub forward_budget: ForwardBudget,
    /// Uploads parsed at once, on the blocking pool (one per core).
    pub parse_slots: Arc<tokio::sync::Semaphore>,
    /// Whether this listener serves `GET /metrics` (`metrics.main_listener`).
    pub serve_metrics: bool,
    /// The node's read checks and Raft headers (`cluster::ReadGate`); `None`: none (tests, the
    /// metrics listener).
    pub reads: Option<Arc<dyn ClusterReads>>,
}

fn parse_slots() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ))
}

impl AppState {
    /// Builds the state from the node's config.
    pub fn from_config(config: &NodeConfig, backend: Arc<dyn Backend>, metrics: Metrics) -> Self {
        AppState {
            backend,
            metrics,
            limits: config.limits,
            current_cache: CachePolicy::current(config.caching.current_metadata),
            consistent_cache: CachePolicy::consistent(config.caching.consistent_metadata),
            gun_prefixes: Arc::new(config.repositories.gun_prefixes.clone()),
            auth: None,
            forward_budget: ForwardBudget::new(config.limits.max_forward_bytes_in_flight),
            parse_slots: parse_slots(),
            serve_metrics: config.metrics.main_listener,
            reads: None,
        }
    }

    /// Builds the state with Notary's defaults (no prefixes, default limits).
    pub fn new(backend: Arc<dyn Backend>, metrics: Metrics) -> Self {
        AppState {
            backend,
            metrics,
            limits: UploadLimits::default(),
            current_cache: CachePolicy::current(crate::cache::DEFAULT_CURRENT_MAX_AGE),
            consistent_cache: CachePolicy::consistent(crate::cache::DEFAULT_CONSISTENT_MAX_AGE),
            gun_prefixes: Arc::new(Vec::new()),
            auth: None,
            forward_budget: ForwardBudget::new(UploadLimits::default().max_forward_bytes_in_flight),
            parse_slots: parse_slots(),
            serve_metrics: true,
            reads: None,
        }
    }
}

/// The axum app serving Notary's API.
pub fn router(state: AppState) -> Router {
    // Behind an Arc: axum clones the state for every request, and a clone of `AppState` (the
    // metrics' many counters, the backend, the limits) was a fifth of a read's CPU.
    Router::new().fallback(dispatch).with_state(Arc::new(state))
}

/// The app of the metrics listener (`metrics.addr`): `GET /metrics` and nothing else (404).
pub fn metrics_router(state: AppState) -> Router {
    Router::new().fallback(metrics_only).with_state(Arc::new(state))
}

async fn metrics_only(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if request.method() != axum::http::Method::GET || request.uri().path() != "/metrics" {
        return not_found().into_response();
    }
    match encode_metrics(&state) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// `GET /metrics`: the gauges brought up to date, then every metric in the text format.
fn encode_metrics(state: &AppState) -> Result<Response, ApiError> {
    state.backend.export_metrics();
    let body = state
        .metrics
        .encode()
        .map_err(|e| ApiError::unknown(format!("encoding metrics: {e}"), e))?;
    Ok(bytes_response(StatusCode::OK, METRICS_CONTENT_TYPE, body.into()))
}

async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let raw_path = request.uri().path().to_string();
    let route = match percent_decode(&raw_path) {
        Some(path) => routes::parse(&method, &path),
        None => Route::NotFound,
    };
    let operation = route.operation();
    let request_len = content_length(request.headers()).unwrap_or(0);
    let (mut response, body_len) = match handle(&state, &route, request).await {
        Ok(r) => (r.response, r.body_len.unwrap_or(request_len)),
        Err(e) => {
            let e = match e {
                ApiError::RouteNotFound { .. } => ApiError::RouteNotFound {
                    method: method.to_string(),
                    path: raw_path.clone(),
                },
                e => e,
            };
            if e.status().is_server_error() {
                tracing::warn!(%method, path = %raw_path, error = %e, "request failed");
            } else {
                tracing::debug!(%method, path = %raw_path, error = %e, "request refused");
            }
            (e.into_response(), request_len)
        }
    };
    if let Some(reads) = &state.reads {
        reads.stamp(&mut response);
    }
    if route == Route::Ready {
        // A probe, not a Notary request: a 503 here is no failed request.
        return response;
    }
    let response_len = axum::body::HttpBody::size_hint(response.body()).exact().unwrap_or(0);
    state.metrics.observe_http(
        operation,
        response.status().as_u16(),
        started.elapsed(),
        body_len,
        response_len,
    );
    response
}

struct Handled {
    response: Response,
    /// Request body length when the body was read.
    body_len: Option<u64>,
}

impl From<Response> for Handled {
    fn from(response: Response) -> Self {
        Handled {
            response,
            body_len: None,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::RouteNotFound {
        method: String::new(),
        path: String::new(),
    }
}

/// Admission: the GUN prefixes, then authentication and authorization. Nothing that depends on the
/// collection (or costs the cluster anything) runs before it.
fn admit(state: &AppState, route: &Route, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(gun) = route.gun() {
        if !routes::gun_allowed(&state.gun_prefixes, gun) {
            return Err(match route {
                Route::Publish { .. } => ApiError::InvalidGun {
                    gun: gun.to_string(),
                    prefixes: state.gun_prefixes.to_vec(),
                },
                _ => not_found(),
            });
        }
    }
    if !matches!(route, Route::Health | Route::Metrics | Route::Ready) {
        if let Some(auth) = &state.auth {
            auth.check(route, headers)?;
        }
    }
    Ok(())
}

async fn handle(state: &AppState, route: &Route, mut request: Request) -> Result<Handled, ApiError> {
    admit(state, route, request.headers())?;
    // Admitted: now the cluster's work, which the cluster layers left to this point.
    match route {
        Route::GetMetadata { .. }
        | Route::GetKey { .. }
        | Route::Changefeed { .. }
        | Route::Tuf1List
        | Route::Tuf1Metadata { .. }
        | Route::Tuf1Keys { create: false, .. } => {
            if let Some(reads) = &state.reads {
                reads
                    .before_read(route, request.uri().query(), request.headers())
                    .await?;
            }
        }
        Route::Publish { .. }
        | Route::DeleteGun { .. }
        | Route::RotateKey { .. }
        | Route::Tuf1Upload { .. }
        | Route::Tuf1Keys { create: true, .. }
        | Route::Tuf1RotateKey { .. } => {
            if let Some(writes) = request.extensions().get::<Arc<dyn ClusterWrites>>().cloned() {
                if !writes.leads() {
                    match forward_write(state, writes.as_ref(), request).await? {
                        Ok(forwarded) => return Ok(forwarded),
                        Err(here) => request = here,
                    }
                }
            }
        }
        _ => {}
    }
    let backend = &state.backend;
    match route {
        Route::Ping => Ok(text_response(StatusCode::OK, "text/plain; charset=utf-8", "{}").into()),
        Route::Health => {
            let Health { mut failing, degraded } = backend.health().await;
            let status = if failing.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            failing.extend(degraded);
            let body = serde_json::to_string(&failing).unwrap_or_else(|_| "{}".into());
            Ok(json_utf8(status, go_escape(&body)).into())
        }
        Route::Ready => {
            let verdict = match &state.reads {
                Some(reads) => reads.ready(),
                None => match backend.readiness() {
                    Readiness::Ready => Ok(()),
                    Readiness::Unavailable { reason } => Err(reason),
                },
            };
            Ok(ready_response(verdict).into())
        }
        Route::Metrics if !state.serve_metrics => Err(not_found()),
        Route::Metrics => Ok(encode_metrics(state)?.into()),
        Route::NotFound => Err(not_found()),
        Route::GetMetadata {
            gun,
            role,
            role_valid,
            selector,
        } => {
            ready(backend.as_ref())?;
            if !role_valid {
                return Err(ApiError::MetadataNotFound);
            }
            let (found, policy) = match selector {
                MetadataSelector::Current => (backend.get_current(gun, role).await?, &state.current_cache),
                MetadataSelector::Checksum(sum) if sum.len() == 64 => {
                    (backend.get_by_checksum(gun, role, sum).await?, &state.consistent_cache)
                }
                // Only sha256 is indexed.
                MetadataSelector::Checksum(_) => (None, &state.consistent_cache),
                MetadataSelector::Version(Some(v)) => {
                    (backend.get_by_version(gun, role, *v).await?, &state.consistent_cache)
                }
                MetadataSelector::Version(None) => (None, &state.consistent_cache),
            };
            let meta = found.ok_or(ApiError::MetadataNotFound)?;
            let mut response = bytes_response(StatusCode::OK, METADATA_CONTENT_TYPE, meta.bytes);
            policy.apply(response.headers_mut(), meta.last_modified);
            Ok(response.into())
        }
        Route::GetKey { gun, role } => {
            ready(backend.as_ref())?;
            let key = backend.get_key(gun, *role).await?;
            Ok(text_response(StatusCode::OK, METADATA_CONTENT_TYPE, &key.to_notary_json()).into())
        }
        Route::RotateKey { gun, role } => {
            let key = backend.rotate_key(gun, *role).await?;
            Ok(text_response(StatusCode::OK, METADATA_CONTENT_TYPE, &key.to_notary_json()).into())
        }
        Route::DeleteGun { gun } => {
            backend.delete_gun(gun).await?;
            Ok(StatusCode::OK.into_response().into())
        }
        Route::Changefeed { gun } => {
            ready(backend.as_ref())?;
            let query = parse_changefeed_query(gun.clone(), request.uri().query())?;
            let records = backend.changefeed(&query).await?;
            Ok(text_response(StatusCode::OK, METADATA_CONTENT_TYPE, &changefeed_body(&records)).into())
        }
        Route::Tuf1List => {
            ready(backend.as_ref())?;
            let after = query_value(request.uri().query(), "after");
            let after = (!after.is_empty()).then_some(after.as_str());
            let names = backend.tuf1_list(after, crate::tuf1::MAX_LISTED).await?;
            Ok(bytes_response(
                StatusCode::OK,
                METADATA_CONTENT_TYPE,
                crate::tuf1::list_body(&names).into(),
            )
            .into())
        }
        Route::Tuf1Metadata { repository, file } => {
            ready(backend.as_ref())?;
            if !is_valid_repository_name(repository) {
                return Err(ApiError::MetadataNotFound);
            }
            let (meta, versioned) = backend
                .tuf1_metadata(repository, file)
                .await?
                .ok_or(ApiError::MetadataNotFound)?;
            let policy = if versioned {
                &state.consistent_cache
            } else {
                &state.current_cache
            };
            let mut response = bytes_response(StatusCode::OK, METADATA_CONTENT_TYPE, meta.bytes);
            policy.apply(response.headers_mut(), meta.last_modified);
            Ok(response.into())
        }
        Route::Tuf1Keys { repository, create } => {
            if !*create {
                ready(backend.as_ref())?;
            }
            check_repository_name(repository, *create)?;
            let body = backend
                .tuf1_keys(repository, *create)
                .await?
                .ok_or(ApiError::MetadataNotFound)?;
            Ok(bytes_response(StatusCode::OK, METADATA_CONTENT_TYPE, body.into()).into())
        }
        Route::Tuf1RotateKey { repository, role } => {
            check_repository_name(repository, true)?;
            let body = backend.tuf1_rotate_key(repository, *role).await?;
            Ok(bytes_response(StatusCode::OK, METADATA_CONTENT_TYPE, body.into()).into())
        }
        Route::Tuf1Upload { repository } => {
            check_repository_name(repository, true)?;
            let limits = state.limits;
            if content_length(request.headers()).is_some_and(|n| n > limits.max_body_bytes) {
                return Err(too_large_body(&limits));
            }
            let body = read_body(request.into_body(), &limits).await?;
            let body_len = body.len() as u64;
            let slot = state.parse_slots.acquire().await.map_err(|_| ApiError::Unknown {
                reason: "upload parsing pool closed".into(),
                source: None,
            })?;
            let files = tokio::task::spawn_blocking(move || crate::tuf1::parse_upload(&body, &limits))
                .await
                .map_err(|e| ApiError::unknown(format!("upload parsing task: {e}"), e))??;
            drop(slot);
            backend.tuf1_upload(repository, files).await?;
            Ok(Handled {
                response: StatusCode::OK.into_response(),
                body_len: Some(body_len),
            })
        }
        Route::Publish { gun } => {
            let limits = state.limits;
            if content_length(request.headers()).is_some_and(|n| n > limits.max_body_bytes) {
                return Err(too_large_body(&limits));
            }
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_body(request.into_body(), &limits).await?;
            let body_len = body.len() as u64;
            // Parsing every part's JSON (up to limits.max_body_bytes) is CPU work:
            // off the runtime that serves reads and Raft, as validation is. The slot is
            // for the parse alone: held through the publish, it would let no more
            // publishes be under way than there are cores, each waiting on its syncs.
            let slot = state.parse_slots.acquire().await.map_err(|_| ApiError::Unknown {
                reason: "upload parsing pool closed".into(),
                source: None,
            })?;
            let files = tokio::task::spawn_blocking(move || parse_upload(content_type.as_deref(), &body, &limits))
                .await
                .map_err(|e| ApiError::unknown(format!("upload parsing task: {e}"), e))??;
            drop(slot);
            backend.publish(gun, files).await?;
            Ok(Handled {
                response: StatusCode::OK.into_response(),
                body_len: Some(body_len),
            })
        }
    }
}

/// A TUF 1.0 repository name in a path: 404 for a read (no such repository), 400 naming the
/// rule for a write.
fn check_repository_name(name: &str, write: bool) -> Result<(), ApiError> {
    if is_valid_repository_name(name) {
        return Ok(());
    }
    Err(if write {
        ApiError::InvalidParameters {
            detail: Some(format!(
                "repository names are 1 to {} ASCII letters, digits, '-', '_' and '.', starting with a letter or digit",
                seal_tuf::tuf1::MAX_REPOSITORY_NAME
            )),
        }
    } else {
        ApiError::MetadataNotFound
    })
}

/// The answer of `GET /_seal/ready`: 200 `{"ready":true}`, or 503 `{"ready":false,"reason":…}`.
fn ready_response(verdict: Result<(), String>) -> Response {
    let (status, body) = match verdict {
        Ok(()) => (StatusCode::OK, serde_json::json!({ "ready": true })),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ready": false, "reason": reason }),
        ),
    };
    text_response(status, METADATA_CONTENT_TYPE, &body.to_string())
}

fn ready(backend: &dyn Backend) -> Result<(), ApiError> {
    match backend.readiness() {
        Readiness::Ready => Ok(()),
        Readiness::Unavailable { reason } => Err(ApiError::Unavailable { reason, source: None }),
    }
}

/// Reads the body of an admitted write within `limits.max_body_bytes` and the node's
/// [`ForwardBudget`], and hands it to the leader; `Err` with the request rebuilt when it is to run
/// here after all. The budget is held until the leader has answered.
async fn forward_write(
    state: &AppState,
    writes: &dyn ClusterWrites,
    request: Request,
) -> Result<Result<Handled, Request>, ApiError> {
    let (parts, body) = request.into_parts();
    let (body, reservation) = read_forwarded_body(
        body,
        content_length(&parts.headers),
        &state.limits,
        &state.forward_budget,
    )
    .await?;
    let body_len = body.len() as u64;
    let outcome = writes.forward(parts, body).await;
    drop(reservation);
    Ok(match outcome {
        Ok(response) => Ok(Handled {
            response,
            body_len: Some(body_len),
        }),
        Err((parts, body)) => Err(Request::from_parts(parts, Body::from(body))),
    })
}

/// Reads a body to forward: a declared length is refused above `limits.max_body_bytes` and
/// taken from `budget` whole before a byte is read; a body without one takes from it as it
/// arrives. `ApiError::Unavailable` when the budget has no room.
async fn read_forwarded_body(
    mut body: Body,
    declared: Option<u64>,
    limits: &UploadLimits,
    budget: &ForwardBudget,
) -> Result<(Bytes, Reservation), ApiError> {
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large_body(limits));
    }
    let mut reservation = budget.take(declared.unwrap_or(0)).ok_or_else(|| budget.full())?;
    let mut bytes = Vec::with_capacity(usize::try_from(reservation.bytes).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::MalformedUpload {
            reason: format!("reading body: {e}"),
        })?;
        let Ok(data) = frame.into_data() else { continue };
        let total = (bytes.len() + data.len()) as u64;
        if total > limits.max_body_bytes {
            return Err(too_large_body(limits));
        }
        if total > reservation.bytes && !reservation.grow(total - reservation.bytes) {
            return Err(budget.full());
        }
        bytes.extend_from_slice(&data);
    }
    Ok((Bytes::from(bytes), reservation))
}

fn too_large_body(limits: &UploadLimits) -> ApiError {
    ApiError::TooLarge {
        limit: "limits.max_body_bytes",
        max: limits.max_body_bytes,
    }
}

async fn read_body(body: Body, limits: &UploadLimits) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large_body(limits)),
        Err(e) => Err(ApiError::MalformedUpload {
            reason: format!("reading body: {e}"),
        }),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text_response(status: StatusCode, content_type: &'static str, body: &str) -> Response {
    bytes_response(status, content_type, Bytes::from(body.to_string()))
}

fn json_utf8(status: StatusCode, body: String) -> Response {
    bytes_response(status, crate::error::ERROR_CONTENT_TYPE, Bytes::from(body))
}

/// Decodes `%XX` escapes of a path; `None` for a bad escape or non-UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The first value of `key` in a query string, decoded as Go's `ParseQuery`
/// does (`+` is a space); `""` when absent.
fn query_value(query: Option<&str>, key: &str) -> String {
    for pair in query.unwrap_or("").split(['&', ';']) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "));
        if k.as_deref() == Some(key) {
            return percent_decode(&v.replace('+', " ")).unwrap_or_default();
        }
    }
    String::new()
}

/// Go's `strconv.ParseInt(s, 10, 32)`, with its error text on failure.
fn parse_int32(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            crate::goquote::quote(s)
        ));
    }
    match s.parse::<i64>() {
        Ok(n) if n >= i64::from(i32::MIN) && n <= i64::from(i32::MAX) => Ok(n),
        _ => Err(format!(
            "strconv.ParseInt: parsing {}: value out of range",
            crate::goquote::quote(s)
        )),
    }
}

/// The largest changefeed page, forward or back (Notary has none: a
/// `records=-2147483648` asked for an unbounded page).
pub const MAX_CHANGEFEED_RECORDS: u32 = 1_000;

/// Parses `records` and `change_id` as Notary does, pages bounded by
/// [`MAX_CHANGEFEED_RECORDS`].
pub fn parse_changefeed_query(gun: Option<String>, query: Option<&str>) -> Result<ChangefeedQuery, ApiError> {
    let records = parse_int32(&query_value(query, "records")).map_err(|e| ApiError::InvalidParameters {
        detail: Some(format!("invalid records parameter: {e}")),
    })?;
    let change_id = query_value(query, "change_id");
    let change_id = if change_id.is_empty() {
        0
    } else {
        parse_int32(&change_id).map_err(|_| ApiError::InvalidParameters { detail: None })?
    };
    let reversed = records < 0;
    let records = match u32::try_from(records.unsigned_abs()).unwrap_or(u32::MAX) {
        0 => DEFAULT_CHANGEFEED_RECORDS,
        n if n > MAX_CHANGEFEED_RECORDS => {
            return Err(ApiError::InvalidParameters {
                detail: Some(format!(
                    "invalid records parameter: at most {MAX_CHANGEFEED_RECORDS} records a page, forward or back"
                )),
            })
        }
        n => n,
    };
    Ok(ChangefeedQuery {
        gun,
        change_id,
        records,
        reversed,
    })
}

/// Go's RFC 3339 with nanoseconds, trailing zeros trimmed (`time.RFC3339Nano`).
pub fn rfc3339_nano(t: OffsetDateTime) -> String {
    seal_tuf::time::format_rfc3339_nano(t)
}

/// The changefeed body: `{"count":N,"records":[…]}` as Notary writes it.
pub fn changefeed_body(records: &[ChangeRecord]) -> String {
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "ID": r.id.to_string(),
                "CreatedAt": rfc3339_nano(r.created_at),
                "GUN": r.gun,
                "Version": r.version,
                "SHA256": r.sha256,
                "Category": match r.category {
                    ChangeCategory::Update => "update",
                    ChangeCategory::Deletion => "deletion",
                },
            })
        })
        .collect();
    let body = serde_json::json!({"count": records.len(), "records": items});
    go_escape(&body.to_string())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any query string yields a query or INVALID_PARAMETERS, never a panic.
        #[test]
        fn changefeed_queries(q in "[a-z_=&;%+0-9-]{0,40}") {
            match parse_changefeed_query(None, Some(&q)) {
                Ok(query) => prop_assert!(query.records >= 1),
                Err(e) => prop_assert_eq!(e.code(), "INVALID_PARAMETERS"),
            }
        }
    }
}
