//! Nemeses: the faults a run injects, one at a time, on a schedule drawn
//! from the seed before the run starts, so that the same seed replays the
//! same schedule. Which node "the leader" is gets resolved when the fault
//! is injected.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, NodeFaults};

/// Every nemesis, by name.
pub const ALL: &[&str] = &[
    "kill",
    "pause",
    "partition",
    "slow-network",
    "signer",
    "clock-skew",
    "fsync-delay",
];

/// The nemeses that need seal-node's fault switches (the `fault-injection` build).
pub const NEED_SWITCHES: &[&str] = &["clock-skew", "fsync-delay"];

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// Whichever node leads when the fault starts.
    Leader,
    /// The n-th node (0-based, voters first); a follower or learner when it happens to lead.
    Node(usize),
}

/// A network partition's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// One node cut off from every other, both ways.
    Isolate(Who),
    /// The voters split into a majority and a minority (the minority: these voter indexes).
    Minority(Vec<usize>),
    /// Two groups that cannot reach each other, and one node (the bridge) that reaches both.
    Bridge(usize),
    /// One node's calls to another are dropped; the other way works.
    OneWay(Who, usize),
}

/// What happens to the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerFault {
    /// `kill -9`, restarted when healed.
    Kill,
    /// SIGSTOP, SIGCONT when healed.
    Pause,
    /// One node cut off from it.
    Cut,
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Planned {
    /// `kill -9`, restarted when healed.
    Kill {
        /// The node.
        who: Who,
    },
    /// SIGSTOP, SIGCONT when healed.
    Pause {
        /// The node.
        who: Who,
    },
    /// A network partition between nodes.
    Partition {
        /// Its shape.
        shape: Shape,
    },
    /// Every message arriving at a node from its peers is delayed, and some connections cut.
    SlowNetwork {
        /// The node.
        who: Who,
        /// Added to every chunk.
        delay_ms: u64,
        /// Probability that a chunk cuts its connection.
        loss: f64,
    },
    /// The signer is killed (restarted when healed) or paused, or one node is cut off from it.
    Signer {
        /// What happens to it.
        how: SignerFault,
        /// For `cut`: the node.
        who: Who,
    },
    /// A node's wall clock is offset.
    ClockSkew {
        /// The node.
        who: Who,
        /// The offset.
        offset_ms: i64,
    },
    /// A node's synced writes are slowed.
    FsyncDelay {
        /// The node.
        who: Who,
        /// Slept before each synced write.
        delay_ms: u64,
    },
}

impl Planned {
    /// The nemesis's name (one of [`ALL`]).
    pub fn name(&self) -> &'static str {
        match self {
            Planned::Kill { .. } => "kill",
            Planned::Pause { .. } => "pause",
            Planned::Partition { .. } => "partition",
            Planned::SlowNetwork { .. } => "slow-network",
            Planned::Signer { .. } => "signer",
            Planned::ClockSkew { .. } => "clock-skew",
            Planned::FsyncDelay { .. } => "fsync-delay",
        }
    }
}

/// A fault in the schedule: after `quiet` without faults, `fault` for `hold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Time without a fault first.
    pub quiet_ms: u64,
    /// How long the fault lasts.
    pub hold_ms: u64,
    /// The fault.
    pub fault: Planned,
}

/// The schedule for `duration` drawn from `seed`, over the nemeses named (which must all be
/// in [`ALL`]) on a cluster of `voters` voters and `learners` learners.
pub fn plan(seed: u64, duration: Duration, nemeses: &[String], voters: usize, learners: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let total = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let nodes = voters + learners;
    let mut at = 0u64;
    let mut steps = Vec::new();
    if nemeses.is_empty() {
        return steps;
    }
    loop {
        let quiet_ms = rng.gen_range(2_000..5_000);
        let hold_ms = rng.gen_range(3_000..9_000);
        if at + quiet_ms + hold_ms > total {
            return steps;
        }
        at += quiet_ms + hold_ms;
        let who = |rng: &mut StdRng| {
            if rng.gen_bool(0.5) {
                Who::Leader
            } else {
                Who::Node(rng.gen_range(0..nodes))
            }
        };
        let fault = match nemeses[rng.gen_range(0..nemeses.len())].as_str() {
            "kill" => Planned::Kill { who: who(&mut rng) },
            "pause" => Planned::Pause { who: who(&mut rng) },
            "partition" => {
                let shape = match rng.gen_range(0..4) {
                    0 => Shape::Isolate(Who::Leader),
                    1 => Shape::Isolate(Who::Node(rng.gen_range(0..nodes))),
                    2 => {
                        let size = rng.gen_range(1..=(voters - 1) / 2);
                        let mut all: Vec<usize> = (0..voters).collect();
                        let mut minority = Vec::new();
                        for _ in 0..size {
                            minority.push(all.remove(rng.gen_range(0..all.len())));
                        }
                        minority.sort_unstable();
                        Shape::Minority(minority)
                    }
                    _ if rng.gen_bool(0.5) => Shape::Bridge(rng.gen_range(0..voters)),
                    _ => Shape::OneWay(who(&mut rng), rng.gen_range(0..nodes)),
                };
                Planned::Partition { shape }
            }
            "slow-network" => Planned::SlowNetwork {
                who: who(&mut rng),
                delay_ms: rng.gen_range(20..300),
                loss: f64::from(rng.gen_range(0..20u32)) / 1000.0,
            },
            "signer" => Planned::Signer {
                how: [SignerFault::Kill, SignerFault::Pause, SignerFault::Cut][rng.gen_range(0..3)],
                who: who(&mut rng),
            },
            "clock-skew" => Planned::ClockSkew {
                who: who(&mut rng),
                offset_ms: rng.gen_range(-20_000..20_000),
            },
            _ => Planned::FsyncDelay {
                who: who(&mut rng),
                delay_ms: rng.gen_range(20..400),
            },
        };
        steps.push(Step {
            quiet_ms,
            hold_ms,
            fault,
        });
    }
}

/// A fault in force: what to undo.
pub struct Injected {
    /// The node ids it hit.
    pub nodes: Vec<u64>,
    /// What was done, for people.
    pub description: String,
    undo: Undo,
}

enum Undo {
    Restart(u64),
    Resume(u64),
    Network,
    Signer,
    Faults(u64),
}

fn resolve(cluster: &Cluster, who: Who) -> u64 {
    let ids = cluster.ids();
    match who {
        Who::Leader => cluster.leader().unwrap_or(ids[0]),
        Who::Node(i) => ids[i % ids.len()],
    }
}

/// Injects `fault` into `cluster`.
pub fn inject(cluster: &mut Cluster, fault: &Planned) -> Result<Injected, String> {
    let ids = cluster.ids();
    let voters = cluster.voter_ids();
    let label = |who: Who, id: u64| match who {
        Who::Leader => format!("leader {id}"),
        Who::Node(_) => format!("node {id}"),
    };
    let done = |nodes: Vec<u64>, description: String, undo: Undo| Injected {
        nodes,
        description,
        undo,
    };
    Ok(match fault {
        Planned::Kill { who } => {
            let id = resolve(cluster, *who);
            cluster.kill(id)?;
            done(vec![id], format!("kill -9 {}", label(*who, id)), Undo::Restart(id))
        }
        Planned::Pause { who } => {
            let id = resolve(cluster, *who);
            cluster.pause(id)?;
            done(vec![id], format!("SIGSTOP {}", label(*who, id)), Undo::Resume(id))
        }
        Planned::Partition { shape } => match shape {
            Shape::Isolate(who) => {
                let id = resolve(cluster, *who);
                let rest: Vec<u64> = ids.iter().copied().filter(|&x| x != id).collect();
                cluster.split(&[id], &rest)?;
                done(vec![id], format!("isolate {}", label(*who, id)), Undo::Network)
            }
            Shape::Minority(minority) => {
                let small: Vec<u64> = minority.iter().map(|&i| voters[i % voters.len()]).collect();
                let big: Vec<u64> = ids.iter().copied().filter(|x| !small.contains(x)).collect();
                cluster.split(&small, &big)?;
                done(
                    small.clone(),
                    format!("minority {small:?} | majority {big:?}"),
                    Undo::Network,
                )
            }
            Shape::Bridge(b) => {
                let bridge = voters[*b % voters.len()];
                let others: Vec<u64> = ids.iter().copied().filter(|&x| x != bridge).collect();
                let (left, right) = others.split_at(others.len() / 2);
                cluster.split(left, right)?;
                done(
                    ids.clone(),
                    format!("{left:?} | {right:?}, bridged by {bridge}"),
                    Undo::Network,
                )
            }
            Shape::OneWay(who, to) => {
                let from = resolve(cluster, *who);
                let mut to = ids[*to % ids.len()];
                if to == from {
                    to = ids[(ids.iter().position(|&x| x == from).unwrap_or(0) + 1) % ids.len()];
                }
                cluster.cut_one_way(from, to)?;
                done(
                    vec![from, to],
                    format!("drop {} → node {to}", label(*who, from)),
                    Undo::Network,
                )
            }
        },
        Planned::SlowNetwork { who, delay_ms, loss } => {
            let id = resolve(cluster, *who);
            cluster.degrade_link(id, Duration::from_millis(*delay_ms), *loss)?;
            done(
                vec![id],
                format!("+{delay_ms} ms and {:.1}% loss into {}", loss * 100.0, label(*who, id)),
                Undo::Network,
            )
        }
        Planned::Signer { how, who } if cluster.signer_count() > 1 => {
            // Threshold signers: the planned node picks which signer (one at a time).
            let j = u16::try_from((resolve(cluster, *who) - 1) % u64::from(cluster.signer_count())).unwrap_or(0) + 1;
            match how {
                SignerFault::Kill => {
                    cluster.kill_signer(j);
                    done(Vec::new(), format!("kill -9 signer {j}"), Undo::Signer)
                }
                SignerFault::Pause => {
                    cluster.pause_signer(j);
                    done(Vec::new(), format!("SIGSTOP signer {j}"), Undo::Signer)
                }
                SignerFault::Cut => {
                    cluster.partition_signer(j);
                    done(
                        Vec::new(),
                        format!("cut signer {j} off from nodes and signers"),
                        Undo::Network,
                    )
                }
            }
        }
        Planned::Signer { how, who } => match how {
            SignerFault::Kill => {
                cluster.kill_signer(1);
                done(Vec::new(), "kill -9 the signer".into(), Undo::Signer)
            }
            SignerFault::Pause => {
                cluster.pause_signer(1);
                done(Vec::new(), "SIGSTOP the signer".into(), Undo::Signer)
            }
            SignerFault::Cut => {
                let id = resolve(cluster, *who);
                cluster.cut_signer(id)?;
                done(
                    vec![id],
                    format!("cut {} off from the signer", label(*who, id)),
                    Undo::Network,
                )
            }
        },
        Planned::ClockSkew { who, offset_ms } => {
            let id = resolve(cluster, *who);
            let faults = NodeFaults {
                clock_offset_ms: *offset_ms,
                ..NodeFaults::default()
            };
            cluster.set_faults(id, faults)?;
            done(
                vec![id],
                format!("clock {offset_ms:+} ms on {}", label(*who, id)),
                Undo::Faults(id),
            )
        }
        Planned::FsyncDelay { who, delay_ms } => {
            let id = resolve(cluster, *who);
            let faults = NodeFaults {
                fsync_delay_ms: *delay_ms,
                ..NodeFaults::default()
            };
            cluster.set_faults(id, faults)?;
            done(
                vec![id],
                format!("fsync +{delay_ms} ms on {}", label(*who, id)),
                Undo::Faults(id),
            )
        }
    })
}

/// Undoes an injected fault.
pub fn heal(cluster: &mut Cluster, injected: &Injected) -> Result<(), String> {
    match injected.undo {
        Undo::Restart(id) => cluster.restart(id),
        Undo::Resume(id) => cluster.resume(id),
        Undo::Network => {
            cluster.heal_network();
            Ok(())
        }
        Undo::Signer => {
            cluster.resume_signers();
            cluster.restart_signers()
        }
        Undo::Faults(id) => cluster.set_faults(id, NodeFaults::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_schedule() {
        let all: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
        let a = plan(42, Duration::from_secs(600), &all, 3, 1);
        assert_eq!(a, plan(42, Duration::from_secs(600), &all, 3, 1));
        assert_ne!(a, plan(43, Duration::from_secs(600), &all, 3, 1));
        assert!(a.len() > 20, "{} faults in 10 minutes", a.len());
        let total: u64 = a.iter().map(|s| s.quiet_ms + s.hold_ms).sum();
        assert!(total <= 600_000);
        for name in ALL {
            assert!(a.iter().any(|s| s.fault.name() == *name), "{name} never drawn");
        }
        assert!(plan(1, Duration::from_secs(600), &[], 3, 1).is_empty());
    }

    #[test]
    fn minorities_stay_minorities() {
        let p: Vec<String> = vec!["partition".into()];
        for seed in 0..50 {
            for voters in [3, 5] {
                for s in plan(seed, Duration::from_secs(120), &p, voters, 0) {
                    if let Planned::Partition {
                        shape: Shape::Minority(m),
                    } = s.fault
                    {
                        assert!(!m.is_empty() && m.len() * 2 < voters, "{m:?} of {voters}");
                    }
                }
            }
        }
    }
}
