//! Checks a recorded [`History`]: whether the cluster kept its promises.
//!
//! [`check`] runs every [`Check`] over a history and returns one
//! [`CheckResult`] per check, each with the [`Violation`]s it found. It is
//! pure (no IO) and indexes the history once, so that each read is checked
//! with a binary search rather than a scan: histories of a million
//! operations are checked in seconds.
//!
//! The roles clients write are [`CLIENT_ROLES`] (`root`, `targets`,
//! `snapshot`); the server generates `timestamp`. A *write* is a
//! [`Publish`](OpKind::Publish) or a [`Rotate`](OpKind::Rotate). Times are
//! milliseconds since the run started; wall time is
//! [`Header::started_unix_ms`](crate::history::Header::started_unix_ms) plus
//! that.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Consistency, FinalState, History, NodeFinal, Observed, Op, OpKind, Outcome, RoleVersion};

/// The roles clients write (the server generates `timestamp`).
pub const CLIENT_ROLES: [&str; 3] = ["root", "targets", "snapshot"];

/// At most this many violations are kept per check; when more are found, one
/// more violation at the end says how many there were in all.
pub const MAX_VIOLATIONS: usize = 50;

/// One property a history must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// No two acknowledged writes wrote the same version of a role of a collection.
    DuplicateVersion,
    /// Every acknowledged write (and delete) is in every node's final state.
    LostWrite,
    /// Every node serves only versions some client wrote (and the server did not refuse).
    PhantomWrite,
    /// A linearizable read sees every write acknowledged before it began.
    LinearizableRead,
    /// A default or min-version read sees every write acknowledged more than
    /// `max_staleness_ms` before it began.
    BoundedStaleness,
    /// A min-version read gets at least the timestamp version it asked for.
    MinVersion,
    /// No read gets a timestamp that had expired.
    ExpiredTimestamp,
    /// Everything read verifies with the TUF client workflow.
    Verification,
    /// Every node ends in the same state.
    Convergence,
    /// Writes succeed again soon after the faults are healed.
    Liveness,
}

impl Check {
    /// Every check, in the order [`check`] reports them.
    pub const ALL: [Check; 10] = [
        Check::DuplicateVersion,
        Check::LostWrite,
        Check::PhantomWrite,
        Check::LinearizableRead,
        Check::BoundedStaleness,
        Check::MinVersion,
        Check::ExpiredTimestamp,
        Check::Verification,
        Check::Convergence,
        Check::Liveness,
    ];

    /// The check's kebab-case name, as serialized (`lost-write`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Check::DuplicateVersion => "duplicate-version",
            Check::LostWrite => "lost-write",
            Check::PhantomWrite => "phantom-write",
            Check::LinearizableRead => "linearizable-read",
            Check::BoundedStaleness => "bounded-staleness",
            Check::MinVersion => "min-version",
            Check::ExpiredTimestamp => "expired-timestamp",
            Check::Verification => "verification",
            Check::Convergence => "convergence",
            Check::Liveness => "liveness",
        }
    }

    /// One line saying what the check demands, for people.
    pub fn description(&self) -> &'static str {
        match self {
            Check::DuplicateVersion => "no two acknowledged writes of the same version of a role",
            Check::LostWrite => "every acknowledged write and delete is in every node's final state",
            Check::PhantomWrite => "nodes serve only versions that clients wrote and were not refused",
            Check::LinearizableRead => "linearizable reads see every write acknowledged before they began",
            Check::BoundedStaleness => "other reads see every write acknowledged max_staleness_ms before they began",
            Check::MinVersion => "min-version reads get at least the timestamp version asked for",
            Check::ExpiredTimestamp => "no read gets an expired timestamp",
            Check::Verification => "everything read verifies as a TUF client would",
            Check::Convergence => "every node ends in the same state",
            Check::Liveness => "a write succeeds within liveness_bound_ms of healing",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One way a history broke a [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The check it broke.
    pub check: Check,
    /// What happened, on one line, naming operations, nodes and times.
    pub message: String,
    /// The ids of the operations involved (empty when none is, e.g. for
    /// convergence, or for the line counting violations past the cap).
    pub ops: Vec<u64>,
}

/// The outcome of one [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check.
    pub check: Check,
    /// Whether the history passed it (no violation found).
    pub passed: bool,
    /// How many violations were found: more than [`violations`](Self::violations)
    /// lists when there were more than [`MAX_VIOLATIONS`].
    pub total: usize,
    /// The first [`MAX_VIOLATIONS`] violations found, plus one saying how
    /// many there were in all when there were more.
    pub violations: Vec<Violation>,
}

/// The outcome of every check on a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// One result per check, in the order of [`Check::ALL`].
    pub results: Vec<CheckResult>,
}

impl CheckReport {
    /// Whether the history passed every check.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    /// Every violation listed, check by check.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.results.iter().flat_map(|r| r.violations.iter())
    }

    /// Whether the history failed `check`.
    pub fn failed(&self, check: Check) -> bool {
        self.result(check).is_some_and(|r| !r.passed)
    }

    /// The result of `check`.
    pub fn result(&self, check: Check) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.check == check)
    }

    /// How many violations were found in all (including those past the cap).
    pub fn total_violations(&self) -> usize {
        self.results.iter().map(|r| r.total).sum()
    }
}

/// Checks `history` against every [`Check`].
pub fn check(history: &History) -> CheckReport {
    let index = Index::new(history);
    // `Check::ALL` lists every variant in declaration order, so a check's
    // sink is `sinks[check as usize]`.
    let mut sinks: Vec<Sink> = Check::ALL.iter().map(|&c| Sink::new(c)).collect();

    check_duplicate_versions(&index, &mut sinks[Check::DuplicateVersion as usize]);
    match &history.final_state {
        Some(fin) => {
            check_lost_writes(&index, fin, &mut sinks[Check::LostWrite as usize]);
            check_phantom_writes(&index, fin, &mut sinks[Check::PhantomWrite as usize]);
            check_convergence(history, fin, &mut sinks[Check::Convergence as usize]);
            check_liveness(history, fin, &mut sinks[Check::Liveness as usize]);
        }
        None => {
            for c in [
                Check::LostWrite,
                Check::PhantomWrite,
                Check::Convergence,
                Check::Liveness,
            ] {
                sinks[c as usize].add(&[], || "the run has no final state".to_string());
            }
        }
    }
    check_reads(&index, &mut sinks);

    CheckReport {
        results: sinks.into_iter().map(Sink::finish).collect(),
    }
}

/// Collects the violations of one check, keeping the first [`MAX_VIOLATIONS`].
struct Sink {
    check: Check,
    total: usize,
    kept: Vec<Violation>,
}

impl Sink {
    fn new(check: Check) -> Sink {
        Sink {
            check,
            total: 0,
            kept: Vec::new(),
        }
    }

    /// Records a violation; `message` is only formatted if it is kept.
    fn add(&mut self, ops: &[u64], message: impl FnOnce() -> String) {
        self.total += 1;
        if self.kept.len() < MAX_VIOLATIONS {
            self.kept.push(Violation {
                check: self.check,
                message: one_line(&message()),
                ops: ops.to_vec(),
            });
        }
    }

    fn finish(mut self) -> CheckResult {
        if self.total > self.kept.len() {
            let more = self.total - self.kept.len();
            self.kept.push(Violation {
                check: self.check,
                message: format!(
                    "... and {more} more {} violations ({} in all; only the first {} are listed)",
                    self.check,
                    self.total,
                    self.kept.len()
                ),
                ops: Vec::new(),
            });
        }
        CheckResult {
            check: self.check,
            passed: self.total == 0,
            total: self.total,
            violations: self.kept,
        }
    }
}

/// Messages are one line: newlines in server errors become spaces.
fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_string()
    }
}

fn is_write(op: &Op) -> bool {
    matches!(op.kind, OpKind::Publish { .. } | OpKind::Rotate { .. })
}

/// Small integer ids for strings (collections, roles).
#[derive(Default)]
struct Interner<'h> {
    ids: HashMap<&'h str, usize>,
    names: Vec<&'h str>,
}

impl<'h> Interner<'h> {
    fn intern(&mut self, s: &'h str) -> usize {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(s, id);
        self.names.push(s);
        id
    }

    fn get(&self, s: &str) -> Option<usize> {
        self.ids.get(s).copied()
    }
}

/// What the history says about one collection.
#[derive(Default, Clone, Copy)]
struct GunFacts<'h> {
    /// The acknowledged write (with files) that ended first.
    first_ok_write: Option<&'h Op>,
    /// The delete (any outcome) that started first.
    first_delete_start: Option<&'h Op>,
    /// The acknowledged delete that ended first.
    first_ok_delete: Option<&'h Op>,
    /// The first delete whose outcome is unknown.
    unknown_delete: Option<&'h Op>,
}

fn keep_min<'h>(slot: &mut Option<&'h Op>, op: &'h Op, key: fn(&Op) -> u64) {
    if slot.is_none_or(|o| key(op) < key(o)) {
        *slot = Some(op);
    }
}

/// The acknowledged writes of one role of one collection, by end time, with
/// the highest version written so far at each.
#[derive(Default)]
struct Timeline {
    ends: Vec<u64>,
    /// `(version, op index)` of the highest version among the first `i + 1`
    /// writes (the one acknowledged first on ties).
    best: Vec<(u64, usize)>,
}

impl Timeline {
    /// The highest version acknowledged by a write that ended before `t`.
    fn best_before(&self, t: u64) -> Option<(u64, usize)> {
        let n = self.ends.partition_point(|&e| e < t);
        n.checked_sub(1).and_then(|i| self.best.get(i).copied())
    }
}

/// `(end_ms, version, op index)` of one acknowledged file.
type WriteAt = (u64, u64, usize);

/// The history, indexed once for all checks.
struct Index<'h> {
    history: &'h History,
    guns: Interner<'h>,
    roles: Interner<'h>,
    /// The collection id of each op, by op index.
    op_gun: Vec<usize>,
    /// By collection id.
    facts: Vec<GunFacts<'h>>,
    timelines: HashMap<(usize, usize), Timeline>,
}

impl<'h> Index<'h> {
    fn new(history: &'h History) -> Index<'h> {
        let mut guns = Interner::default();
        let mut roles = Interner::default();
        let mut op_gun = Vec::with_capacity(history.ops.len());
        let mut facts: Vec<GunFacts<'h>> = Vec::new();
        // (collection, role) -> (end, version, op index) of each acknowledged file.
        let mut entries: HashMap<(usize, usize), Vec<WriteAt>> = HashMap::new();
        for (i, op) in history.ops.iter().enumerate() {
            let g = guns.intern(op.kind.gun());
            op_gun.push(g);
            if facts.len() <= g {
                facts.resize(g + 1, GunFacts::default());
            }
            let f = &mut facts[g];
            match &op.kind {
                OpKind::Publish { writes, .. } | OpKind::Rotate { writes, .. } => {
                    if op.outcome == Outcome::Ok && !writes.is_empty() {
                        keep_min(&mut f.first_ok_write, op, |o| o.end_ms);
                    }
                    for w in writes {
                        let r = roles.intern(&w.role);
                        if op.outcome == Outcome::Ok {
                            entries.entry((g, r)).or_default().push((op.end_ms, w.version, i));
                        }
                    }
                }
                OpKind::Delete { .. } => {
                    keep_min(&mut f.first_delete_start, op, |o| o.start_ms);
                    match op.outcome {
                        Outcome::Ok => keep_min(&mut f.first_ok_delete, op, |o| o.end_ms),
                        Outcome::Unknown => {
                            if f.unknown_delete.is_none() {
                                f.unknown_delete = Some(op);
                            }
                        }
                        Outcome::Fail => {}
                    }
                }
                OpKind::Read { .. } => {}
            }
        }
        let timelines = entries
            .into_iter()
            .map(|(key, mut e)| {
                // Stable: writes that ended together stay in file order.
                e.sort_by_key(|&(end, _, _)| end);
                let mut t = Timeline {
                    ends: Vec::with_capacity(e.len()),
                    best: Vec::with_capacity(e.len()),
                };
                let mut best: Option<(u64, usize)> = None;
                for (end, version, i) in e {
                    if best.is_none_or(|(v, _)| version > v) {
                        best = Some((version, i));
                    }
                    t.ends.push(end);
                    t.best.extend(best);
                }
                (key, t)
            })
            .collect();
        Index {
            history,
            guns,
            roles,
            op_gun,
            facts,
            timelines,
        }
    }

    fn ops(&self) -> &'h [Op] {
        &self.history.ops
    }

    fn facts(&self, gun: &str) -> GunFacts<'h> {
        self.guns
            .get(gun)
            .and_then(|g| self.facts.get(g).copied())
            .unwrap_or_default()
    }

    fn timeline(&self, gun: &str, role: &str) -> Option<&Timeline> {
        let key = (self.guns.get(gun)?, self.roles.get(role)?);
        self.timelines.get(&key)
    }
}

/// "node 3" or "nodes 1, 2, 4".
fn nodes_phrase(ids: &[u64]) -> String {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    if ids.len() == 1 {
        format!("node {list}")
    } else {
        format!("nodes {list}")
    }
}

/// The first 12 hex digits of a digest.
fn short(sha: &str) -> String {
    let s: String = sha.chars().take(12).collect();
    if s.len() < sha.len() {
        format!("{s}...")
    } else {
        s
    }
}

/// "publish app-1 targets v2 snapshot v2".
fn describe_write(op: &Op) -> String {
    let mut s = format!("{} {}", op.kind.name(), op.kind.gun());
    if let OpKind::Rotate { role, .. } = &op.kind {
        s.push_str(&format!(" ({role} key)"));
    }
    for w in op.kind.writes() {
        s.push_str(&format!(" {} v{}", w.role, w.version));
    }
    s
}

/// "root v1, snapshot v2, targets v2".
fn describe_roles(roles: &BTreeMap<String, RoleVersion>) -> String {
    if roles.is_empty() {
        return "no roles".to_string();
    }
    roles
        .iter()
        .map(|(r, v)| format!("{r} v{}", v.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups `(node, thing)` pairs by equal things, in order of first appearance.
fn group_nodes<T: PartialEq>(pairs: Vec<(u64, T)>) -> Vec<(Vec<u64>, T)> {
    let mut groups: Vec<(Vec<u64>, T)> = Vec::new();
    for (node, thing) in pairs {
        match groups.iter_mut().find(|(_, t)| *t == thing) {
            Some((nodes, _)) => nodes.push(node),
            None => groups.push((vec![node], thing)),
        }
    }
    groups
}

// ---------------------------------------------------------------------------
// 1. Duplicate versions

fn check_duplicate_versions(index: &Index<'_>, sink: &mut Sink) {
    let ops = index.ops();
    // (collection, role, version, op index) of every acknowledged file.
    let mut keys: Vec<(usize, usize, u64, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.outcome != Outcome::Ok || !is_write(op) {
            continue;
        }
        for w in op.kind.writes() {
            if let Some(r) = index.roles.get(&w.role) {
                keys.push((index.op_gun[i], r, w.version, i));
            }
        }
    }
    keys.sort_unstable();
    let mut start = 0;
    while start < keys.len() {
        let (g, r, v, first) = keys[start];
        let mut end = start + 1;
        while end < keys.len() && keys[end].0 == g && keys[end].1 == r && keys[end].2 == v {
            end += 1;
        }
        for &(_, _, _, other) in &keys[start + 1..end] {
            if other == first {
                continue;
            }
            let (a, b) = (&ops[first], &ops[other]);
            let role = index.roles.names.get(r).copied().unwrap_or("?");
            let sha = |op: &Op| {
                op.kind
                    .writes()
                    .iter()
                    .find(|w| w.role == role && w.version == v)
                    .map(|w| w.sha256.clone())
            };
            let (sa, sb) = (sha(a).unwrap_or_default(), sha(b).unwrap_or_default());
            sink.add(&[a.id, b.id], || {
                let content = if sa == sb {
                    format!("the same content (sha256 {})", short(&sa))
                } else {
                    format!("different content (sha256 {} and {})", short(&sa), short(&sb))
                };
                format!(
                    "ops {} and {} were both acknowledged writing {} {role} v{v}, with {content}: op {} through node {} at {}-{} ms, op {} through node {} at {}-{} ms",
                    a.id,
                    b.id,
                    a.kind.gun(),
                    a.id,
                    a.node,
                    a.start_ms,
                    a.end_ms,
                    b.id,
                    b.node,
                    b.start_ms,
                    b.end_ms,
                )
            });
        }
        start = end;
    }
}

// ---------------------------------------------------------------------------
// 2. Lost writes

/// What a node serves in place of an acknowledged file.
#[derive(PartialEq)]
enum Served<'a> {
    /// The collection is not in the node's final state at all.
    Unlisted,
    /// The node serves no such collection (404).
    NoCollection,
    /// The collection has no such role.
    NoRole,
    /// An older version, or the same version with other bytes.
    Version(&'a RoleVersion),
}

fn check_lost_writes(index: &Index<'_>, fin: &FinalState, sink: &mut Sink) {
    let healthy: Vec<&NodeFinal> = fin.nodes.iter().filter(|n| n.error.is_none()).collect();
    for (i, op) in index.ops().iter().enumerate() {
        if op.outcome != Outcome::Ok || !is_write(op) {
            continue;
        }
        let facts = index.facts.get(index.op_gun[i]).copied().unwrap_or_default();
        if facts.first_ok_delete.is_some() {
            // Checked below: the collection must be gone.
            continue;
        }
        // A delete that may have happened makes an absent collection fine; a
        // collection still served must still hold every acknowledged write.
        let maybe_deleted = facts.unknown_delete.is_some();
        let gun = op.kind.gun();
        for w in op.kind.writes() {
            let mut bad = Vec::new();
            for n in &healthy {
                let served = match n.guns.get(gun) {
                    None if maybe_deleted => continue,
                    None => Served::Unlisted,
                    Some(None) if maybe_deleted => continue,
                    Some(None) => Served::NoCollection,
                    Some(Some(roles)) => match roles.get(&w.role) {
                        None => Served::NoRole,
                        Some(rv) if rv.version > w.version || (rv.version == w.version && rv.sha256 == w.sha256) => {
                            continue
                        }
                        Some(rv) => Served::Version(rv),
                    },
                };
                bad.push((n.id, served));
            }
            if bad.is_empty() {
                continue;
            }
            sink.add(&[op.id], || {
                let what = group_nodes(bad)
                    .into_iter()
                    .map(|(nodes, served)| {
                        let one = nodes.len() == 1;
                        let subject = nodes_phrase(&nodes);
                        let serves = if one { "serves" } else { "serve" };
                        match served {
                            Served::Unlisted => {
                                format!(
                                    "{subject} {} not list {gun} in the final state",
                                    if one { "does" } else { "do" }
                                )
                            }
                            Served::NoCollection => format!("{subject} {serves} no {gun} (404)"),
                            Served::NoRole => format!("{subject} {serves} no {}", w.role),
                            Served::Version(rv) if rv.version == w.version => format!(
                                "{subject} {serves} {} v{} with other content (sha256 {}, not {})",
                                w.role,
                                rv.version,
                                short(&rv.sha256),
                                short(&w.sha256)
                            ),
                            Served::Version(rv) => format!("{subject} {serves} {} v{}", w.role, rv.version),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "op {} ({} {gun} {} v{}, acknowledged at {} ms through node {}) is lost: {what}",
                    op.id,
                    op.kind.name(),
                    w.role,
                    w.version,
                    op.end_ms,
                    op.node
                )
            });
        }
    }

    // Acknowledged deletes: the collection must be gone everywhere.
    for (g, facts) in index.facts.iter().enumerate() {
        let Some(delete) = facts.first_ok_delete else { continue };
        let gun = index.guns.names.get(g).copied().unwrap_or_default();
        let bad: Vec<(u64, &BTreeMap<String, RoleVersion>)> = healthy
            .iter()
            .filter_map(|n| match n.guns.get(gun) {
                Some(Some(roles)) => Some((n.id, roles)),
                _ => None,
            })
            .collect();
        if bad.is_empty() {
            continue;
        }
        sink.add(&[delete.id], || {
            let what = group_nodes(bad)
                .into_iter()
                .map(|(nodes, roles)| {
                    let serves = if nodes.len() == 1 { "serves" } else { "serve" };
                    format!("{} {serves} {gun} ({})", nodes_phrase(&nodes), describe_roles(roles))
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "op {} (delete {gun}, acknowledged at {} ms through node {}) is lost: {what}",
                delete.id, delete.end_ms, delete.node
            )
        });
    }
}

// ---------------------------------------------------------------------------
// 3. Phantom writes

fn check_phantom_writes(index: &Index<'_>, fin: &FinalState, sink: &mut Sink) {
    struct ServedFile<'a> {
        gun: &'a str,
        role: &'static str,
        rv: &'a RoleVersion,
        nodes: Vec<u64>,
        /// An acknowledged or maybe-applied write of exactly this file.
        written: bool,
        /// The first refused write of exactly this file.
        refused: Option<&'a Op>,
    }
    let mut served: Vec<ServedFile<'_>> = Vec::new();
    let mut by_key: HashMap<(&str, &str, u64, &str), usize> = HashMap::new();
    for n in fin.nodes.iter().filter(|n| n.error.is_none()) {
        for (gun, roles) in &n.guns {
            let Some(roles) = roles else { continue };
            for role in CLIENT_ROLES {
                let Some(rv) = roles.get(role) else { continue };
                let key = (gun.as_str(), role, rv.version, rv.sha256.as_str());
                match by_key.get(&key) {
                    Some(&i) => served[i].nodes.push(n.id),
                    None => {
                        by_key.insert(key, served.len());
                        served.push(ServedFile {
                            gun,
                            role,
                            rv,
                            nodes: vec![n.id],
                            written: false,
                            refused: None,
                        });
                    }
                }
            }
        }
    }
    if served.is_empty() {
        return;
    }
    for op in index.ops() {
        for w in op.kind.writes() {
            let key = (op.kind.gun(), w.role.as_str(), w.version, w.sha256.as_str());
            let Some(&i) = by_key.get(&key) else { continue };
            let s = &mut served[i];
            match op.outcome {
                Outcome::Ok | Outcome::Unknown => s.written = true,
                Outcome::Fail => {
                    if s.refused.is_none() {
                        s.refused = Some(op);
                    }
                }
            }
        }
    }
    for s in served.iter().filter(|s| !s.written) {
        let nodes = nodes_phrase(&s.nodes);
        match s.refused {
            Some(op) => sink.add(&[op.id], || {
                format!(
                    "op {} ({}, refused at {} ms through node {}: {}) was refused but took effect on {nodes}: {} {} v{} is served",
                    op.id,
                    describe_write(op),
                    op.end_ms,
                    op.node,
                    op.error.as_deref().unwrap_or("no error recorded"),
                    s.gun,
                    s.role,
                    s.rv.version
                )
            }),
            None => sink.add(&[], || {
                let serves = if s.nodes.len() == 1 { "serves" } else { "serve" };
                format!(
                    "{nodes} {serves} {} {} v{} (sha256 {}) that no client wrote",
                    s.gun,
                    s.role,
                    s.rv.version,
                    short(&s.rv.sha256)
                )
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Reads

fn read_label(op: &Op, mode: &str) -> String {
    format!(
        "{mode} read op {} of {} through node {} ({}-{} ms)",
        op.id,
        op.kind.gun(),
        op.node,
        op.start_ms,
        op.end_ms
    )
}

fn check_reads(index: &Index<'_>, sinks: &mut [Sink]) {
    let header = &index.history.header;
    let mut take = |c: Check| std::mem::replace(&mut sinks[c as usize], Sink::new(c));
    let mut lin = take(Check::LinearizableRead);
    let mut stale = take(Check::BoundedStaleness);
    let mut min = take(Check::MinVersion);
    let mut expired = take(Check::ExpiredTimestamp);
    let mut verify = take(Check::Verification);

    for op in index.ops() {
        let OpKind::Read {
            gun,
            consistency,
            observed: Some(observed),
        } = &op.kind
        else {
            continue;
        };
        if op.outcome != Outcome::Ok {
            continue;
        }
        let mode = match consistency {
            Consistency::Stale => "stale",
            Consistency::Linearizable => "linearizable",
            Consistency::MinVersion { .. } => "min-version",
        };

        if !observed.absent {
            // A read fetches several files one after another: a delete that ran meanwhile
            // can take the later ones away. That is no fault of what was served.
            let deleting = index
                .facts(gun)
                .first_delete_start
                .is_some_and(|d| d.start_ms < op.end_ms);
            let vanished = observed
                .verify_error
                .as_deref()
                .is_some_and(|e| e.contains(crate::history::LISTED_NOT_SERVED));
            if let Some(err) = observed.verify_error.as_ref().filter(|_| !(deleting && vanished)) {
                verify.add(&[op.id], || {
                    format!("{} failed verification: {err}", read_label(op, mode))
                });
            }
            if let Some(expires) = observed.timestamp_expires_unix_ms {
                let end_ms = i64::try_from(op.end_ms).unwrap_or(i64::MAX);
                let ended = header.started_unix_ms.saturating_add(end_ms);
                if expires <= ended {
                    expired.add(&[op.id], || {
                        format!(
                            "{} got a timestamp that had expired {} ms before the read ended (expires at Unix ms {expires})",
                            read_label(op, mode),
                            ended.saturating_sub(expires)
                        )
                    });
                }
            }
        }

        match consistency {
            Consistency::Linearizable => {
                check_recency(
                    index,
                    op,
                    gun,
                    observed,
                    op.start_ms,
                    "linearizable",
                    "before the read began",
                    &mut lin,
                );
            }
            Consistency::Stale | Consistency::MinVersion { .. } => {
                let bound = header.max_staleness_ms.saturating_add(header.staleness_slack_ms);
                let when = format!("more than {bound} ms (the staleness bound) before the read began");
                let before = op.start_ms.saturating_sub(bound);
                check_recency(index, op, gun, observed, before, mode, &when, &mut stale);
            }
        }

        if let Consistency::MinVersion { version } = consistency {
            let facts = index.facts(gun);
            if observed.absent {
                let deleting = facts.first_delete_start.is_some_and(|d| d.start_ms < op.end_ms);
                if !deleting {
                    min.add(&[op.id], || {
                        format!(
                            "{} asked for timestamp v{version} or later and got 404, though no delete of {gun} had started",
                            read_label(op, mode)
                        )
                    });
                }
            } else {
                match observed.versions.get("timestamp") {
                    None => min.add(&[op.id], || {
                        format!(
                            "{} asked for timestamp v{version} or later and got no timestamp",
                            read_label(op, mode)
                        )
                    }),
                    Some(rv) if rv.version < *version => min.add(&[op.id], || {
                        format!(
                            "{} asked for timestamp v{version} or later and got v{}",
                            read_label(op, mode),
                            rv.version
                        )
                    }),
                    Some(_) => {}
                }
            }
        }
    }

    for s in [lin, stale, min, expired, verify] {
        let c = s.check;
        sinks[c as usize] = s;
    }
}

/// Checks that `read` saw every write (and delete) of `gun` acknowledged
/// before `before` (ms).
#[allow(clippy::too_many_arguments)]
fn check_recency(
    index: &Index<'_>,
    read: &Op,
    gun: &str,
    observed: &Observed,
    before: u64,
    mode: &str,
    when: &str,
    sink: &mut Sink,
) {
    let ops = index.ops();
    let facts = index.facts(gun);
    if observed.absent {
        let write = facts.first_ok_write.filter(|w| w.end_ms < before);
        let deleting = facts.first_delete_start.is_some_and(|d| d.start_ms < read.end_ms);
        if let (Some(w), false) = (write, deleting) {
            sink.add(&[read.id, w.id], || {
                format!(
                    "{} got 404 (no collection), but op {} ({}) was acknowledged at {} ms, {when}, and no delete of {gun} had started",
                    read_label(read, mode),
                    w.id,
                    describe_write(w),
                    w.end_ms
                )
            });
        }
        return;
    }
    if let Some(d) = facts.first_ok_delete.filter(|d| d.end_ms < before) {
        sink.add(&[read.id, d.id], || {
            format!(
                "{} got {} although op {} deleting {gun} was acknowledged at {} ms, {when}",
                read_label(read, mode),
                describe_roles(&observed.versions),
                d.id,
                d.end_ms
            )
        });
    }
    for role in CLIENT_ROLES {
        let Some(seen) = observed.versions.get(role) else {
            continue;
        };
        let Some((version, i)) = index.timeline(gun, role).and_then(|t| t.best_before(before)) else {
            continue;
        };
        if seen.version >= version {
            continue;
        }
        let Some(w) = ops.get(i) else { continue };
        sink.add(&[read.id, w.id], || {
            format!(
                "{} got {role} v{}, but op {} ({}) was acknowledged at {} ms, {when}",
                read_label(read, mode),
                seen.version,
                w.id,
                describe_write(w),
                w.end_ms
            )
        });
    }
}

// ---------------------------------------------------------------------------
// 5. Convergence

type Guns = BTreeMap<String, Option<BTreeMap<String, RoleVersion>>>;

/// How a node's final state holds a collection, for messages.
fn describe_gun(guns: &Guns, gun: &str) -> String {
    match guns.get(gun) {
        None => format!("does not list {gun}"),
        Some(None) => format!("serves no {gun} (404)"),
        Some(Some(roles)) => format!("serves {gun} {}", describe_roles(roles)),
    }
}

/// The first difference between two nodes' collections: `(gun, a's, b's)`.
fn first_difference(a: &Guns, b: &Guns) -> Option<(String, String, String)> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    for gun in names {
        let (x, y) = (a.get(gun.as_str()), b.get(gun.as_str()));
        if x == y {
            continue;
        }
        if let (Some(Some(rx)), Some(Some(ry))) = (x, y) {
            // Name the first role that differs, with its digest when only that differs.
            let mut roles: Vec<&String> = rx.keys().chain(ry.keys()).collect();
            roles.sort();
            roles.dedup();
            for role in roles {
                let (vx, vy) = (rx.get(role.as_str()), ry.get(role.as_str()));
                if vx == vy {
                    continue;
                }
                let show = |v: Option<&RoleVersion>, other: Option<&RoleVersion>| match (v, other) {
                    (None, _) => format!("serves no {role}"),
                    (Some(v), Some(o)) if v.version == o.version => {
                        format!("serves {role} v{} (sha256 {})", v.version, short(&v.sha256))
                    }
                    (Some(v), _) => format!("serves {role} v{}", v.version),
                };
                return Some((gun.clone(), show(vx, vy), show(vy, vx)));
            }
        }
        return Some((gun.clone(), describe_gun(a, gun), describe_gun(b, gun)));
    }
    None
}

fn check_convergence(history: &History, fin: &FinalState, sink: &mut Sink) {
    for n in &history.header.nodes {
        if !fin.nodes.iter().any(|f| f.id == n.id) {
            sink.add(&[], || format!("node {} is missing from the final state", n.id));
        }
    }
    let mut healthy = Vec::new();
    for n in &fin.nodes {
        match &n.error {
            Some(err) => sink.add(&[], || format!("node {} could not be read at the end: {err}", n.id)),
            None => healthy.push(n),
        }
    }

    // State digests.
    let mut digests: Vec<(u64, &str)> = Vec::new();
    for n in &healthy {
        match &n.state_digest {
            Some(d) => digests.push((n.id, d.as_str())),
            None => sink.add(&[], || format!("node {} reported no state digest", n.id)),
        }
    }
    let groups = group_nodes(digests);
    if groups.len() > 1 {
        sink.add(&[], || {
            let applied = |id: u64| {
                healthy
                    .iter()
                    .find(|n| n.id == id)
                    .and_then(|n| n.applied_index)
                    .map_or_else(String::new, |i| format!(" at applied index {i}"))
            };
            let parts = groups
                .iter()
                .map(|(nodes, d)| {
                    let has = if nodes.len() == 1 { "has" } else { "have" };
                    let at = if nodes.len() == 1 {
                        applied(nodes[0])
                    } else {
                        String::new()
                    };
                    format!("{} {has} {}{at}", nodes_phrase(nodes), short(d))
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("state digests differ: {parts}")
        });
    }

    // Collections.
    let groups = group_nodes(healthy.iter().map(|n| (n.id, &n.guns)).collect());
    if let Some(((ref_nodes, ref_guns), rest)) = groups.split_first() {
        for (nodes, guns) in rest {
            sink.add(&[], || {
                let (subject, reference) = (nodes_phrase(nodes), nodes_phrase(ref_nodes));
                match first_difference(ref_guns, guns) {
                    Some((gun, theirs, ours)) => format!(
                        "{subject} and {reference} ended with different collections, first on {gun}: {reference} {}, {subject} {}",
                        plural_verb(&theirs, ref_nodes.len()),
                        plural_verb(&ours, nodes.len())
                    ),
                    None => format!("{subject} and {reference} ended with different collections"),
                }
            });
        }
    }
}

/// "serves …" → "serve …" (and "does not" → "do not") for several nodes.
fn plural_verb(phrase: &str, nodes: usize) -> String {
    if nodes == 1 {
        return phrase.to_string();
    }
    if let Some(rest) = phrase.strip_prefix("serves ") {
        format!("serve {rest}")
    } else if let Some(rest) = phrase.strip_prefix("does not ") {
        format!("do not {rest}")
    } else {
        phrase.to_string()
    }
}

// ---------------------------------------------------------------------------
// 6. Liveness

fn check_liveness(history: &History, fin: &FinalState, sink: &mut Sink) {
    let healed = fin.healed_at_ms;
    let bound = history.header.liveness_bound_ms;
    let mut first: Option<&Op> = None;
    let (mut failed, mut unknown) = (0u64, 0u64);
    for op in history.ops.iter().filter(|o| is_write(o) && o.start_ms >= healed) {
        match op.outcome {
            Outcome::Ok => keep_min(&mut first, op, |o| o.end_ms),
            Outcome::Fail => failed += 1,
            Outcome::Unknown => unknown += 1,
        }
    }
    match first {
        None => sink.add(&[], || {
            format!(
                "no write succeeded after the faults were healed at {healed} ms (of those started after it, {failed} were refused and {unknown} got no answer)"
            )
        }),
        Some(op) => {
            let took = op.end_ms.saturating_sub(healed);
            if took > bound {
                sink.add(&[op.id], || {
                    format!(
                        "the first write acknowledged after the faults were healed at {healed} ms, op {} through node {}, ended at {} ms: {took} ms after healing, more than the bound of {bound} ms",
                        op.id, op.node, op.end_ms
                    )
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
