//! The checks on writes: no version acknowledged twice with different
//! content, no acknowledged write lost, no write served that nobody made.

use super::*;

// ---------------------------------------------------------------------------
// 1. Duplicate versions

pub(super) fn check_duplicate_versions(index: &Index<'_>, sink: &mut Sink) {
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

pub(super) fn check_lost_writes(index: &Index<'_>, fin: &FinalState, sink: &mut Sink) {
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

pub(super) fn check_phantom_writes(index: &Index<'_>, fin: &FinalState, sink: &mut Sink) {
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
