//! `trust_service.type = "remote"`: the node's keys live in signer services
//! (seal-signer, or Notary's notary-signer) reached over gRPC with mutual
//! TLS. The node never holds these private keys.
//!
//! The node may name several signers (`trust_service.signers`, after
//! Notary's single `hostname`/`port`) that hold the same keys: the signers
//! of a threshold cluster (any of them coordinates a signature), or signers
//! sharing an HSM. [`RemoteSigner`] keeps each one's health and sends each
//! call to a healthy one:
//!
//! * Healthy signers are tried first, starting with the one that answered
//!   last, each given `attempt_timeout`; then signers whose key backend said
//!   it could not sign; then signers found unreachable, each first given
//!   only [`DOWN_ATTEMPT`] to answer a health check, so a call with every
//!   signer down fails in well under a second, yet the first call after a
//!   signer comes back finds it and gets a whole attempt.
//! * The whole call is bounded by `call_timeout`; key creation, which on
//!   threshold signers is a distributed key generation with every signer,
//!   by `key_creation_timeout`, all of it for one signer at a time.
//! * A transport failure or timeout marks a signer down; any answer marks it
//!   up; a probe of every signer's gRPC health service each
//!   [`HEALTH_PROBE_INTERVAL`] finds signers going down without waiting for
//!   a write, and coming back.
//!
//! A retried `Sign` is safe: the signing policy signs identical content
//! again. A retried `CreateKey` may leave an unused key on the signer that
//! did not answer in time: harmless, and better than refusing new
//! collections while one signer is slow.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use seal_signer::client::{ClientConfig, ClientError, SignerClient};

use crate::config::{KeyAlgorithm, TrustServiceConfig};
use crate::metrics::Metrics;
use crate::signer::{CryptoService, KeyDescription, PublicKeyInfo, SignScope, Signature, SignatureMethod, SignerError};

/// How often the node asks every signer's health service whether it serves.
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The time a signer last found unreachable gets in a call: enough for a
/// loopback or LAN round trip and a TLS handshake, short enough that a call
/// with every signer down fails fast.
pub const DOWN_ATTEMPT: Duration = Duration::from_millis(200);

/// What the node knows of one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerHealth {
    /// Not called yet.
    Unknown,
    /// Answered its last call or probe.
    Up,
    /// Answered, but its key backend could not sign (an HSM gone, too few
    /// threshold peers).
    Degraded {
        /// What it said.
        reason: String,
    },
    /// Unreachable, or no answer in time.
    Down {
        /// Why.
        reason: String,
        /// Since when.
        since: Instant,
    },
}

impl SignerHealth {
    /// `up`, `unknown`, `degraded` or `down`.
    pub fn state(&self) -> &'static str {
        match self {
            SignerHealth::Unknown => "unknown",
            SignerHealth::Up => "up",
            SignerHealth::Degraded { .. } => "degraded",
            SignerHealth::Down { .. } => "down",
        }
    }

    /// The reason of a degraded or down signer, with how long ago.
    pub fn detail(&self) -> String {
        match self {
            SignerHealth::Unknown | SignerHealth::Up => String::new(),
            SignerHealth::Degraded { reason } => reason.clone(),
            SignerHealth::Down { reason, since } => format!("{reason} (for {:.1?})", since.elapsed()),
        }
    }
}

struct Member {
    /// `host:port`, as metrics and status name it.
    name: String,
    client: SignerClient,
    health: Mutex<SignerHealth>,
}

impl Member {
    fn health(&self) -> SignerHealth {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, health: SignerHealth) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        // A signer that stays down keeps the time it went down.
        if let (SignerHealth::Down { since, .. }, SignerHealth::Down { reason, .. }) = (&*h, &health) {
            let (since, reason) = (*since, reason.clone());
            *h = SignerHealth::Down { reason, since };
            return;
        }
        if *h != health {
            match &health {
                SignerHealth::Down { reason, .. } => tracing::warn!(signer = %self.name, %reason, "signer down"),
                SignerHealth::Degraded { reason } => {
                    tracing::warn!(signer = %self.name, %reason, "signer cannot sign now")
                }
                SignerHealth::Up if !matches!(*h, SignerHealth::Unknown) => {
                    tracing::info!(signer = %self.name, "signer up")
                }
                _ => {}
            }
        }
        *h = health;
    }
}

/// A [`CryptoService`] backed by one or more remote signers holding the
/// same keys.
pub struct RemoteSigner {
    members: Vec<Member>,
    /// The member that answered last: tried first.
    preferred: AtomicUsize,
    attempt_timeout: Duration,
    call_timeout: Duration,
    key_creation_timeout: Duration,
    metrics: Option<Metrics>,
}

fn signer_error(e: ClientError) -> SignerError {
    match e {
        ClientError::NotFound(key_id) => SignerError::KeyNotFound { key_id },
        ClientError::Unavailable(message) | ClientError::BackendUnavailable(message) => {
            SignerError::Unavailable { message }
        }
        ClientError::Refused { message, high_water } => SignerError::Refused { message, high_water },
        other => SignerError::Crypto {
            message: other.to_string(),
        },
    }
}

fn outcome<T>(r: &Result<T, ClientError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ClientError::Unavailable(_)) => "unavailable",
        Err(ClientError::BackendUnavailable(_)) => "backend_unavailable",
        Err(ClientError::Refused { .. }) => "refused",
        Err(ClientError::NotFound(_)) => "not_found",
        Err(_) => "error",
    }
}

fn parse_algorithm(name: &str) -> Result<KeyAlgorithm, SignerError> {
    match name {
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
        "rsa" => Ok(KeyAlgorithm::Rsa),
        other => Err(SignerError::UnsupportedAlgorithm {
            algorithm: other.to_owned(),
        }),
    }
}

/// How long one attempt on a member may take.
#[derive(Clone, Copy)]
enum Budget {
    /// `attempt_timeout` (after [`DOWN_ATTEMPT`]'s health check for a down member), within
    /// `call_timeout` for the whole call.
    Attempt,
    /// Key creation: what is left of `key_creation_timeout`.
    Creation,
}

impl RemoteSigner {
    /// Clients for every signer `config` names (`signers`, with
    /// `tls_ca_file`, `tls_client_cert`, `tls_client_key`, all required),
    /// counting calls in `metrics` when given.
    pub fn new(config: &TrustServiceConfig, metrics: Option<Metrics>) -> Result<RemoteSigner, String> {
        let need = |what: &str| format!("trust_service.{what} is required for a remote signer");
        if config.signers.is_empty() {
            return Err(need("hostname"));
        }
        let ca_file = config.tls_ca_file.clone().ok_or_else(|| need("tls_ca_file"))?;
        let cert_file = config.tls_client_cert.clone().ok_or_else(|| need("tls_client_cert"))?;
        let key_file = config.tls_client_key.clone().ok_or_else(|| need("tls_client_key"))?;
        let members = config
            .signers
            .iter()
            .map(|addr| {
                let client = SignerClient::new(&ClientConfig {
                    hostname: addr.hostname.clone(),
                    port: addr.port,
                    ca_file: ca_file.clone(),
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    connect_timeout: config.attempt_timeout,
                    timeout: config.call_timeout.max(config.key_creation_timeout),
                })
                .map_err(|e| format!("signer {addr}: {e}"))?;
                Ok(Member {
                    name: addr.to_string(),
                    client,
                    health: Mutex::new(SignerHealth::Unknown),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RemoteSigner {
            members,
            preferred: AtomicUsize::new(0),
            attempt_timeout: config.attempt_timeout,
            call_timeout: config.call_timeout,
            key_creation_timeout: config.key_creation_timeout,
            metrics,
        })
    }

    /// Every signer with what the node knows of it, in configured order.
    pub fn statuses(&self) -> Vec<(String, SignerHealth)> {
        self.members.iter().map(|m| (m.name.clone(), m.health())).collect()
    }

    fn record(&self, member: &Member, call: &str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.signer_calls.with_label_values(&[&member.name, call, outcome]).inc();
            let up = !matches!(member.health(), SignerHealth::Down { .. });
            m.signer_up.with_label_values(&[&member.name]).set(i64::from(up));
        }
    }

    /// The members in the order a call tries them: up (or not yet called)
    /// from the preferred one on, then degraded, then down (longest down
    /// first).
    fn order(&self) -> Vec<usize> {
        let n = self.members.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut healthy = Vec::new();
        let mut degraded = Vec::new();
        let mut down = Vec::new();
        for i in (0..n).map(|k| (start + k) % n) {
            match self.members[i].health() {
                SignerHealth::Unknown | SignerHealth::Up => healthy.push(i),
                SignerHealth::Degraded { .. } => degraded.push(i),
                SignerHealth::Down { since, .. } => down.push((since, i)),
            }
        }
        down.sort();
        healthy
            .into_iter()
            .chain(degraded)
            .chain(down.into_iter().map(|(_, i)| i))
            .collect()
    }

    /// Runs `f` on one member after another until one answers (anything
    /// but unavailable) or the call's deadline passes.
    async fn call<T, F, Fut>(&self, name: &'static str, budget: Budget, f: F) -> Result<T, SignerError>
    where
        F: Fn(SignerClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now()
            + match budget {
                Budget::Attempt => self.call_timeout,
                Budget::Creation => self.key_creation_timeout,
            };
        let mut failures = Vec::new();
        for (tried, i) in self.order().into_iter().enumerate() {
            let member = &self.members[i];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                failures.push(format!("{}: not tried, the call's deadline passed", member.name));
                continue;
            }
            // A signer found down first gets DOWN_ATTEMPT to show it is
            // back (its health service): a dead or hung one costs no more,
            // and one that came back then gets a whole attempt, however
            // long its first signature takes (a key to decrypt).
            if let SignerHealth::Down { .. } = member.health() {
                match tokio::time::timeout(DOWN_ATTEMPT.min(left), member.client.check_health()).await {
                    Ok(Ok(())) => member.set(SignerHealth::Up),
                    Ok(Err(e)) => {
                        self.record(member, "health", outcome::<()>(&Err(e.clone())));
                        failures.push(format!("{}: {e}", member.name));
                        continue;
                    }
                    Err(_) => {
                        failures.push(format!("{}: no answer within {DOWN_ATTEMPT:?}", member.name));
                        continue;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = match budget {
                Budget::Attempt => self.attempt_timeout,
                Budget::Creation => left,
            }
            .min(left);
            let started = Instant::now();
            let attempt = tokio::time::timeout(limit, f(member.client.clone()));
            // The health probe may find the signer down while this call
            // waits on it (a long key creation on a signer that hangs):
            // stop waiting then rather than at the deadline.
            let found_down = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let SignerHealth::Down { reason, since } = member.health() {
                        if since > started {
                            return reason;
                        }
                    }
                }
            };
            let result = tokio::select! {
                r = attempt => match r {
                    Ok(r) => r,
                    Err(_) => Err(ClientError::Unavailable(format!("no answer within {limit:?}"))),
                },
                reason = found_down => Err(ClientError::Unavailable(format!("found down while waiting: {reason}"))),
            };
            let outcome = outcome(&result);
            match result {
                Err(ClientError::Unavailable(reason)) => {
                    member.set(SignerHealth::Down {
                        reason: reason.clone(),
                        since: Instant::now(),
                    });
                    self.record(member, name, outcome);
                    failures.push(format!("{}: {reason}", member.name));
                }
                Err(ClientError::BackendUnavailable(reason)) => {
                    member.set(SignerHealth::Degraded { reason: reason.clone() });
                    self.record(member, name, outcome);
                    failures.push(format!("{}: {reason}", member.name));
                }
                answered => {
                    member.set(SignerHealth::Up);
                    self.record(member, name, outcome);
                    self.preferred.store(i, Ordering::Relaxed);
                    if tried > 0 {
                        if let Some(m) = &self.metrics {
                            m.signer_failovers.inc();
                        }
                        tracing::info!(signer = %member.name, call = name, tried = tried + 1, "signer call failed over");
                    }
                    return answered.map_err(signer_error);
                }
            }
        }
        Err(SignerError::Unavailable {
            message: if self.members.len() == 1 {
                failures.join("; ")
            } else {
                format!("no signer could answer: {}", failures.join("; "))
            },
        })
    }

    /// Asks every signer's health service at once and records the answers.
    pub async fn probe(&self) {
        let probes = self.members.iter().map(|member| async move {
            let result = match tokio::time::timeout(self.attempt_timeout, member.client.check_health()).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Unavailable(format!(
                    "no health answer within {:?}",
                    self.attempt_timeout
                ))),
            };
            let outcome = outcome(&result);
            match result {
                Ok(()) => {
                    // A degraded signer stays degraded until a call shows
                    // otherwise: its health service serves either way.
                    if !matches!(member.health(), SignerHealth::Degraded { .. }) {
                        member.set(SignerHealth::Up);
                    }
                }
                Err(ClientError::Unavailable(reason)) => member.set(SignerHealth::Down {
                    reason,
                    since: Instant::now(),
                }),
                Err(e) => member.set(SignerHealth::Degraded { reason: e.to_string() }),
            }
            self.record(member, "health", outcome);
        });
        futures_util::future::join_all(probes).await;
    }
}

/// Probes `signer` every [`HEALTH_PROBE_INTERVAL`] until `shutdown` fires.
pub async fn run_health_probe(signer: Arc<RemoteSigner>, shutdown: Arc<tokio::sync::Notify>) {
    loop {
        signer.probe().await;
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
            _ = shutdown.notified() => return,
        }
    }
}

#[async_trait]
impl CryptoService for RemoteSigner {
    async fn create_key(&self, gun: &str, role: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo, SignerError> {
        let k = self
            .call("create_key", Budget::Creation, |c| async move {
                c.create_key(algorithm.as_str(), gun, role).await
            })
            .await?;
        let info = PublicKeyInfo::new(parse_algorithm(&k.algorithm)?, k.public);
        if info.key_id != k.key_id {
            return Err(SignerError::Crypto {
                message: format!(
                    "the signer named key {} but its public key has ID {}",
                    k.key_id, info.key_id
                ),
            });
        }
        Ok(info)
    }

    async fn get_key(&self, key_id: &str) -> Result<KeyDescription, SignerError> {
        let k = self
            .call(
                "get_key",
                Budget::Attempt,
                |c| async move { c.get_key_info(key_id).await },
            )
            .await?;
        Ok(KeyDescription {
            info: PublicKeyInfo::new(parse_algorithm(&k.algorithm)?, k.public),
            // Notary's GetKeyInfo does not say which collection a key is for.
            gun: String::new(),
            role: k.role.unwrap_or_default(),
        })
    }

    async fn sign(&self, key_id: &str, message: &[u8], scope: SignScope<'_>) -> Result<Signature, SignerError> {
        let s = self
            .call("sign", Budget::Attempt, |c| async move {
                let named: Vec<(&str, &[u8])> = scope
                    .named
                    .and_then(|bytes| Some((seal_tuf::metadata::named_role(scope.role)?, bytes)))
                    .into_iter()
                    .collect();
                c.sign_bound(key_id, message, Some(scope.gun), Some(scope.role), &named)
                    .await
            })
            .await?;
        let method = match s.method.as_str() {
            "eddsa" => SignatureMethod::Eddsa,
            "ecdsa" => SignatureMethod::Ecdsa,
            other => {
                return Err(SignerError::UnsupportedAlgorithm {
                    algorithm: other.to_owned(),
                })
            }
        };
        Ok(Signature {
            key_id: key_id.to_owned(),
            method,
            signature: s.signature,
        })
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), SignerError> {
        self.call(
            "delete_key",
            Budget::Attempt,
            |c| async move { c.delete_key(key_id).await },
        )
        .await
    }

    /// Operational while at least one signer is not known to be down.
    fn operational(&self) -> Result<(), String> {
        let statuses = self.statuses();
        if statuses
            .iter()
            .any(|(_, h)| matches!(h, SignerHealth::Unknown | SignerHealth::Up))
        {
            return Ok(());
        }
        let reasons: Vec<String> = statuses
            .iter()
            .map(|(name, h)| format!("{name} {}: {}", h.state(), h.detail()))
            .collect();
        Err(format!("signer unavailable: {}", reasons.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SignerAddr, TrustServiceType};

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    #[tokio::test]
    async fn with_every_signer_down_a_call_fails_fast_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let pki = seal_signer::testing::TestPki::new(dir.path(), "t");
        let (cert, key) = pki.leaf("node");
        let signers: Vec<SignerAddr> = (0..3)
            .map(|_| SignerAddr {
                hostname: "localhost".into(),
                port: closed_port(),
            })
            .collect();
        let config = TrustServiceConfig {
            kind: TrustServiceType::Remote,
            hostname: None,
            port: None,
            tls_ca_file: Some(pki.ca_file()),
            tls_client_cert: Some(cert),
            tls_client_key: Some(key),
            key_algorithm: KeyAlgorithm::Ed25519,
            signers: signers.clone(),
            attempt_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            key_creation_timeout: Duration::from_secs(30),
        };
        let metrics = Metrics::new().unwrap();
        let remote = RemoteSigner::new(&config, Some(metrics.clone())).unwrap();
        assert!(remote.operational().is_ok(), "not yet called: assumed up");
        let scope = SignScope {
            gun: "example.com/a",
            role: "timestamp",
            named: None,
        };
        for round in 0..2 {
            let started = Instant::now();
            let e = remote.sign("k", b"{}", scope).await.unwrap_err();
            assert!(
                started.elapsed() < Duration::from_millis(900),
                "round {round}: {:?}",
                started.elapsed()
            );
            let SignerError::Unavailable { message } = e else {
                panic!("{e:?}")
            };
            for s in &signers {
                assert!(message.contains(&s.to_string()), "{message}");
            }
        }
        for (name, health) in remote.statuses() {
            assert_eq!(health.state(), "down", "{name}");
        }
        let reason = remote.operational().unwrap_err();
        assert!(reason.starts_with("signer unavailable: "), "{reason}");
        let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
        // The first call tried each signer; the second found them down and
        // asked each one's health service first, which did not answer.
        for call in ["sign", "health"] {
            let series = format!(
                "seal_signer_calls_total{{call=\"{call}\",outcome=\"unavailable\",signer=\"{}\"}} 1",
                signers[0]
            );
            assert!(text.lines().any(|l| l == series), "{series} missing in\n{text}");
        }
        assert!(
            text.contains(&format!("seal_signer_up{{signer=\"{}\"}} 0", signers[2])),
            "{text}"
        );
    }
}
