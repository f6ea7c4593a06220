//! One chaos run: start the cluster, run the workload while the schedule's
//! faults come and go, heal everything, let it settle, read every node's
//! final state, then check the history and write the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seal_tuf::metadata::{ROOT, SNAPSHOT, TARGETS};

use crate::checker::{check, CheckReport};
use crate::cluster::{io, Cluster, ClusterSpec, NodeFaults};
use crate::history::{
    ms_since, sha256_hex, Entry, Fault, FinalState, Header, History, NodeFinal, Recorder, RoleVersion, FORMAT,
};
use crate::nemesis::{heal, inject, plan, Step};
use crate::report::{render_html, render_text, summarize, Summary};
use crate::workload::{version_of, Target, Workload, WorkloadSpec};
use seal_testkit::http::send;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Where the history, report, logs and data go.
    pub out: PathBuf,
    /// The `seal-node` binary (a `fault-injection` build for [`RunSpec::fault_switches`]).
    pub node_bin: PathBuf,
    /// The `seal-signer` binary.
    pub signer_bin: PathBuf,
    /// Voters (3 or 5).
    pub voters: usize,
    /// Learners.
    pub learners: usize,
    /// How long faults are injected.
    pub duration: Duration,
    /// The nemeses drawn from.
    pub nemeses: Vec<String>,
    /// A fixed schedule to run instead of the one drawn from the seed.
    pub schedule: Option<Vec<Step>>,
    /// The seed of the schedule and the workload.
    pub seed: u64,
    /// Writer threads.
    pub writers: usize,
    /// Reader threads.
    pub readers: usize,
    /// Long-lived collections.
    pub guns: usize,
    /// The nodes' `raft.max_staleness_ms`.
    pub max_staleness_ms: u64,
    /// The nodes' timestamp lifetime.
    pub timestamp_lifetime_secs: u64,
    /// After healing, a publish must be acknowledged within this.
    pub liveness_bound: Duration,
    /// Start the nodes with their fault switches (needs the `fault-injection` build).
    pub fault_switches: bool,
    /// Signers: 1, or n ≥ 2 threshold signers of which `threshold` sign together.
    pub signers: u16,
    /// k of the threshold signers.
    pub threshold: u16,
    /// Make every node acknowledge publishes before they commit (a deliberately broken cluster,
    /// to show that the checker catches it).
    pub ack_before_commit: bool,
    /// Keep the data directories even when every check passes.
    pub keep_data: bool,
    /// Print progress.
    pub verbose: bool,
}

/// What a run produced.
pub struct RunOutcome {
    /// The history file.
    pub history: PathBuf,
    /// The checker's verdict.
    pub report: CheckReport,
    /// The summary (also in `summary.json`).
    pub summary: Summary,
}

/// [`Header::staleness_slack_ms`]: the slow-network nemesis's longest delay, and scheduling
/// noise on a loaded machine.
const STALENESS_SLACK_MS: u64 = 500;

/// Runs the whole thing; `Err` only when the run itself could not be carried out (the
/// cluster did not start, the history could not be written). A failed check is an `Ok`
/// whose report says so.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, String> {
    let say = |m: &str| {
        if spec.verbose {
            eprintln!("seal-chaos: {m}");
        }
    };
    for n in &spec.nemeses {
        if !crate::nemesis::ALL.contains(&n.as_str()) {
            return Err(format!(
                "unknown nemesis {n:?} (known: {})",
                crate::nemesis::ALL.join(", ")
            ));
        }
        if crate::nemesis::NEED_SWITCHES.contains(&n.as_str()) && !spec.fault_switches {
            return Err(format!(
                "nemesis {n} needs seal-node's fault switches (a fault-injection build)"
            ));
        }
    }
    if spec.ack_before_commit && !spec.fault_switches {
        return Err("acknowledging before commit needs seal-node's fault switches".into());
    }
    std::fs::create_dir_all(&spec.out).map_err(io(spec.out.display()))?;
    let schedule = match &spec.schedule {
        Some(s) => s.clone(),
        None => plan(spec.seed, spec.duration, &spec.nemeses, spec.voters, spec.learners),
    };
    let schedule_path = spec.out.join("schedule.json");
    std::fs::write(
        &schedule_path,
        serde_json::to_vec_pretty(&schedule).map_err(|e| e.to_string())?,
    )
    .map_err(io(schedule_path.display()))?;
    say(&format!("{} faults planned from seed {}", schedule.len(), spec.seed));

    let cluster_dir = spec.out.join("cluster");
    if cluster_dir.exists() {
        std::fs::remove_dir_all(&cluster_dir).map_err(io(cluster_dir.display()))?;
    }
    let mut cluster = Cluster::start(&ClusterSpec {
        dir: cluster_dir.clone(),
        node_bin: spec.node_bin.clone(),
        signer_bin: spec.signer_bin.clone(),
        voters: spec.voters,
        learners: spec.learners,
        max_staleness_ms: spec.max_staleness_ms,
        timestamp_lifetime_secs: spec.timestamp_lifetime_secs,
        fault_switches: spec.fault_switches,
        signers: spec.signers,
        threshold: spec.threshold,
    })?;
    say(&format!(
        "cluster up: {} voters, {} learners under {}",
        spec.voters,
        spec.learners,
        cluster_dir.display()
    ));
    if spec.ack_before_commit {
        for id in cluster.ids() {
            cluster.set_faults(
                id,
                NodeFaults {
                    ack_before_commit: true,
                    ..NodeFaults::default()
                },
            )?;
        }
    }

    let t0 = Instant::now();
    let started_unix_ms =
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())?;
    let header = Header {
        format: FORMAT,
        seed: spec.seed,
        started_unix_ms,
        duration_ms: u64::try_from(spec.duration.as_millis()).unwrap_or(u64::MAX),
        nemeses: spec.nemeses.clone(),
        nodes: cluster.node_infos(),
        max_staleness_ms: spec.max_staleness_ms,
        staleness_slack_ms: STALENESS_SLACK_MS,
        liveness_bound_ms: u64::try_from(spec.liveness_bound.as_millis()).unwrap_or(u64::MAX),
    };
    let history_path = spec.out.join("history.jsonl");
    let rec = Arc::new(Recorder::create(&history_path, &header).map_err(io(history_path.display()))?);
    let targets: Vec<Target> = cluster
        .members
        .iter()
        .map(|m| Target {
            id: m.id,
            http: m.http.clone(),
        })
        .collect();
    let workload = Workload::start(
        &WorkloadSpec {
            writers: spec.writers,
            readers: spec.readers,
            guns: spec.guns,
            seed: spec.seed,
        },
        targets,
        rec.clone(),
        t0,
    );

    let faults = run_schedule(&mut cluster, &schedule, &rec, t0, &say);
    let healed = heal_everything(&mut cluster, spec);
    let healed_at_ms = ms_since(t0);
    // Whatever the schedule's outcome, the workload stops and the history is finished.
    settle(&workload, healed_at_ms, spec.liveness_bound);
    say(&format!(
        "healed at {:.1} s; {} acknowledged writes",
        healed_at_ms as f64 / 1000.0,
        workload.ok_writes()
    ));
    let guns = workload.guns();
    workload.stop();
    faults?;
    healed?;
    let nodes = final_state(&cluster, &guns, &say);
    let final_state = FinalState {
        healed_at_ms,
        at_ms: ms_since(t0),
        nodes,
    };
    rec.append(&Entry::Final(final_state))
        .map_err(io(history_path.display()))?;
    drop(rec);
    cluster.stop();

    let history = History::read(&history_path).map_err(|e| e.to_string())?;
    let report = check(&history);
    let summary = summarize(&history, &report);
    write_report(&spec.out, &history, &summary)?;
    if report.passed() && !spec.keep_data {
        for m in &cluster.members {
            let _ = std::fs::remove_dir_all(m.dir.join("data"));
        }
        let _ = std::fs::remove_dir_all(cluster_dir.join("signer").join("data"));
    }
    Ok(RunOutcome {
        history: history_path,
        report,
        summary,
    })
}

/// Injects and heals each step's fault in turn, recording each.
fn run_schedule(
    cluster: &mut Cluster,
    schedule: &[Step],
    rec: &Recorder,
    t0: Instant,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    for step in schedule {
        std::thread::sleep(Duration::from_millis(step.quiet_ms));
        let id = rec.next_id();
        let start_ms = ms_since(t0);
        let injected = inject(cluster, &step.fault)?;
        say(&format!(
            "{:>7.1} s  {}: {}",
            start_ms as f64 / 1000.0,
            step.fault.name(),
            injected.description
        ));
        std::thread::sleep(Duration::from_millis(step.hold_ms));
        let result = heal(cluster, &injected);
        let fault = Fault {
            id,
            kind: step.fault.name().to_owned(),
            nodes: injected.nodes.clone(),
            description: injected.description.clone(),
            start_ms,
            end_ms: Some(ms_since(t0)),
        };
        rec.append(&Entry::Fault(fault)).map_err(io("writing the history"))?;
        result?;
    }
    Ok(())
}

/// Undoes whatever may still be in force.
fn heal_everything(cluster: &mut Cluster, spec: &RunSpec) -> Result<(), String> {
    cluster.heal_network();
    if spec.fault_switches {
        let faults = NodeFaults {
            ack_before_commit: spec.ack_before_commit,
            ..NodeFaults::default()
        };
        for id in cluster.ids() {
            cluster.set_faults(id, faults)?;
        }
    }
    cluster.heal_processes()
}

/// Lets the workload run on after healing until a write is acknowledged (or the liveness
/// bound passes) and a few seconds more.
fn settle(workload: &Workload, healed_at_ms: u64, bound: Duration) {
    let deadline = Instant::now() + bound + Duration::from_secs(5);
    while Instant::now() < deadline {
        if workload.last_ok_write_ms().is_some_and(|t| t > healed_at_ms) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
}

/// Waits until every node has applied the same log index, then reads each node's state
/// digest and every collection's current files.
fn final_state(cluster: &Cluster, guns: &[String], say: &dyn Fn(&str)) -> Vec<NodeFinal> {
    let ids = cluster.ids();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Timestamp refreshes keep the log moving: retry until one round of digests agrees on
    // the index (or the deadline passes, and the checker judges what there is).
    let mut digests: BTreeMap<u64, Result<(u64, String), String>>;
    loop {
        digests = ids
            .iter()
            .map(|&id| {
                let d = cluster.status(id, true).and_then(|s| {
                    let index = s
                        .get("state digest index")
                        .and_then(|v| v.parse().ok())
                        .ok_or("no state digest index in cluster status")?;
                    let digest = s
                        .get("state digest")
                        .cloned()
                        .ok_or("no state digest in cluster status")?;
                    Ok((index, digest))
                });
                (id, d)
            })
            .collect();
        let indexes: Vec<u64> = digests.values().filter_map(|d| d.as_ref().ok().map(|d| d.0)).collect();
        let agreed = indexes.len() == ids.len() && indexes.windows(2).all(|w| w[0] == w[1]);
        if agreed || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    say("reading every node's final state");
    ids.iter()
        .map(|&id| {
            let mut node = NodeFinal {
                id,
                error: None,
                applied_index: None,
                state_digest: None,
                guns: BTreeMap::new(),
            };
            match &digests[&id] {
                Ok((index, digest)) => {
                    node.applied_index = Some(*index);
                    node.state_digest = Some(digest.clone());
                }
                Err(e) => node.error = Some(format!("state digest: {e}")),
            }
            let http = cluster
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.http.clone())
                .unwrap_or_default();
            for gun in guns {
                match served(&http, gun) {
                    Ok(v) => {
                        node.guns.insert(gun.clone(), v);
                    }
                    Err(e) => {
                        node.error.get_or_insert(format!("{gun}: {e}"));
                    }
                }
            }
            node
        })
        .collect()
}

/// The current root, targets and snapshot a node serves for `gun`, `None` when it has none.
fn served(http: &str, gun: &str) -> Result<Option<BTreeMap<String, RoleVersion>>, String> {
    let mut out = BTreeMap::new();
    for role in [ROOT, TARGETS, SNAPSHOT] {
        let path = format!("/v2/{gun}/_trust/tuf/{role}.json");
        let r = send(http, "GET", &path, &[], &[], Duration::from_secs(10)).map_err(|e| e.to_string())?;
        match r.status {
            404 if out.is_empty() && role == ROOT => return Ok(None),
            200 => {
                let version = version_of(role, &r.body)?;
                out.insert(
                    role.to_owned(),
                    RoleVersion {
                        version,
                        sha256: sha256_hex(&r.body),
                    },
                );
            }
            _ => return Err(format!("{role}.json: {}", r.summary())),
        }
    }
    Ok(Some(out))
}

/// Writes `summary.json`, `summary.txt` and `timeline.html` into `out`.
pub fn write_report(out: &Path, history: &History, summary: &Summary) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(io(p.display()))
    };
    write(
        "summary.json",
        &serde_json::to_vec_pretty(summary).map_err(|e| e.to_string())?,
    )?;
    write("summary.txt", render_text(summary).as_bytes())?;
    write("timeline.html", render_html(history, summary).as_bytes())
}
