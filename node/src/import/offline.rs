//! Importing into a stopped single node's data directory (`seal-node import-notary --config`
//! or `--dev-data-dir`): the node's own Raft log is opened in this process, as `seal-node
//! serve` opens it for a node without `raft.addr`, and every collection is written through it
//! as the same `ImportCollection` command a cluster leader proposes, so the log, the state
//! machine and any node later added from it agree. A cluster member is refused: import
//! through the running cluster (`--addr`) instead, so that every replica gets the commands.

use std::sync::Arc;
use std::time::Duration;

use seal_raft::{RaftConfig, SealRaft};

use super::leader::Importer;
use super::ImportError;
use crate::config::{Env, NodeConfig, TrustServiceType};
use crate::remote_signer::RemoteSigner;
use crate::signer::CryptoService;

/// The opened node: its Raft (leading alone) and the importer over it.
pub struct LocalNode {
    raft: Arc<SealRaft>,
    /// Proposes collections through the node's own log.
    pub importer: Arc<Importer>,
}

impl LocalNode {
    /// Opens the stopped node `config` describes (`dev`: a `seal-node dev` data directory).
    pub async fn open(config: &NodeConfig, env: &Env, dev: bool) -> Result<LocalNode, ImportError> {
        let err = |e: &dyn std::fmt::Display| ImportError::Node(e.to_string());
        if config.raft.addr.is_some() {
            return Err(ImportError::Node(
                "this node is a cluster member (raft.addr is set): import through the running cluster \
                 with --addr, so that every replica gets the collections"
                    .into(),
            ));
        }
        let data_dir = config.storage.data_dir.clone();
        if !data_dir.join("raft").is_dir() {
            return Err(ImportError::Node(format!(
                "{} holds no node data (start the node once first)",
                data_dir.display()
            )));
        }
        let raft_config = RaftConfig::new(config.raft.node_id, "127.0.0.1:0", data_dir.join("raft"));
        // A node still running holds the database's lock: opening fails here.
        let raft = SealRaft::open(raft_config).await.map_err(|e| {
            ImportError::Node(format!(
                "opening {} (is the node still running?): {e}",
                data_dir.join("raft").display()
            ))
        })?;
        raft.wait_until_leader(Duration::from_secs(10))
            .await
            .map_err(|e| err(&e))?;
        // The signer after the Raft store: a running node is named by its lock there.
        let signer: Arc<dyn CryptoService> = match config.trust_service.kind {
            TrustServiceType::Local => {
                Arc::new(crate::server::open_in_process_signer(config, env, dev).map_err(|e| err(&e))?)
            }
            TrustServiceType::Remote => Arc::new(RemoteSigner::new(&config.trust_service, None).map_err(|e| err(&e))?),
        };
        let raft = Arc::new(raft);
        Ok(LocalNode {
            importer: Arc::new(Importer::new(raft.clone(), signer)),
            raft,
        })
    }

    /// Closes the node's log and store.
    pub async fn close(self) -> Result<(), ImportError> {
        drop(self.importer);
        match Arc::try_unwrap(self.raft) {
            Ok(raft) => raft.shutdown().await.map_err(|e| ImportError::Node(e.to_string())),
            Err(_) => Ok(()),
        }
    }
}
