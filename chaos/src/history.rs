//! The history of a run: every operation with its start and end time, node
//! and outcome, every fault injected, and the state each node ended in.
//!
//! A history file is JSON lines, one [`Entry`] per line: a [`Header`] first,
//! then [`Op`]s and [`Fault`]s in the order they ended, then one
//! [`FinalState`]. Times are milliseconds since the run started, on the
//! runner's monotonic clock; [`Header::started_unix_ms`] maps them to wall
//! time (for expiry checks).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The history format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// The words in [`Observed::verify_error`] when a file the timestamp or snapshot names (by
/// hash) was not served (404).
pub const LISTED_NOT_SERVED: &str = "is listed but not served";

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// What was run; always the first line.
    Header(Header),
    /// One client operation.
    Op(Op),
    /// One fault, from injection to healing.
    Fault(Fault),
    /// Every node's state after the run healed and settled; the last line.
    Final(FinalState),
}

/// What was run, and the bounds the checker holds it to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: u32,
    /// The seed of the fault schedule and the workload's choices.
    pub seed: u64,
    /// Wall-clock time (Unix milliseconds) of time 0 of the run.
    pub started_unix_ms: i64,
    /// The planned length of the faulty part of the run.
    pub duration_ms: u64,
    /// The nemeses the schedule drew from.
    pub nemeses: Vec<String>,
    /// The nodes under test.
    pub nodes: Vec<NodeInfo>,
    /// The nodes' `raft.max_staleness_ms`: how far behind the leader a
    /// default (bounded-staleness) read may be.
    pub max_staleness_ms: u64,
    /// Added to `max_staleness_ms` when judging a bounded-staleness read: a node measures its
    /// staleness from when it last heard the leader, and the leader's message was sent up to
    /// one network delay (which a slow-network fault lengthens) earlier.
    #[serde(default)]
    pub staleness_slack_ms: u64,
    /// After the last fault is healed, a publish must be acknowledged
    /// within this long.
    pub liveness_bound_ms: u64,
}

/// A node under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Raft node id.
    pub id: u64,
    /// `host:port` of its Notary HTTP API.
    pub http: String,
    /// `voter` or `learner`.
    pub role: String,
}

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the server said it happened (a 2xx).
    Ok,
    /// Refused: the server said it did not happen (an error status).
    Fail,
    /// No answer (connection refused or cut, timeout): it may or may not
    /// have happened.
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique in the history.
    pub id: u64,
    /// The client (thread) that ran it; a client runs one operation at a time.
    pub client: u32,
    /// The id of the node it was sent to.
    pub node: u64,
    /// When the client started it.
    pub start_ms: u64,
    /// When the client had its answer (or gave up).
    pub end_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The status and error body, or the transport error, when not `Ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it was.
    #[serde(flatten)]
    pub kind: OpKind,
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    /// An upload of new metadata to a collection (`POST /v2/<gun>/_trust/tuf/`):
    /// the first publish (root, targets, snapshot) or a later one (targets and snapshot).
    Publish {
        /// The collection.
        gun: String,
        /// The files uploaded, each a version of one role.
        writes: Vec<RoleWrite>,
    },
    /// A key rotation: the server's new key for `role` (`POST …/<role>.key`) put in a new
    /// root, uploaded with a new snapshot. `writes` is empty when the key request itself failed.
    Rotate {
        /// The collection.
        gun: String,
        /// The rotated role (`timestamp`).
        role: String,
        /// The files uploaded.
        writes: Vec<RoleWrite>,
    },
    /// `DELETE /v2/<gun>/_trust/tuf/`: removes the collection. The workload never publishes
    /// to a collection again once it has sent a delete for it.
    Delete {
        /// The collection.
        gun: String,
    },
    /// A client read of a collection: `timestamp.json`, then the snapshot, targets and root
    /// files it names (by hash), each verified with seal-tuf's client workflow.
    Read {
        /// The collection.
        gun: String,
        /// What the read asked for.
        consistency: Consistency,
        /// What it got, when the node answered (`None` on failure).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed: Option<Observed>,
    },
}

impl OpKind {
    /// The collection the operation acts on.
    pub fn gun(&self) -> &str {
        match self {
            OpKind::Publish { gun, .. }
            | OpKind::Rotate { gun, .. }
            | OpKind::Delete { gun }
            | OpKind::Read { gun, .. } => gun,
        }
    }

    /// A short name: `publish`, `rotate`, `delete` or `read`.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Publish { .. } => "publish",
            OpKind::Rotate { .. } => "rotate",
            OpKind::Delete { .. } => "delete",
            OpKind::Read { .. } => "read",
        }
    }

    /// The files a write uploaded (empty for reads and deletes).
    pub fn writes(&self) -> &[RoleWrite] {
        match self {
            OpKind::Publish { writes, .. } | OpKind::Rotate { writes, .. } => writes,
            OpKind::Delete { .. } | OpKind::Read { .. } => &[],
        }
    }
}

/// One uploaded file: a version of a role, and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleWrite {
    /// `root`, `targets` or `snapshot`.
    pub role: String,
    /// Its version.
    pub version: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The consistency a read asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Consistency {
    /// The default: served from the node's state if the node is within
    /// [`Header::max_staleness_ms`] of the leader.
    Stale,
    /// `?consistent`: linearizable (ReadIndex through the leader).
    Linearizable,
    /// `X-Seal-Min-Version: <version>` on `timestamp.json`: at least that
    /// timestamp version (one this client saw before).
    MinVersion {
        /// The timestamp version asked for.
        version: u64,
    },
}

/// A version of one role as a node served it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleVersion {
    /// The version in the file.
    pub version: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// What a successful read got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The node answered 404: it has no such collection.
    pub absent: bool,
    /// The version of each role read (`timestamp`, `snapshot`, `targets`, `root`).
    #[serde(default)]
    pub versions: BTreeMap<String, RoleVersion>,
    /// The timestamp's `expires`, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_expires_unix_ms: Option<i64>,
    /// Why seal-tuf's client verification refused what was served; `None` when it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
    /// The node's `X-Seal-Applied-Index` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// The node's `X-Seal-Last-Contact` header (milliseconds since it last heard the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_ms: Option<u64>,
}

/// One fault, from injection to healing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Unique among the run's faults.
    pub id: u64,
    /// The nemesis: `kill`, `pause`, `partition`, `clock-skew`, `fsync-delay`, `signer-kill`, ….
    pub kind: String,
    /// The node ids it hit (empty for faults of the signer).
    pub nodes: Vec<u64>,
    /// What exactly was done, for people (`isolated leader 2`, `clock +7s on 3`, …).
    pub description: String,
    /// When it was injected.
    pub start_ms: u64,
    /// When it was healed (`None` if the run stopped before healing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

/// Every node's state after the run healed and settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    /// When the last fault was healed.
    pub healed_at_ms: u64,
    /// When the final state was read.
    pub at_ms: u64,
    /// One entry per node under test.
    pub nodes: Vec<NodeFinal>,
}

/// One node's state at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFinal {
    /// Raft node id.
    pub id: u64,
    /// Why the node's state could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node's applied log index when its digest was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// Hex SHA-256 over the node's whole state machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
    /// Every collection the workload touched: the current version of each
    /// role the node serves, or `None` when it serves none (404).
    #[serde(default)]
    pub guns: BTreeMap<String, Option<BTreeMap<String, RoleVersion>>>,
}

/// A whole history, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The first line.
    pub header: Header,
    /// Every operation, in file order.
    pub ops: Vec<Op>,
    /// Every fault, in file order.
    pub faults: Vec<Fault>,
    /// The last line, if the run got that far.
    pub final_state: Option<FinalState>,
}

/// Why a history file could not be read.
#[derive(Debug)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

impl History {
    /// Reads a history file.
    pub fn read(path: &Path) -> Result<History, ReadError> {
        let file = std::fs::File::open(path).map_err(|e| ReadError(format!("{}: {e}", path.display())))?;
        History::from_reader(std::io::BufReader::new(file)).map_err(|e| ReadError(format!("{}: {e}", path.display())))
    }

    /// Reads a history from JSON lines.
    pub fn from_reader(reader: impl BufRead) -> Result<History, ReadError> {
        let mut header = None;
        let mut ops = Vec::new();
        let mut faults = Vec::new();
        let mut final_state = None;
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| ReadError(format!("line {}: {e}", n + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line).map_err(|e| ReadError(format!("line {}: {e}", n + 1)))?;
            match entry {
                Entry::Header(h) if header.is_none() && n == 0 => {
                    if h.format != FORMAT {
                        return Err(ReadError(format!(
                            "history format {} (this tool reads {FORMAT})",
                            h.format
                        )));
                    }
                    header = Some(h);
                }
                Entry::Header(_) => return Err(ReadError(format!("line {}: a header not on the first line", n + 1))),
                _ if header.is_none() => return Err(ReadError("the first line is not a header".into())),
                _ if final_state.is_some() => {
                    return Err(ReadError(format!("line {}: an entry after the final state", n + 1)))
                }
                Entry::Op(op) => ops.push(op),
                Entry::Fault(f) => faults.push(f),
                Entry::Final(s) => final_state = Some(s),
            }
        }
        let header = header.ok_or_else(|| ReadError("empty history".into()))?;
        Ok(History {
            header,
            ops,
            faults,
            final_state,
        })
    }

    /// Writes the history as JSON lines.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        let mut line = |e: &Entry| -> std::io::Result<()> {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")
        };
        line(&Entry::Header(self.header.clone()))?;
        for op in &self.ops {
            line(&Entry::Op(op.clone()))?;
        }
        for f in &self.faults {
            line(&Entry::Fault(f.clone()))?;
        }
        if let Some(s) = &self.final_state {
            line(&Entry::Final(s.clone()))?;
        }
        Ok(())
    }
}

/// Appends entries to a history file as a run goes, one line each, flushed
/// as written so that a crashed run leaves everything up to the crash.
pub struct Recorder {
    out: std::sync::Mutex<std::io::BufWriter<std::fs::File>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Recorder {
    /// Creates `path` (truncating it) and writes `header` as its first line.
    pub fn create(path: &Path, header: &Header) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        let r = Recorder {
            out: std::sync::Mutex::new(std::io::BufWriter::new(file)),
            next_id: std::sync::atomic::AtomicU64::new(1),
        };
        r.append(&Entry::Header(header.clone()))?;
        Ok(r)
    }

    /// A new unique id for an operation or a fault.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends one entry.
    pub fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_writer(&mut *out, entry)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// Milliseconds since `t0` (time 0 of a run), as histories record times.
pub fn ms_since(t0: std::time::Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Hex SHA-256 of `bytes`, as histories record file contents.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT,
            seed: 7,
            started_unix_ms: 1_700_000_000_000,
            duration_ms: 60_000,
            nemeses: vec!["kill".into()],
            nodes: vec![NodeInfo {
                id: 1,
                http: "127.0.0.1:4443".into(),
                role: "voter".into(),
            }],
            max_staleness_ms: 2_000,
            staleness_slack_ms: 500,
            liveness_bound_ms: 10_000,
        }
    }

    #[test]
    fn round_trips_through_json_lines() {
        let h = History {
            header: header(),
            ops: vec![
                Op {
                    id: 1,
                    client: 0,
                    node: 1,
                    start_ms: 5,
                    end_ms: 9,
                    outcome: Outcome::Ok,
                    error: None,
                    kind: OpKind::Publish {
                        gun: "g/1".into(),
                        writes: vec![RoleWrite {
                            role: "targets".into(),
                            version: 2,
                            sha256: sha256_hex(b"x"),
                        }],
                    },
                },
                Op {
                    id: 2,
                    client: 1,
                    node: 1,
                    start_ms: 10,
                    end_ms: 12,
                    outcome: Outcome::Ok,
                    error: None,
                    kind: OpKind::Read {
                        gun: "g/1".into(),
                        consistency: Consistency::MinVersion { version: 3 },
                        observed: Some(Observed {
                            absent: false,
                            versions: BTreeMap::from([(
                                "targets".into(),
                                RoleVersion {
                                    version: 2,
                                    sha256: sha256_hex(b"x"),
                                },
                            )]),
                            timestamp_expires_unix_ms: Some(1_700_000_060_000),
                            verify_error: None,
                            applied_index: Some(40),
                            last_contact_ms: Some(3),
                        }),
                    },
                },
            ],
            faults: vec![Fault {
                id: 3,
                kind: "kill".into(),
                nodes: vec![1],
                description: "kill -9 leader 1".into(),
                start_ms: 6,
                end_ms: Some(11),
            }],
            final_state: Some(FinalState {
                healed_at_ms: 11,
                at_ms: 20,
                nodes: vec![NodeFinal {
                    id: 1,
                    error: None,
                    applied_index: Some(41),
                    state_digest: Some("ab".into()),
                    guns: BTreeMap::from([("g/1".into(), None)]),
                }],
            }),
        };
        let mut bytes = Vec::new();
        h.write_to(&mut bytes).unwrap();
        assert_eq!(History::from_reader(&bytes[..]).unwrap(), h);
    }

    #[test]
    fn refuses_histories_without_a_header_or_with_lines_after_the_end() {
        let op = r#"{"entry":"op","id":1,"client":0,"node":1,"start_ms":0,"end_ms":1,"outcome":"ok","op":"delete","gun":"g"}"#;
        assert!(History::from_reader(op.as_bytes()).is_err());
        let head = serde_json::to_string(&Entry::Header(header())).unwrap();
        let fin = r#"{"entry":"final","healed_at_ms":0,"at_ms":0,"nodes":[]}"#;
        assert!(History::from_reader(format!("{head}\n{fin}\n{op}\n").as_bytes()).is_err());
        assert!(History::from_reader(format!("{head}\n{op}\n{fin}\n").as_bytes()).is_ok());
        let mut old = header();
        old.format = FORMAT + 1;
        let old = serde_json::to_string(&Entry::Header(old)).unwrap();
        assert!(History::from_reader(old.as_bytes()).is_err());
    }
}
