//! The leader's side of `seal-node import-notary`: one collection, sent over the cluster's
//! mutual-TLS forwarding service, proposed as one [`Command::ImportCollection`].
//!
//! The importer sends `POST` [`IMPORT_PATH`] with the postcard encoding of an
//! [`ImportedCollection`] and the sender id [`IMPORT_SENDER`]. No HTTP route has that path, and a
//! follower forwards only requests its router admitted, so only a holder of a cluster
//! certificate (as for `seal-node cluster …`) reaches this handler. The leader picks the
//! server keys from the collection's current root: each timestamp and snapshot key the root
//! lists that the signer holds (`GetKeyInfo`) becomes the active server key of that role.

use std::sync::Arc;

use seal_raft::admin::{BoxFuture, ForwardedRequest as HttpRequest, ForwardedResponse as HttpResponse, HttpHeader};
use seal_raft::{ForwardHandler, SealRaft};
use seal_storage::{ApplyOutcome, Command, ImportedCollection, KeyEntry};
use seal_tuf::metadata::{SNAPSHOT, TIMESTAMP};
use seal_tuf::{Root, SignedFile};
use serde::{Deserialize, Serialize};

use crate::signer::{CryptoService, SignerError};

/// The path of an import request (never an HTTP route).
pub const IMPORT_PATH: &str = "/_seal/import-notary/v1/collection";
/// The sender id an importer puts on its requests (no node has it).
pub const IMPORT_SENDER: u64 = u64::MAX;

/// The leader's answer to one collection, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportAnswer {
    /// `imported`, `already-imported` or `refused`.
    pub outcome: String,
    /// Why it was refused.
    #[serde(default)]
    pub reason: String,
    /// What the operator should know (a timestamp key the signer does not hold).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The server keys recorded, `role:key id`.
    #[serde(default)]
    pub server_keys: Vec<String>,
}

/// Runs import requests, and hands every other forwarded request to `inner`.
pub struct ImportHandler {
    inner: Arc<dyn ForwardHandler>,
    importer: Importer,
}

impl ImportHandler {
    /// Wraps the node's forwarding handler.
    pub fn new(inner: Arc<dyn ForwardHandler>, raft: Arc<SealRaft>, signer: Arc<dyn CryptoService>) -> ImportHandler {
        ImportHandler {
            inner,
            importer: Importer { raft, signer },
        }
    }
}

/// What a leader does with one collection: picks its server keys, proposes it.
pub struct Importer {
    raft: Arc<SealRaft>,
    signer: Arc<dyn CryptoService>,
}

impl Importer {
    /// An importer proposing through `raft` (which must lead) and asking `signer` for keys.
    pub fn new(raft: Arc<SealRaft>, signer: Arc<dyn CryptoService>) -> Importer {
        Importer { raft, signer }
    }

    /// Imports the postcard-encoded collection `body`: the HTTP status and the answer.
    pub async fn import(&self, body: &[u8]) -> (u16, ImportAnswer) {
        let refused = |status: u16, reason: String| {
            (
                status,
                ImportAnswer {
                    outcome: "refused".into(),
                    reason,
                    warnings: Vec::new(),
                    server_keys: Vec::new(),
                },
            )
        };
        let mut collection: ImportedCollection = match postcard::from_bytes(body) {
            Ok(c) => c,
            Err(e) => return refused(400, format!("malformed import request: {e}")),
        };
        let gun = collection.gun.clone();
        let mut warnings = Vec::new();
        let root = match current_root(&collection) {
            Ok(r) => r,
            Err(e) => return refused(400, format!("{gun}: {e}")),
        };
        if let Some(root) = &root {
            match self.server_keys(&gun, root).await {
                Ok((keys, w)) => {
                    collection.server_keys = keys;
                    warnings.extend(w);
                }
                Err(e) => return refused(503, format!("{gun}: asking the signer for its keys: {e}")),
            }
        }
        let existed = {
            let r = self.raft.read();
            let current = r.current_versions(&gun).map(|v| !v.is_empty());
            let feed = r.changefeed(Some(&gun), 0, 1).map(|v| !v.is_empty());
            match (current, feed) {
                (Ok(a), Ok(b)) => a || b,
                (Err(e), _) | (_, Err(e)) => return refused(500, format!("{gun}: reading the store: {e}")),
            }
        };
        let server_keys = collection
            .server_keys
            .iter()
            .map(|(role, k)| format!("{role}:{}", k.key_id))
            .collect();
        match self.raft.write(Command::ImportCollection(Box::new(collection))).await {
            Ok(ApplyOutcome::Applied) => (
                200,
                ImportAnswer {
                    outcome: if existed { "already-imported" } else { "imported" }.into(),
                    reason: String::new(),
                    warnings,
                    server_keys,
                },
            ),
            Ok(ApplyOutcome::Rejected { reason }) => refused(409, reason),
            Ok(other) => refused(409, format!("{gun}: {other:?}")),
            Err(e) => refused(503, format!("{gun}: proposing the import: {e}")),
        }
    }

    /// The active server key of each role the signer holds a key of, and a warning when it
    /// holds no timestamp key (Seal could not refresh the timestamp).
    async fn server_keys(&self, gun: &str, root: &Root) -> Result<(Vec<(String, KeyEntry)>, Vec<String>), SignerError> {
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        for role in [TIMESTAMP, SNAPSHOT] {
            let mut found = None;
            for key_id in root.role(role).map(|r| r.keyids.clone()).unwrap_or_default() {
                match self.signer.get_key(&key_id).await {
                    // A key made for another collection would be refused by the signer's policy.
                    Ok(desc) if !desc.gun.is_empty() && desc.gun != gun => warnings.push(format!(
                        "{gun}: the signer's key {key_id} for the {role} role was made for {:?}: not used",
                        desc.gun
                    )),
                    Ok(desc) => {
                        found = Some(KeyEntry {
                            key_id: desc.info.key_id.clone(),
                            public_key_json: desc.info.to_notary_json().into_bytes(),
                        });
                        break;
                    }
                    Err(SignerError::KeyNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match found {
                Some(k) => keys.push((role.to_owned(), k)),
                None if role == TIMESTAMP => warnings.push(format!(
                    "{gun}: the signer holds none of the timestamp keys the root lists: Seal cannot refresh \
                     this collection's timestamp (import notary-signer's keys first: seal-signer import-notary)"
                )),
                None => {}
            }
        }
        Ok((keys, warnings))
    }
}

/// The root of the highest version among the collection's files.
fn current_root(c: &ImportedCollection) -> Result<Option<Root>, String> {
    let Some(f) = c.files.iter().filter(|f| f.role == "root").max_by_key(|f| f.version) else {
        return Ok(None);
    };
    let file = SignedFile::parse("root", f.bytes.clone()).map_err(|e| e.to_string())?;
    Root::from_signed(file.signed()).map(Some).map_err(|e| e.to_string())
}

impl ForwardHandler for ImportHandler {
    fn handle(&self, request: HttpRequest) -> BoxFuture<'_, HttpResponse> {
        if request.uri != IMPORT_PATH || request.sender != IMPORT_SENDER {
            return self.inner.handle(request);
        }
        Box::pin(async move {
            if !self.importer.raft.metrics().is_leader {
                // The importer asks the cluster for its leader again.
                return HttpResponse {
                    not_leader: true,
                    ..HttpResponse::default()
                };
            }
            let (status, answer) = if request.method == "POST" {
                self.importer.import(&request.body).await
            } else {
                (
                    405,
                    ImportAnswer {
                        outcome: "refused".into(),
                        reason: "POST only".into(),
                        warnings: Vec::new(),
                        server_keys: Vec::new(),
                    },
                )
            };
            HttpResponse {
                not_leader: false,
                status: u32::from(status),
                headers: vec![HttpHeader {
                    name: "content-type".into(),
                    value: b"application/json".to_vec(),
                }],
                body: serde_json::to_vec(&answer).unwrap_or_default(),
            }
        })
    }
}
