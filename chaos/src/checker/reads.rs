//! The checks on reads: linearizable reads, bounded staleness, and the
//! minimum version a client asked for.

use super::*;

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

pub(super) fn check_reads(index: &Index<'_>, sinks: &mut [Sink]) {
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
pub(super) fn check_recency(
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
