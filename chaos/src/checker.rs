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

mod reads;
mod state;
mod writes;

use reads::check_reads;
use state::{check_convergence, check_liveness};
use writes::{check_duplicate_versions, check_lost_writes, check_phantom_writes};

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

#[cfg(test)]
mod tests;
