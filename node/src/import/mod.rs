//! `seal-node import-notary`: bringing a Notary server's collections into Seal.
//!
//! * [`source`] reads Notary's database (MySQL/MariaDB or PostgreSQL);
//! * [`verify`] checks each collection with seal-tuf (pure);
//! * [`leader`] is the cluster leader's side: one collection in, one Raft command out;
//! * [`offline`] opens a stopped single node's own log to import into it;
//! * this module drives an import: every GUN, verified, sent to the leader (a few at a time),
//!   with progress on stderr and a final report. A collection that does not verify is named
//!   with its problems and not sent; one the leader refuses is named with the reason. Sending
//!   the same database again imports only what is missing (a collection already imported is a
//!   no-op), so an interrupted import is resumed by running it again.

pub mod cli;
pub mod leader;
pub mod offline;
pub mod source;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt as _};
use seal_raft::admin::ForwardedRequest;
use seal_raft::{AdminClient, ClusterTls};
use time::OffsetDateTime;
use tokio::sync::RwLock;

use self::leader::{ImportAnswer, IMPORT_PATH, IMPORT_SENDER};
use self::source::NotaryDb;

/// Why an import could not run at all (per-collection failures are in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The Notary database could not be reached or read.
    #[error("Notary database: {what}: {reason}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        reason: String,
    },
    /// The cluster could not be reached, or has no leader.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The stopped node could not be opened.
    #[error("node: {0}")]
    Node(String),
}

/// A stopped single node to import into (instead of a running cluster).
#[derive(Debug, Clone)]
pub struct LocalTarget {
    /// Its config (`seal-node serve`'s, or `dev_config`'s for a `seal-node dev` directory).
    pub config: crate::config::NodeConfig,
    /// The environment (the signer passphrase variable the config names).
    pub env: crate::config::Env,
    /// A `seal-node dev` data directory.
    pub dev: bool,
}

/// What to import, and where.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `mysql://…` or `postgres://…`.
    pub database_url: String,
    /// A cluster node's Raft address (any node: the leader is found from it).
    pub addr: String,
    /// The cluster TLS files (a certificate signed by the cluster CA).
    pub tls: ClusterTls,
    /// Collections in flight at once.
    pub concurrency: usize,
    /// Only verify; write nothing.
    pub check_only: bool,
    /// Import into this stopped node instead of the cluster at `addr`.
    pub local: Option<LocalTarget>,
    /// Print progress to stderr.
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// GUNs found in the database (files or changefeed).
    pub collections: u64,
    /// Collections written now.
    pub imported: u64,
    /// Collections that were already in Seal, identical (a resumed import).
    pub already_imported: u64,
    /// Collections that verified (with `check_only`, nothing was written).
    pub verified: u64,
    /// File versions in the collections imported or already imported.
    pub file_versions: u64,
    /// Changefeed records in them.
    pub changes: u64,
    /// `tuf_files` rows Notary had soft-deleted (never served): not imported.
    pub soft_deleted_rows: u64,
    /// Collections not imported, each with its problems.
    pub failed: Vec<(String, Vec<String>)>,
    /// Things to act on (collections whose timestamp key the signer does not hold).
    pub warnings: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Report {
    /// The report as printed at the end: one count per line, then each failure and warning.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "collections: {}\nimported: {}\nalready imported: {}\nverified: {}\nfailed: {}\n\
             file versions: {} ({:.0}/s)\nchangefeed records: {}\nsoft-deleted rows skipped: {}\n\
             elapsed: {:.2}s\n",
            self.collections,
            self.imported,
            self.already_imported,
            self.verified,
            self.failed.len(),
            self.file_versions,
            self.file_versions as f64 / secs,
            self.changes,
            self.soft_deleted_rows,
            secs,
        );
        for (gun, problems) in &self.failed {
            for p in problems {
                out.push_str(&format!("FAILED {gun}: {p}\n"));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("WARNING {w}\n"));
        }
        out
    }
}

enum Outcome {
    Verified {
        files: u64,
        changes: u64,
    },
    Done {
        already: bool,
        files: u64,
        changes: u64,
        warnings: Vec<String>,
    },
    Failed(String, Vec<String>),
}

/// The leader's client, found through any node, refreshed when leadership moves.
struct Leader {
    addr: String,
    tls: ClusterTls,
    client: RwLock<AdminClient>,
}

impl Leader {
    async fn find(addr: &str, tls: &ClusterTls) -> Result<AdminClient, ImportError> {
        let err = |e: &dyn std::fmt::Display| ImportError::Cluster(e.to_string());
        let node = AdminClient::new(addr, tls).map_err(|e| err(&e))?;
        let status = node.status().await.map_err(|e| err(&e))?;
        let leader = status
            .leader_id
            .ok_or_else(|| ImportError::Cluster(format!("{addr} knows no leader")))?;
        let member =
            status.members.iter().find(|m| m.id == leader).ok_or_else(|| {
                ImportError::Cluster(format!("leader {leader} is not among the members {addr} lists"))
            })?;
        AdminClient::new(&member.raft_addr, tls).map_err(|e| err(&e))
    }

    async fn send(&self, body: Vec<u8>) -> Result<(u32, ImportAnswer), String> {
        for _ in 0..5 {
            let client = self.client.read().await.clone();
            let request = ForwardedRequest {
                method: "POST".into(),
                uri: IMPORT_PATH.into(),
                headers: Vec::new(),
                body: body.clone(),
                sender: IMPORT_SENDER,
            };
            match client.forward(request).await {
                Ok(r) if r.not_leader => {}
                // Leadership moved between the check and the proposal, or no quorum yet.
                Ok(r) if r.status == 503 => {}
                Ok(r) => {
                    let answer: ImportAnswer = serde_json::from_slice(&r.body)
                        .map_err(|e| format!("the leader answered {} with an unreadable body: {e}", r.status))?;
                    return Ok((r.status, answer));
                }
                Err(e) if e.is_unreachable() => {}
                Err(e) => return Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Ok(c) = Self::find(&self.addr, &self.tls).await {
                *self.client.write().await = c;
            }
        }
        Err("no leader accepted the collection after 5 attempts".into())
    }
}

/// Imports every collection of the Notary database into the cluster (or only verifies them).
pub async fn run(opts: &ImportOptions) -> Result<Report, ImportError> {
    let started = Instant::now();
    let db = NotaryDb::connect(&opts.database_url).await?;
    let totals = db.totals().await?;
    let guns = db.guns().await?;
    let mut local_node = None;
    let sink = match (&opts.local, opts.check_only) {
        (_, true) => Sink::Check,
        (Some(local), false) => {
            let node = offline::LocalNode::open(&local.config, &local.env, local.dev).await?;
            let sink = Sink::Local(node.importer.clone());
            local_node = Some(node);
            sink
        }
        (None, false) => Sink::Cluster(Arc::new(Leader {
            client: RwLock::new(Leader::find(&opts.addr, &opts.tls).await?),
            addr: opts.addr.clone(),
            tls: opts.tls.clone(),
        })),
    };
    let mut report = Report {
        collections: guns.len() as u64,
        soft_deleted_rows: totals.soft_deleted,
        ..Report::default()
    };
    let now = OffsetDateTime::now_utc();
    let mut outcomes = stream::iter(guns)
        .map(|gun| {
            let db = db.clone();
            let sink = sink.clone();
            async move { one(&db, &sink, gun, now).await }
        })
        .buffer_unordered(opts.concurrency.max(1));
    let mut last_progress = Instant::now();
    let mut done = 0u64;
    while let Some(outcome) = outcomes.next().await {
        done += 1;
        match outcome? {
            Outcome::Verified { files, changes } => {
                report.verified += 1;
                report.file_versions += files;
                report.changes += changes;
            }
            Outcome::Done {
                already,
                files,
                changes,
                warnings,
            } => {
                report.verified += 1;
                if already {
                    report.already_imported += 1;
                } else {
                    report.imported += 1;
                }
                report.file_versions += files;
                report.changes += changes;
                report.warnings.extend(warnings);
            }
            Outcome::Failed(gun, problems) => report.failed.push((gun, problems)),
        }
        if opts.progress && (last_progress.elapsed() >= Duration::from_secs(1) || done == report.collections) {
            last_progress = Instant::now();
            eprintln!(
                "import-notary: {done}/{} collections, {} file versions, {} failed",
                report.collections,
                report.file_versions,
                report.failed.len()
            );
        }
    }
    drop(outcomes);
    if let Some(node) = local_node {
        node.close().await?;
    }
    report.failed.sort();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Where verified collections go.
#[derive(Clone)]
enum Sink {
    /// Nowhere (`--check`).
    Check,
    /// The running cluster's leader.
    Cluster(Arc<Leader>),
    /// A stopped node's own log.
    Local(Arc<leader::Importer>),
}

async fn one(db: &NotaryDb, sink: &Sink, gun: String, now: OffsetDateTime) -> Result<Outcome, ImportError> {
    let files = db.files(&gun).await?;
    let changes = db.changes(&gun).await?;
    let verified = match verify::verify_collection(&gun, files, &changes, now) {
        Ok(v) => v,
        Err(problems) => return Ok(Outcome::Failed(gun, problems)),
    };
    let n_files = verified.collection.files.len() as u64;
    let n_changes = verified.collection.changes.len() as u64;
    let body = match postcard::to_allocvec(&verified.collection) {
        Ok(b) => b,
        Err(e) => return Ok(Outcome::Failed(gun, vec![format!("encoding: {e}")])),
    };
    let answer = match sink {
        Sink::Check => {
            return Ok(Outcome::Verified {
                files: n_files,
                changes: n_changes,
            })
        }
        Sink::Cluster(leader) => leader.send(body).await,
        Sink::Local(importer) => {
            let (status, answer) = importer.import(&body).await;
            Ok((u32::from(status), answer))
        }
    };
    match answer {
        Ok((200, answer)) => Ok(Outcome::Done {
            already: answer.outcome == "already-imported",
            files: n_files,
            changes: n_changes,
            warnings: answer.warnings,
        }),
        Ok((status, answer)) => Ok(Outcome::Failed(
            gun,
            vec![format!("the leader refused it ({status}): {}", answer.reason)],
        )),
        Err(e) => Ok(Outcome::Failed(gun, vec![e])),
    }
}
