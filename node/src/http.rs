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
//! the cluster anything. A cluster node's layers (`cluster::read_layer`,
//! `cluster::forward_layer`) therefore do not do that work themselves: they
//! hand it to the handler as request extensions, [`ClusterReads`] (the
//! staleness bound, linearizable reads, `X-Seal-Min-Version` waits) and
//! [`ClusterWrites`] (forwarding a write to the Raft leader), which the
//! handler runs only on an admitted request. An anonymous client thus gets
//! the same 401 for a collection that exists and one that does not, starts
//! no quorum round and no wait, and a follower reads no body of, and
//! forwards nothing for, a caller the leader would refuse. Bodies read to be
//! forwarded are bounded together by `limits.max_forward_bytes_in_flight`
//! ([`ForwardBudget`]); past it the answer is 503 `UNAVAILABLE`.

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
use crate::config::NodeConfig;
use crate::error::{go_escape, ApiError};
use crate::metrics::{Metrics, METRICS_CONTENT_TYPE};
use crate::multipart::{parse_upload, RoleFile, UploadLimits};
use crate::routes::{self, KeyRole, MetadataSelector, Route};
use crate::signer::PublicKeyInfo;

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

    /// Changefeed records matching `query`.
    async fn changefeed(&self, query: &ChangefeedQuery) -> Result<Vec<ChangeRecord>, ApiError>;

    /// The node's checks: what fails and what is degraded.
    async fn health(&self) -> Health;
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

/// A cluster node's work before a read (`cluster::ReadGate`): the staleness bound, a
/// linearizable read, an `X-Seal-Min-Version` wait. `cluster::read_layer` hands it to the handler
/// as a request extension (`Arc<dyn ClusterReads>`); the handler runs it on admitted reads only.
#[async_trait]
pub trait ClusterReads: Send + Sync + 'static {
    /// `Ok` to serve the read of `route` here; otherwise the answer (`NotLeader`: the cluster
    /// layer sends the read on to the leader).
    async fn before_read(&self, route: &Route, query: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError>;
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
        }
    }
}

/// The axum app serving Notary's API.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let raw_path = request.uri().path().to_string();
    let route = match percent_decode(&raw_path) {
        Some(path) => routes::parse(&method, &path),
        None => Route::NotFound,
    };
    let operation = route.operation();
    let request_len = content_length(request.headers()).unwrap_or(0);
    let (response, body_len) = match handle(&state, &route, request).await {
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
    if !matches!(route, Route::Health | Route::Metrics) {
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
        Route::GetMetadata { .. } | Route::GetKey { .. } | Route::Changefeed { .. } => {
            if let Some(reads) = request.extensions().get::<Arc<dyn ClusterReads>>().cloned() {
                reads
                    .before_read(route, request.uri().query(), request.headers())
                    .await?;
            }
        }
        Route::Publish { .. } | Route::DeleteGun { .. } | Route::RotateKey { .. } => {
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
        Route::Metrics => {
            let body = state.metrics.encode().map_err(|e| ApiError::Unknown {
                reason: format!("encoding metrics: {e}"),
            })?;
            Ok(bytes_response(StatusCode::OK, METRICS_CONTENT_TYPE, body.into()).into())
        }
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
                MetadataSelector::Current => (backend.get_current(gun, role).await?, state.current_cache),
                MetadataSelector::Checksum(sum) if sum.len() == 64 => {
                    (backend.get_by_checksum(gun, role, sum).await?, state.consistent_cache)
                }
                // Only sha256 is indexed.
                MetadataSelector::Checksum(_) => (None, state.consistent_cache),
                MetadataSelector::Version(Some(v)) => {
                    (backend.get_by_version(gun, role, *v).await?, state.consistent_cache)
                }
                MetadataSelector::Version(None) => (None, state.consistent_cache),
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
            // off the runtime that serves reads and Raft, as validation is.
            let _slot = state.parse_slots.acquire().await.map_err(|_| ApiError::Unknown {
                reason: "upload parsing pool closed".into(),
            })?;
            let files = tokio::task::spawn_blocking(move || parse_upload(content_type.as_deref(), &body, &limits))
                .await
                .map_err(|e| ApiError::Unknown {
                    reason: format!("upload parsing task: {e}"),
                })??;
            backend.publish(gun, files).await?;
            Ok(Handled {
                response: StatusCode::OK.into_response(),
                body_len: Some(body_len),
            })
        }
    }
}

fn ready(backend: &dyn Backend) -> Result<(), ApiError> {
    match backend.readiness() {
        Readiness::Ready => Ok(()),
        Readiness::Unavailable { reason } => Err(ApiError::Unavailable { reason }),
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
mod tests {
    use super::*;
    use crate::error::tests::fixtures_dir;
    use sha2::{Digest, Sha256};
    use std::path::PathBuf;
    use std::sync::Mutex;
    use tower::ServiceExt;

    const GUN: &str = "example.com/interop/app";
    const TS_KEY: &str =
        r#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":null}}"#;

    /// An in-memory backend: (gun, role) → list of versions' bytes.
    #[derive(Default)]
    struct MemBackend {
        files: Mutex<BTreeMap<(String, String), Vec<Bytes>>>,
        published: Mutex<Vec<(String, Vec<RoleFile>)>>,
        deleted: Mutex<Vec<String>>,
        queries: Mutex<Vec<ChangefeedQuery>>,
        changes: Vec<ChangeRecord>,
        publish_error: Option<ApiError>,
        unavailable: Option<String>,
        health: Health,
    }

    fn modified() -> OffsetDateTime {
        time::macros::datetime!(2026-11-21 23:54:56 UTC)
    }

    fn version_of(bytes: &[u8]) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["signed"]["version"].as_u64().unwrap()
    }

    #[async_trait]
    impl Backend for MemBackend {
        fn readiness(&self) -> Readiness {
            match &self.unavailable {
                Some(reason) => Readiness::Unavailable { reason: reason.clone() },
                None => Readiness::Ready,
            }
        }
        async fn get_current(&self, gun: &str, role: &str) -> Result<Option<StoredMetadata>, ApiError> {
            let files = self.files.lock().unwrap();
            Ok(files
                .get(&(gun.to_string(), role.to_string()))
                .and_then(|v| v.last())
                .map(|b| StoredMetadata {
                    bytes: b.clone(),
                    last_modified: Some(modified()),
                }))
        }
        async fn get_by_checksum(
            &self,
            gun: &str,
            role: &str,
            sha256_hex: &str,
        ) -> Result<Option<StoredMetadata>, ApiError> {
            let files = self.files.lock().unwrap();
            Ok(files
                .get(&(gun.to_string(), role.to_string()))
                .and_then(|v| v.iter().find(|b| hex::encode(Sha256::digest(b)) == sha256_hex))
                .map(|b| StoredMetadata {
                    bytes: b.clone(),
                    last_modified: Some(modified()),
                }))
        }
        async fn get_by_version(
            &self,
            gun: &str,
            role: &str,
            version: u64,
        ) -> Result<Option<StoredMetadata>, ApiError> {
            let files = self.files.lock().unwrap();
            Ok(files
                .get(&(gun.to_string(), role.to_string()))
                .and_then(|v| v.iter().find(|b| version_of(b) == version))
                .map(|b| StoredMetadata {
                    bytes: b.clone(),
                    last_modified: None,
                }))
        }
        async fn publish(&self, gun: &str, files: Vec<RoleFile>) -> Result<(), ApiError> {
            if let Some(e) = &self.publish_error {
                return Err(e.clone());
            }
            self.published.lock().unwrap().push((gun.to_string(), files));
            Ok(())
        }
        async fn delete_gun(&self, gun: &str) -> Result<(), ApiError> {
            self.deleted.lock().unwrap().push(gun.to_string());
            Ok(())
        }
        async fn get_key(&self, _gun: &str, _role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
            let public = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                "LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=",
            )
            .unwrap();
            Ok(PublicKeyInfo::new(crate::config::KeyAlgorithm::Ed25519, public))
        }
        async fn rotate_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
            self.get_key(gun, role).await
        }
        async fn changefeed(&self, query: &ChangefeedQuery) -> Result<Vec<ChangeRecord>, ApiError> {
            self.queries.lock().unwrap().push(query.clone());
            Ok(self.changes.clone())
        }
        async fn health(&self) -> Health {
            self.health.clone()
        }
    }

    fn fixture_metadata(dir: &std::path::Path, state: &str, role: &str) -> Bytes {
        let p: PathBuf = dir
            .join("metadata/example.com_interop_app")
            .join(state)
            .join(format!("{role}.json"));
        Bytes::from(std::fs::read(p).unwrap())
    }

    /// A backend holding state 1 and 2 of the fixture collection.
    fn fixture_backend() -> Option<MemBackend> {
        let dir = fixtures_dir()?;
        let b = MemBackend::default();
        {
            let mut files = b.files.lock().unwrap();
            for role in ["root", "targets", "snapshot", "timestamp"] {
                let list = files.entry((GUN.into(), role.into())).or_default();
                list.push(fixture_metadata(&dir, "1-after-first-publish", role));
                list.push(fixture_metadata(&dir, "2-final", role));
            }
            files
                .entry((GUN.into(), "targets/releases".into()))
                .or_default()
                .push(fixture_metadata(&dir, "2-final", "targets/releases"));
        }
        Some(b)
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Answer {
        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
        fn header(&self, name: header::HeaderName) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }
    }

    async fn call_with(state: AppState, request: Request<Body>) -> Answer {
        let response = router(state).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer { status, headers, body }
    }

    async fn call(backend: Arc<MemBackend>, method: &str, uri: &str) -> Answer {
        let state = AppState::new(backend, Metrics::new().unwrap());
        let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        call_with(state, request).await
    }

    fn fixture_error_cases() -> Vec<serde_json::Value> {
        let Some(dir) = fixtures_dir() else {
            return vec![];
        };
        let text = std::fs::read_to_string(dir.join("errors/error-bodies.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn fixture_get_cases_answer_identically() {
        let backend = Arc::new(MemBackend::default());
        for case in fixture_error_cases() {
            if case["upload_part_filename"].is_string() || case["method"] == "POST" {
                continue;
            }
            let a = call(
                backend.clone(),
                case["method"].as_str().unwrap(),
                case["path"].as_str().unwrap(),
            )
            .await;
            let d = case["description"].as_str().unwrap();
            assert_eq!(a.status.as_u16() as u64, case["status"].as_u64().unwrap(), "{d}");
            assert_eq!(a.text(), case["body"].as_str().unwrap(), "{d}");
            assert_eq!(a.header(header::CONTENT_TYPE), case["content_type"].as_str(), "{d}");
        }
    }

    #[tokio::test]
    async fn serves_metadata_with_cache_headers() {
        let Some(backend) = fixture_backend() else {
            return;
        };
        let dir = fixtures_dir().unwrap();
        let backend = Arc::new(backend);
        let ts = fixture_metadata(&dir, "2-final", "timestamp");
        let a = call(backend.clone(), "GET", &format!("/v2/{GUN}/_trust/tuf/timestamp.json")).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, ts.to_vec());
        assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(
            a.header(header::CACHE_CONTROL),
            Some("public, max-age=300, s-maxage=300, must-revalidate")
        );
        assert_eq!(a.header(header::LAST_MODIFIED), Some("Sat, 21 Nov 2026 23:54:56 GMT"));

        // By checksum, as the CLI asks (transcript exchange 8).
        let snap1 = fixture_metadata(&dir, "1-after-first-publish", "snapshot");
        let sum = hex::encode(Sha256::digest(&snap1));
        assert_eq!(sum, "78ef50942a62194c0dea5c8eb002a2bdefb891450d3fb38947606f6b2b8028af");
        let a = call(
            backend.clone(),
            "GET",
            &format!("/v2/{GUN}/_trust/tuf/snapshot.{sum}.json"),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, snap1.to_vec());
        assert_eq!(
            a.header(header::CACHE_CONTROL),
            Some("public, max-age=2592000, s-maxage=2592000")
        );

        // A delegation by checksum.
        let rel = fixture_metadata(&dir, "2-final", "targets/releases");
        let sum = hex::encode(Sha256::digest(&rel));
        let a = call(
            backend.clone(),
            "GET",
            &format!("/v2/{GUN}/_trust/tuf/targets/releases.{sum}.json"),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, rel.to_vec());

        // By version.
        let root1 = fixture_metadata(&dir, "1-after-first-publish", "root");
        let a = call(backend.clone(), "GET", &format!("/v2/{GUN}/_trust/tuf/1.root.json")).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, root1.to_vec());
        assert_eq!(
            a.header(header::CACHE_CONTROL),
            Some("public, max-age=2592000, s-maxage=2592000")
        );
        assert_eq!(a.header(header::LAST_MODIFIED), None);

        let not_found = "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\",\"detail\":{}}]}\n";
        for path in [
            format!("/v2/{GUN}/_trust/tuf/snapshot.{}.json", "0".repeat(64)),
            format!("/v2/{GUN}/_trust/tuf/snapshot.{}.json", "a".repeat(128)),
            format!("/v2/{GUN}/_trust/tuf/9.root.json"),
            format!("/v2/{GUN}/_trust/tuf/99999999999999999999999.root.json"),
            format!("/v2/{GUN}/_trust/tuf/targets/Nope.json"),
            format!("/v2/{GUN}/_trust/tuf/targets/other.json"),
        ] {
            let a = call(backend.clone(), "GET", &path).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(a.text(), not_found, "{path}");
            assert_eq!(a.header(header::CACHE_CONTROL), None, "{path}");
        }
    }

    #[tokio::test]
    async fn percent_encoded_paths_route() {
        let Some(backend) = fixture_backend() else {
            return;
        };
        let a = call(
            Arc::new(backend),
            "GET",
            "/v2/example.com%2Finterop/app/_trust/tuf/root.json",
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        let a = call(Arc::new(MemBackend::default()), "GET", "/v2/%zz/_trust/tuf/root.json").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn zero_cache_age_disables_caching() {
        let Some(backend) = fixture_backend() else {
            return;
        };
        let mut state = AppState::new(Arc::new(backend), Metrics::new().unwrap());
        state.current_cache = CachePolicy::current(0);
        let req = Request::builder()
            .uri(format!("/v2/{GUN}/_trust/tuf/root.json"))
            .body(Body::empty())
            .unwrap();
        let a = call_with(state, req).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header(header::CACHE_CONTROL), Some("max-age=0, no-cache, no-store"));
        assert_eq!(a.header(header::PRAGMA), Some("no-cache"));
    }

    fn transcript_post(n: u64) -> Option<(String, Vec<u8>)> {
        let (line, body) = crate::error::tests::transcript_exchange(n)?;
        let ct = line["req_headers"]["Content-Type"].as_str().unwrap().to_string();
        Some((ct, body))
    }

    fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
        Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn publish_passes_roles_to_backend() {
        let Some((ct, body)) = transcript_post(23) else {
            return;
        };
        let backend = Arc::new(MemBackend::default());
        let state = AppState::new(backend.clone(), Metrics::new().unwrap());
        let a = call_with(
            state.clone(),
            post(&format!("/v2/{GUN}/_trust/tuf/"), &ct, body.clone()),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.is_empty());
        assert_eq!(a.header(header::CONTENT_TYPE), None);
        let published = backend.published.lock().unwrap();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].0, GUN);
        let roles: Vec<&str> = published[0].1.iter().map(|f| f.role.as_str()).collect();
        assert_eq!(roles, ["targets/releases", "snapshot"]);
        let text = String::from_utf8(state.metrics.encode().unwrap()).unwrap();
        assert!(text.contains("seal_http_requests_total{code=\"200\",operation=\"UpdateTUF\"} 1"));
        assert!(text.contains(&format!(
            "seal_http_request_size_bytes_sum{{operation=\"UpdateTUF\"}} {}",
            body.len()
        )));
    }

    #[tokio::test]
    async fn publish_errors_match_fixture() {
        let cases = fixture_error_cases();
        if cases.is_empty() {
            return;
        }
        let find = |d: &str| cases.iter().find(|c| c["description"] == d).unwrap().clone();
        let uri = format!("/v2/{GUN}/_trust/tuf/");
        let backend = Arc::new(MemBackend::default());
        let state = AppState::new(backend.clone(), Metrics::new().unwrap());
        let part = |filename: &str, content: &str| {
            format!(
                "--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n\r\n{content}\r\n--B--\r\n"
            )
            .into_bytes()
        };
        let ct = "multipart/form-data; boundary=B";

        let a = call_with(state.clone(), post(&uri, "text/plain", b"hello".to_vec())).await;
        let c = find("non-multipart body");
        assert_eq!(a.status.as_u16() as u64, c["status"].as_u64().unwrap());
        assert_eq!(a.text(), c["body"].as_str().unwrap());

        let a = call_with(state.clone(), post(&uri, ct, part("bogus", "{}"))).await;
        assert_eq!(a.text(), find("invalid role filename")["body"].as_str().unwrap());

        let a = call_with(state.clone(), post(&uri, ct, part("targets", "{nope"))).await;
        assert_eq!(a.text(), find("malformed JSON part")["body"].as_str().unwrap());
        assert!(backend.published.lock().unwrap().is_empty());

        // Validation errors come from the backend and keep their body.
        let failing = Arc::new(MemBackend {
            publish_error: Some(ApiError::InvalidUpdate {
                kind: crate::error::UpdateErrorKind::Validation,
                msg: "no pre-existing root and no root provided in update.".into(),
            }),
            ..MemBackend::default()
        });
        let state = AppState::new(failing, Metrics::new().unwrap());
        let a = call_with(
            state,
            post(
                "/v2/example.com/newgun/_trust/tuf/",
                ct,
                part("targets", r#"{"signed":{},"signatures":[]}"#),
            ),
        )
        .await;
        let c = find("targets without any root");
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.text(), c["body"].as_str().unwrap());
        assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json; charset=utf-8"));
    }

    #[tokio::test]
    async fn upload_limits_answer_413() {
        let Some((ct, body)) = transcript_post(5) else {
            return;
        };
        let backend = Arc::new(MemBackend::default());
        let mut state = AppState::new(backend.clone(), Metrics::new().unwrap());
        state.limits.max_body_bytes = 1000;
        let uri = format!("/v2/{GUN}/_trust/tuf/");
        // Declared too large.
        let a = call_with(state.clone(), post(&uri, &ct, body.clone())).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(a.text().contains("\"code\":\"TOO_LARGE\""));
        // Streamed without a length.
        let req = Request::builder()
            .method("POST")
            .uri(&uri)
            .header(header::CONTENT_TYPE, &ct)
            .body(Body::from(body.clone()))
            .unwrap();
        let a = call_with(state.clone(), req).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Too many parts.
        state.limits = UploadLimits {
            max_parts: 1,
            ..UploadLimits::default()
        };
        let a = call_with(state, post(&uri, &ct, body)).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(backend.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn gun_prefixes_filter() {
        let backend = Arc::new(MemBackend::default());
        let mut state = AppState::new(backend.clone(), Metrics::new().unwrap());
        state.gun_prefixes = Arc::new(vec!["docker.io/".into()]);
        let a = call_with(
            state.clone(),
            post(
                "/v2/quay.io/x/_trust/tuf/",
                "multipart/form-data; boundary=B",
                b"--B--".to_vec(),
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            a.text(),
            "{\"errors\":[{\"code\":\"INVALID_GUN\",\"message\":\"The server does not support actions on images of this name.\",\"detail\":\"Require GUNs with prefix: [docker.io/]\"}]}\n"
        );
        for (method, path) in [
            ("GET", "/v2/quay.io/x/_trust/tuf/root.json"),
            ("GET", "/v2/quay.io/x/_trust/tuf/timestamp.key"),
            ("POST", "/v2/quay.io/x/_trust/tuf/timestamp.key"),
            ("DELETE", "/v2/quay.io/x/_trust/tuf/"),
            ("GET", "/v2/quay.io/x/_trust/changefeed?records=1"),
        ] {
            let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
            let a = call_with(state.clone(), req).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(
                a.text(),
                "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\"}]}\n"
            );
        }
        assert!(backend.deleted.lock().unwrap().is_empty());
        // Inside the prefix, and the global changefeed, pass.
        let req = Request::builder()
            .method("DELETE")
            .uri("/v2/docker.io/x/_trust/tuf/")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call_with(state.clone(), req).await.status, StatusCode::OK);
        let req = Request::builder()
            .uri("/v2/_trust/changefeed?records=1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call_with(state, req).await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn keys_delete_ping_health() {
        let backend = Arc::new(MemBackend::default());
        let a = call(backend.clone(), "GET", "/v2/example.com/a/_trust/tuf/timestamp.key").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), TS_KEY);
        let a = call(backend.clone(), "POST", "/v2/example.com/a/_trust/tuf/snapshot.key").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), TS_KEY);
        let a = call(backend.clone(), "GET", "/v2/example.com/a/_trust/tuf/root.key").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);

        let a = call(backend.clone(), "DELETE", "/v2/example.com/a/_trust/tuf/").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.is_empty());
        assert_eq!(*backend.deleted.lock().unwrap(), vec!["example.com/a"]);

        let a = call(backend.clone(), "GET", "/v2/").await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, "{}"));
        let a = call(backend.clone(), "GET", "/_notary_server/health").await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, "{}"));

        let degraded = BTreeMap::from([("Trust operational".to_string(), "signer unavailable".to_string())]);
        let a = call(
            Arc::new(MemBackend {
                health: Health {
                    failing: BTreeMap::new(),
                    degraded: degraded.clone(),
                },
                ..MemBackend::default()
            }),
            "GET",
            "/_notary_server/health",
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), "{\"Trust operational\":\"signer unavailable\"}");

        let sick = Arc::new(MemBackend {
            health: Health {
                failing: BTreeMap::from([("raft".to_string(), "no leader".to_string())]),
                degraded,
            },
            ..MemBackend::default()
        });
        let a = call(sick, "GET", "/_notary_server/health").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            a.text(),
            "{\"Trust operational\":\"signer unavailable\",\"raft\":\"no leader\"}"
        );
        assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json; charset=utf-8"));

        let a = call(backend, "GET", "/metrics").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.text().contains("# TYPE seal_raft_term gauge"));
    }

    #[tokio::test]
    async fn unavailable_node_answers_503_for_reads() {
        let backend = Arc::new(MemBackend {
            unavailable: Some("raft leader unknown".into()),
            ..MemBackend::default()
        });
        for path in [
            "/v2/example.com/a/_trust/tuf/root.json",
            "/v2/example.com/a/_trust/tuf/timestamp.key",
            "/v2/_trust/changefeed?records=1",
        ] {
            let a = call(backend.clone(), "GET", path).await;
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(
                a.text(),
                "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"The server cannot serve this request right now.\",\"detail\":\"raft leader unknown\"}]}\n"
            );
        }
        // Liveness endpoints still answer.
        assert_eq!(call(backend.clone(), "GET", "/v2/").await.status, StatusCode::OK);
        assert_eq!(call(backend, "GET", "/metrics").await.status, StatusCode::OK);
    }

    fn parse_fixture_changes(text: &str) -> Vec<ChangeRecord> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| ChangeRecord {
                id: r["ID"].as_str().unwrap().parse().unwrap(),
                created_at: OffsetDateTime::parse(
                    r["CreatedAt"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap(),
                gun: r["GUN"].as_str().unwrap().into(),
                version: r["Version"].as_u64().unwrap(),
                sha256: r["SHA256"].as_str().unwrap().into(),
                category: if r["Category"] == "deletion" {
                    ChangeCategory::Deletion
                } else {
                    ChangeCategory::Update
                },
            })
            .collect()
    }

    #[tokio::test]
    async fn changefeed_body_matches_fixture() {
        let Some(dir) = fixtures_dir() else { return };
        let text =
            std::fs::read_to_string(dir.join("metadata/example.com_interop_app/2-final/changefeed.json")).unwrap();
        let backend = Arc::new(MemBackend {
            changes: parse_fixture_changes(&text),
            ..MemBackend::default()
        });
        let a = call(
            backend.clone(),
            "GET",
            &format!("/v2/{GUN}/_trust/changefeed?change_id=0&records=100"),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), text);
        assert_eq!(
            backend.queries.lock().unwrap()[0],
            ChangefeedQuery {
                gun: Some(GUN.into()),
                change_id: 0,
                records: 100,
                reversed: false
            }
        );
    }

    #[tokio::test]
    async fn changefeed_query_parsing() {
        let backend = Arc::new(MemBackend::default());
        for (query, expected) in [
            ("records=0", (0, 100, false)),
            ("records=10&change_id=5", (5, 10, false)),
            ("records=-5", (0, 5, true)),
            ("records=-5&change_id=-1", (-1, 5, true)),
            ("records=-1000", (0, 1000, true)),
            ("records=%2B7&change_id=", (0, 7, false)),
        ] {
            backend.queries.lock().unwrap().clear();
            let a = call(backend.clone(), "GET", &format!("/v2/_trust/changefeed?{query}")).await;
            assert_eq!(a.status, StatusCode::OK, "{query}");
            assert_eq!(a.text(), "{\"count\":0,\"records\":[]}");
            let q = backend.queries.lock().unwrap()[0].clone();
            assert_eq!((q.change_id, q.records, q.reversed), expected, "{query}");
            assert_eq!(q.gun, None);
        }
        let detail = |d: &str| {
            format!("{{\"errors\":[{{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: strconv.ParseInt: parsing {d}\"}}]}}\n")
        };
        for (query, body) in [
            ("", detail("\\\"\\\": invalid syntax")),
            ("records=abc", detail("\\\"abc\\\": invalid syntax")),
            ("records=1.5", detail("\\\"1.5\\\": invalid syntax")),
            ("records=99999999999", detail("\\\"99999999999\\\": value out of range")),
            (
                "records=-2147483648",
                "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: at most 1000 records a page, forward or back\"}]}\n".to_string(),
            ),
            (
                "records=1001",
                "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: at most 1000 records a page, forward or back\"}]}\n".to_string(),
            ),
            (
                "records=10&change_id=abc",
                "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":{}}]}\n".to_string(),
            ),
        ] {
            let a = call(backend.clone(), "GET", &format!("/v2/x/_trust/changefeed?{query}")).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(a.text(), body, "{query}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2Fb%20c").as_deref(), Some("/a/b c"));
        assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
        for bad in ["%", "%2", "%+f", "%zz", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_formats() {
        let t = time::macros::datetime!(2026-11-21 23:54:56.210447549 UTC);
        assert_eq!(rfc3339_nano(t), "2026-11-21T23:54:56.210447549Z");
        let t = time::macros::datetime!(2026-11-21 23:54:56.5 UTC);
        assert_eq!(rfc3339_nano(t), "2026-11-21T23:54:56.5Z");
        let t = time::macros::datetime!(2026-11-21 23:54:56 +01:00);
        assert_eq!(rfc3339_nano(t), "2026-11-21T22:54:56Z");
    }

    /// Sends raw HTTP/1.1 bytes to the app served on loopback; returns the
    /// raw response.
    async fn raw_exchange(state: AppState, request: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(state)).await.unwrap();
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        server.abort();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn notary_cli_upload_over_real_http() {
        let Some((ct, body)) = transcript_post(23) else {
            return;
        };
        let backend = Arc::new(MemBackend::default());
        let state = AppState::new(backend.clone(), Metrics::new().unwrap());
        let mut request = format!(
            "POST /v2/{GUN}/_trust/tuf/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: {ct}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let response = raw_exchange(state.clone(), request).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(!response.to_ascii_lowercase().contains("content-type"));
        let roles: Vec<String> = backend.published.lock().unwrap()[0]
            .1
            .iter()
            .map(|f| f.role.clone())
            .collect();
        assert_eq!(roles, ["targets/releases", "snapshot"]);

        let response = raw_exchange(
            state,
            b"GET /nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
        assert!(response.contains("content-type: application/json; charset=utf-8\r\n"));
        assert!(response.ends_with(
            "\r\n\r\n{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\"}]}\n"
        ));
    }

    struct DenyAll;
    impl AuthHook for DenyAll {
        fn check(&self, _route: &Route, _headers: &HeaderMap) -> Result<(), ApiError> {
            Err(ApiError::Unauthorized {
                access: vec![],
                challenge: Some("Bearer realm=\"x\"".into()),
            })
        }
    }

    #[tokio::test]
    async fn auth_hook_is_consulted() {
        let mut state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
        state.auth = Some(Arc::new(DenyAll));
        let req = |p: &str| Request::builder().uri(p).body(Body::empty()).unwrap();
        let a = call_with(state.clone(), req("/v2/")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.header(header::WWW_AUTHENTICATE), Some("Bearer realm=\"x\""));
        let a = call_with(state, req("/_notary_server/health")).await;
        assert_eq!(a.status, StatusCode::OK);
    }

    /// A cluster node's hooks that record what they were asked; forwarded writes wait for a
    /// permit of `hold` and are answered 202.
    struct Hooks {
        reads: Mutex<Vec<&'static str>>,
        forwarded: Mutex<Vec<(String, usize)>>,
        hold: tokio::sync::Semaphore,
    }

    impl Hooks {
        fn new(held: bool) -> Arc<Hooks> {
            Arc::new(Hooks {
                reads: Mutex::default(),
                forwarded: Mutex::default(),
                hold: tokio::sync::Semaphore::new(if held { 0 } else { 1 << 20 }),
            })
        }

        /// `builder` carrying these hooks as `cluster::read_layer` and `forward_layer` add them.
        fn on(self: &Arc<Self>, builder: axum::http::request::Builder) -> axum::http::request::Builder {
            let reads: Arc<dyn ClusterReads> = self.clone();
            let writes: Arc<dyn ClusterWrites> = self.clone();
            builder.extension(reads).extension(writes)
        }
    }

    #[async_trait]
    impl ClusterReads for Hooks {
        async fn before_read(&self, route: &Route, _: Option<&str>, _: &HeaderMap) -> Result<(), ApiError> {
            self.reads.lock().unwrap().push(route.operation());
            Ok(())
        }
    }

    #[async_trait]
    impl ClusterWrites for Hooks {
        fn leads(&self) -> bool {
            false
        }
        async fn forward(&self, parts: Parts, body: Bytes) -> Result<Response, (Parts, Bytes)> {
            self.forwarded
                .lock()
                .unwrap()
                .push((parts.uri.path().to_owned(), body.len()));
            let _permit = self.hold.acquire().await.unwrap();
            Ok(StatusCode::ACCEPTED.into_response())
        }
    }

    #[tokio::test]
    async fn admission_comes_before_any_cluster_work() {
        let hooks = Hooks::new(false);
        let mut state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
        let requests = || {
            let tuf = format!("/v2/{GUN}/_trust/tuf/");
            [
                ("GET", format!("{tuf}targets.json"), Some(("X-Seal-Min-Version", "99"))),
                ("GET", format!("{tuf}root.json?consistent"), None),
                (
                    "GET",
                    format!("{tuf}timestamp.key"),
                    Some(("X-Seal-Consistency", "linearizable")),
                ),
                ("GET", format!("/v2/{GUN}/_trust/changefeed?records=1"), None),
                (
                    "POST",
                    tuf.clone(),
                    Some(("Content-Type", "multipart/form-data; boundary=B")),
                ),
                ("DELETE", tuf.clone(), None),
                ("POST", format!("{tuf}snapshot.key"), None),
            ]
            .map(|(method, uri, header)| {
                let mut b = hooks.on(Request::builder().method(method).uri(uri));
                if let Some((k, v)) = header {
                    b = b.header(k, v);
                }
                b.body(Body::from(if method == "POST" { "--B--" } else { "" })).unwrap()
            })
        };

        // Refused: no read check, no wait, nothing forwarded.
        state.auth = Some(Arc::new(DenyAll));
        for request in requests() {
            let what = format!("{} {}", request.method(), request.uri());
            assert_eq!(
                call_with(state.clone(), request).await.status,
                StatusCode::UNAUTHORIZED,
                "{what}"
            );
        }
        assert!(hooks.reads.lock().unwrap().is_empty());
        assert!(hooks.forwarded.lock().unwrap().is_empty());

        // Admitted: the reads are checked, the writes forwarded with their bodies.
        state.auth = None;
        for request in requests() {
            call_with(state.clone(), request).await;
        }
        assert_eq!(
            *hooks.reads.lock().unwrap(),
            ["GetRole", "GetRole", "GetKey", "Changefeed"]
        );
        let tuf = format!("/v2/{GUN}/_trust/tuf/");
        assert_eq!(
            *hooks.forwarded.lock().unwrap(),
            [(tuf.clone(), 5), (tuf.clone(), 0), (format!("{tuf}snapshot.key"), 5)]
        );
    }

    #[tokio::test]
    async fn bodies_in_flight_to_the_leader_are_bounded() {
        let hooks = Hooks::new(true);
        let mut state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
        state.forward_budget = ForwardBudget::new(1000);
        state.limits.max_body_bytes = 1000;
        let budget = state.forward_budget.clone();
        let uri = format!("/v2/{GUN}/_trust/tuf/");
        let publish = |len: usize, declared: bool| {
            let mut b = hooks.on(Request::builder().method("POST").uri(&uri));
            if declared {
                b = b.header(header::CONTENT_LENGTH, len);
            }
            b.body(Body::from(vec![b'x'; len])).unwrap()
        };
        let spawned = |request| tokio::spawn(call_with(state.clone(), request));
        let forwarded = || hooks.forwarded.lock().unwrap().len();
        let until = |n: usize| async move {
            while forwarded() < n {
                tokio::task::yield_now().await;
            }
        };

        // 600 bytes held for a leader that has not answered yet.
        let first = spawned(publish(600, true));
        until(1).await;
        assert_eq!(budget.in_use(), 600);
        // 500 more, declared or not, do not fit: 503 with Notary's body, nothing forwarded.
        for declared in [true, false] {
            let a = call_with(state.clone(), publish(500, declared)).await;
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "declared: {declared}");
            assert_eq!(
                a.text(),
                "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"The server cannot serve this request right now.\",\"detail\":\"request bodies being forwarded to the Raft leader fill limits.max_forward_bytes_in_flight (1000 bytes); retry\"}]}\n"
            );
        }
        assert_eq!((forwarded(), budget.in_use()), (1, 600));
        // 400 fit.
        let second = spawned(publish(400, false));
        until(2).await;
        assert_eq!(budget.in_use(), 1000);
        // A body above limits.max_body_bytes is refused as before, whatever the budget.
        let a = call_with(state.clone(), publish(1001, true)).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

        // The leader answers: the bytes come back.
        hooks.hold.add_permits(2);
        assert_eq!(first.await.unwrap().status, StatusCode::ACCEPTED);
        assert_eq!(second.await.unwrap().status, StatusCode::ACCEPTED);
        assert_eq!(budget.in_use(), 0);
        hooks.hold.add_permits(1);
        assert_eq!(call_with(state, publish(1000, true)).await.status, StatusCode::ACCEPTED);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_reservation_gives_back_what_it_took() {
        let budget = ForwardBudget::new(10);
        let mut a = budget.take(4).unwrap();
        assert!(budget.take(7).is_none());
        assert!(a.grow(6));
        assert!(!a.grow(1));
        assert_eq!(budget.in_use(), 10);
        drop(a);
        assert_eq!(budget.in_use(), 0);
        assert!(budget.take(u64::MAX).is_none());
        let b = budget.take(10).unwrap();
        assert!(budget.take(1).is_none());
        drop(b);
        assert_eq!((budget.in_use(), budget.max()), (0, 10));
    }
}

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
