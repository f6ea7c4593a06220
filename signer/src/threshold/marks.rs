//! High-water marks shared between the signers of a threshold cluster.
//!
//! Each participant checks the policy against its own mark before it gives
//! a signature share. With marks kept per signer only, a compromised
//! coordinator could pair with the honest signer whose mark is oldest and
//! get an old version signed. So:
//!
//! * after it contributes a share, a participant announces its new mark
//!   (key, version, content SHA-256) to every other signer, best effort,
//!   over the peers' mutual TLS; a signer takes an announcement only from a
//!   peer whose configured `name` the caller's certificate carries, and
//!   raises its own mark to it (never lowers it);
//! * a signer starting up asks every reachable peer for its marks
//!   ([`ThresholdBackend::learn_marks`]) before it serves.
//!
//! An announcement more than `policy.max_version_jump` above the callee's
//! own mark is refused: a compromised peer can push honest marks up by at
//! most what it could get by asking honest participants to sign a high
//! version itself, and an honest node skips past a mark it is told of. The
//! snapshot-binding mark (`named_version`) is not shared: a forged one
//! could not be skipped past, so one compromised signer could stop every
//! timestamp of a collection.

use std::sync::Arc;

use seal_proto::threshold::{AnnounceMarkRequest, Mark, MarksRequest};

use super::{lock, with_timeout, ThresholdBackend, ThresholdError, BACKEND_NAME};
use crate::policy::HighWater;

fn to_mark(key_id: &str, hw: &HighWater) -> Mark {
    Mark {
        key_id: key_id.to_owned(),
        version: hw.version,
        content_sha256: hw.content_sha256.to_vec(),
    }
}

impl ThresholdBackend {
    /// Tells every peer this signer's new mark of `key_id`, in the
    /// background; a peer that does not answer within the peer timeout
    /// misses it (and learns it when it next starts).
    pub(crate) fn announce_mark(self: &Arc<Self>, key_id: &str, hw: &HighWater) {
        let Ok(transport) = self.transport().cloned() else {
            return;
        };
        let req = AnnounceMarkRequest {
            from: u32::from(self.config.self_id),
            mark: Some(to_mark(key_id, hw)),
        };
        for peer in &self.config.peers {
            let (transport, req, to, timeout) = (transport.clone(), req.clone(), peer.id, self.config.peer_timeout);
            tokio::spawn(async move {
                if let Err(e) = with_timeout(to, timeout, transport.announce_mark(to, req)).await {
                    tracing::debug!(peer = to, code = %e.kind(), message = %e, "mark announcement not delivered");
                }
            });
        }
    }

    /// Raises this signer's mark of a threshold key it holds to `mark`
    /// (announced by signer `from`) when it is higher; returns whether it
    /// did. Unknown keys are ignored.
    pub(crate) fn merge_mark(&self, from: u16, mark: &Mark) -> Result<bool, ThresholdError> {
        let sha: [u8; 32] = mark
            .content_sha256
            .as_slice()
            .try_into()
            .map_err(|_| ThresholdError::InvalidArgument("a mark's content_sha256 is 32 bytes".into()))?;
        let _guard = lock(&self.participant);
        let internal = |e: crate::store::StoreError| ThresholdError::Failed(e.to_string());
        match self.store.key(&mark.key_id).map_err(internal)? {
            Some(record) if record.backend == BACKEND_NAME => {}
            _ => return Ok(false),
        }
        let own = self.store.high_water(&mark.key_id).map_err(internal)?;
        let own_version = own.as_ref().map_or(0, |h| h.version);
        if mark.version <= own_version {
            return Ok(false);
        }
        if mark.version - own_version > self.policy.max_version_jump {
            tracing::warn!(peer = from, key_id = %mark.key_id, version = mark.version, own_version,
                "refused a mark announcement further above this signer's mark than policy.max_version_jump");
            return Err(ThresholdError::MarkTooHigh {
                key_id: mark.key_id.clone(),
                version: mark.version,
                own: own_version,
                max_jump: self.policy.max_version_jump,
            });
        }
        let merged = HighWater {
            version: mark.version,
            content_sha256: sha,
            named_version: own.map_or(0, |h| h.named_version),
        };
        self.store.set_high_water(&mark.key_id, &merged).map_err(internal)?;
        tracing::debug!(peer = from, key_id = %mark.key_id, version = mark.version, "mark raised by a peer");
        Ok(true)
    }

    /// Every mark of a threshold key this signer holds.
    pub(crate) fn marks(&self) -> Result<Vec<Mark>, ThresholdError> {
        let internal = |e: crate::store::StoreError| ThresholdError::Failed(e.to_string());
        let mut out = Vec::new();
        for record in self.store.keys().map_err(internal)? {
            if record.backend != BACKEND_NAME {
                continue;
            }
            if let Some(hw) = self.store.high_water(&record.key_id).map_err(internal)? {
                out.push(to_mark(&record.key_id, &hw));
            }
        }
        Ok(out)
    }

    /// Asks every peer at once for its marks (each within the peer
    /// timeout) and raises this signer's marks to them; returns how many
    /// went up. Call before serving: a signer that was down while others
    /// signed then refuses the versions they already signed.
    pub async fn learn_marks(self: &Arc<Self>) -> usize {
        let Ok(transport) = self.transport().cloned() else {
            return 0;
        };
        let from = u32::from(self.config.self_id);
        let mut set = tokio::task::JoinSet::new();
        for peer in &self.config.peers {
            let (transport, to, timeout) = (transport.clone(), peer.id, self.config.peer_timeout);
            set.spawn(async move {
                (
                    to,
                    with_timeout(to, timeout, transport.marks(to, MarksRequest { from })).await,
                )
            });
        }
        let mut raised = 0;
        while let Some(joined) = set.join_next().await {
            let Ok((peer, result)) = joined else { continue };
            match result {
                Ok(r) => {
                    for mark in &r.marks {
                        match self.merge_mark(peer, mark) {
                            Ok(true) => raised += 1,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(peer, key_id = %mark.key_id, message = %e, "peer mark not taken")
                            }
                        }
                    }
                }
                Err(e) => tracing::info!(peer, message = %e, "peer marks not learned at start-up"),
            }
        }
        raised
    }
}
