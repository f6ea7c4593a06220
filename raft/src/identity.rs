//! The cluster's identity: an id made when a cluster is formed (`cluster init`, `raft.bootstrap`,
//! a single node's first start, a restore or a forced new cluster), recorded in each member's
//! store, and carried by every Raft, forwarding and node-to-node admin call in the
//! [`CLUSTER_ID_HEADER`] metadata. A node refuses calls from another cluster (and Raft RPCs that
//! carry no id once it has one; an operator's admin and import calls carry none), so nodes of two
//! clusters never mix: a node that ran on its own, or a restored copy, cannot be taken in by the
//! live cluster, nor disturb its elections.
//!
//! A node with no id yet adopts the id of the first cluster whose Raft RPC reaches it, but only
//! when it holds nothing ([`seal_storage::Store::is_pristine`]) — a new node being added as a
//! learner — or when the caller is in the membership it holds (a node whose data predates
//! cluster ids).

use std::sync::{Arc, Mutex, RwLock};

use rand::RngCore;
use seal_storage::Store;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Metadata key carrying the caller's cluster id.
pub const CLUSTER_ID_HEADER: &str = "x-seal-cluster-id";

/// A new random cluster id: `seal-` and 32 hex digits.
pub fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("seal-{hex}")
}

/// How strictly a service checks its callers' cluster id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Raft RPCs: the caller must carry this node's id; a node without one adopts the caller's
    /// when it may.
    Raft,
    /// Cluster admin and forwarding: a caller carrying an id must carry this node's; an
    /// operator's command (`seal-node cluster`, `import-notary`) carries none.
    Admin,
}

/// This node's cluster id, shared by its transport, services and clients.
#[derive(Clone, Default)]
pub struct ClusterIdentity {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Where the id is recorded; taken away when the node shuts down, so that the database is
    /// not kept open by this handle.
    store: Mutex<Option<Store>>,
    id: RwLock<Option<String>>,
    /// Serialises adoption and creation.
    writing: Mutex<()>,
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClusterIdentity").field(&self.get()).finish()
    }
}

impl ClusterIdentity {
    /// Load the id recorded in `store` and keep `store` to record a new one in.
    pub(crate) fn attach(&self, store: Store) -> Result<(), seal_storage::Error> {
        let id = store.cluster_id()?;
        *self.inner.id.write().unwrap_or_else(|p| p.into_inner()) = id;
        *self.inner.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
        Ok(())
    }

    /// An identity that is `id` and records nothing: for a client that calls a cluster's nodes
    /// as one of its members without being a node (tests, tools).
    pub fn fixed(id: impl Into<String>) -> ClusterIdentity {
        let identity = ClusterIdentity::default();
        *identity.inner.id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.into());
        identity
    }

    /// Drop the handle on the store (the node is shutting down); the id is kept in memory.
    pub(crate) fn release_store(&self) {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn store(&self) -> Option<Store> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cluster id, if this node has one.
    pub fn get(&self) -> Option<String> {
        self.inner.id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, id: &str) -> Result<(), String> {
        let store = self.store().ok_or("the store is not open")?;
        store.set_cluster_id(id).map_err(|e| e.to_string())?;
        *self.inner.id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
        Ok(())
    }

    /// The cluster id, made and recorded now if this node has none (it forms a cluster).
    pub(crate) fn ensure(&self) -> Result<String, String> {
        let _w = self.inner.writing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = self.get() {
            return Ok(id);
        }
        let id = new_cluster_id();
        self.record(&id)?;
        tracing::info!(cluster_id = %id, "this node formed a new cluster");
        Ok(id)
    }

    /// Add this node's cluster id to an outgoing call.
    pub(crate) fn stamp<T>(&self, request: &mut Request<T>) {
        if let Some(id) = self.get() {
            if let Ok(v) = MetadataValue::try_from(id.as_str()) {
                request.metadata_mut().insert(CLUSTER_ID_HEADER, v);
            }
        }
    }

    /// Check the cluster id an incoming call carries. `what` names the call and its sender for
    /// the error; `sender_is_member` says whether the sending node is in the membership this node
    /// holds (for adoption by a node whose data predates cluster ids).
    pub(crate) fn check<T>(
        &self,
        request: &Request<T>,
        check: Check,
        what: &str,
        sender_is_member: impl FnOnce() -> bool,
    ) -> Result<(), Status> {
        let theirs = request
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let refuse = |message: String| {
            tracing::warn!("{message}");
            Err(Status::failed_precondition(message))
        };
        match (self.get(), theirs) {
            (Some(mine), Some(theirs)) if mine == theirs => Ok(()),
            (Some(mine), Some(theirs)) => refuse(format!(
                "{what} of cluster {theirs} refused: this node belongs to cluster {mine}"
            )),
            (Some(mine), None) if check != Check::Admin => refuse(format!(
                "{what} carries no cluster id, refused: this node belongs to cluster {mine}"
            )),
            (Some(_), None) | (None, None) => Ok(()),
            (None, Some(_)) if check != Check::Raft => Ok(()),
            (None, Some(theirs)) => self.adopt(&theirs, what, sender_is_member),
        }
    }

    fn adopt(&self, theirs: &str, what: &str, sender_is_member: impl FnOnce() -> bool) -> Result<(), Status> {
        let _w = self.inner.writing.lock().unwrap_or_else(|p| p.into_inner());
        match self.get() {
            Some(mine) if mine == theirs => return Ok(()),
            Some(mine) => {
                return Err(Status::failed_precondition(format!(
                    "{what} of cluster {theirs} refused: this node belongs to cluster {mine}"
                )))
            }
            None => {}
        }
        let store = self
            .store()
            .ok_or_else(|| Status::unavailable("this node is starting or stopping"))?;
        let pristine = store
            .is_pristine()
            .map_err(|e| Status::internal(format!("reading the store: {e}")))?;
        if !pristine && !sender_is_member() {
            let message = format!(
                "{what} of cluster {theirs} refused: this node holds data of another cluster \
                 (with no recorded cluster id); wipe its data directory to add it as a new node"
            );
            tracing::warn!("{message}");
            return Err(Status::failed_precondition(message));
        }
        self.record(theirs).map_err(Status::internal)?;
        tracing::info!(cluster_id = %theirs, "joined cluster");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(id) = id {
            r.metadata_mut()
                .insert(CLUSTER_ID_HEADER, MetadataValue::try_from(id).unwrap());
        }
        r
    }

    fn opened(dir: &std::path::Path) -> (ClusterIdentity, Store) {
        let store = Store::open(dir.join("db")).unwrap();
        let identity = ClusterIdentity::default();
        identity.attach(store.clone()).unwrap();
        (identity, store)
    }

    #[test]
    fn ids_are_random_and_recorded_once() {
        assert_ne!(new_cluster_id(), new_cluster_id());
        assert_eq!(new_cluster_id().len(), 5 + 32);
        let dir = tempfile::tempdir().unwrap();
        let (identity, store) = opened(dir.path());
        assert_eq!(identity.get(), None);
        let id = identity.ensure().unwrap();
        assert_eq!(identity.ensure().unwrap(), id);
        assert_eq!(store.cluster_id().unwrap(), Some(id));
    }

    #[test]
    fn calls_of_another_cluster_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _store) = opened(dir.path());
        let mine = identity.ensure().unwrap();
        for check in [Check::Raft, Check::Admin] {
            assert!(identity.check(&with_id(Some(&mine)), check, "x", || true).is_ok());
            let refused = identity
                .check(&with_id(Some("seal-other")), check, "AppendEntries from node 1", || {
                    true
                })
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
            assert!(refused.message().contains("seal-other") && refused.message().contains(&mine));
        }
        assert!(identity.check(&with_id(None), Check::Raft, "x", || true).is_err());
        assert!(identity.check(&with_id(None), Check::Admin, "x", || true).is_ok());
    }

    #[test]
    fn a_pristine_node_adopts_and_a_node_with_data_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, store) = opened(dir.path());
        identity
            .check(&with_id(Some("seal-c1")), Check::Raft, "x", || false)
            .unwrap();
        assert_eq!(store.cluster_id().unwrap().as_deref(), Some("seal-c1"));

        let dir = tempfile::tempdir().unwrap();
        let (identity, store) = opened(dir.path());
        store.log_append([(1, b"entry".to_vec())]).unwrap();
        // Admin calls never adopt.
        identity
            .check(&with_id(Some("seal-c1")), Check::Admin, "x", || false)
            .unwrap();
        assert_eq!(identity.get(), None);
        let refused = identity
            .check(&with_id(Some("seal-c1")), Check::Raft, "x", || false)
            .unwrap_err();
        assert!(
            refused.message().contains("holds data of another cluster"),
            "{refused:?}"
        );
        assert_eq!(store.cluster_id().unwrap(), None);
        // Data written before cluster ids, by a member of the caller's cluster.
        identity
            .check(&with_id(Some("seal-c1")), Check::Raft, "x", || true)
            .unwrap();
        assert_eq!(identity.get().as_deref(), Some("seal-c1"));
    }
}
