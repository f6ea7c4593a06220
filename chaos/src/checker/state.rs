//! The checks on the end state: every node converged to the same state,
//! and writes went on being acknowledged after each fault healed.

use super::*;

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

pub(super) fn check_convergence(history: &History, fin: &FinalState, sink: &mut Sink) {
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

pub(super) fn check_liveness(history: &History, fin: &FinalState, sink: &mut Sink) {
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
