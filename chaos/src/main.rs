//! `seal-chaos`: run a chaos test against a local Seal cluster, or check
//! and report on a recorded history.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use seal_chaos::checker::check;
use seal_chaos::history::History;
use seal_chaos::nemesis::{plan, ALL, NEED_SWITCHES};
use seal_chaos::report::{render_text, summarize};
use seal_chaos::run::{run, write_report, RunSpec};

#[derive(Parser)]
#[command(
    name = "seal-chaos",
    version,
    about = "Chaos testing of real Seal clusters, with a history checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster, run the workload under faults, check the history, write the report.
    Run {
        #[command(flatten)]
        schedule: Schedule,
        /// Writer threads.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Reader threads.
        #[arg(long, default_value_t = 4)]
        readers: usize,
        /// Long-lived collections.
        #[arg(long, default_value_t = 16)]
        guns: usize,
        /// Output directory: history, report, logs, data.
        #[arg(long, default_value = "./seal-chaos-run")]
        out: PathBuf,
        /// Where seal-node and seal-signer are (default: beside seal-chaos).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The nodes' read staleness bound.
        #[arg(long, default_value_t = 2_000)]
        max_staleness_ms: u64,
        /// The nodes' timestamp lifetime.
        #[arg(long, default_value_t = 60)]
        timestamp_lifetime_secs: u64,
        /// After healing, a publish must be acknowledged within this many seconds.
        #[arg(long, default_value_t = 15)]
        liveness_secs: u64,
        /// The seal-node binary has no fault switches (not a fault-injection build): skip the
        /// nemeses that need them.
        #[arg(long)]
        no_fault_switches: bool,
        /// Make every node acknowledge publishes before they commit: a deliberately broken
        /// cluster, to see the checker fail.
        #[arg(long)]
        ack_before_commit: bool,
        /// Keep the data directories even when every check passes.
        #[arg(long)]
        keep_data: bool,
    },
    /// Check a recorded history and write its report next to it.
    Check {
        /// The history file (`history.jsonl`).
        history: PathBuf,
    },
    /// Print the fault schedule a seed draws.
    Plan {
        #[command(flatten)]
        schedule: Schedule,
    },
}

/// What draws a fault schedule: shared by `run` and `plan`, so that `plan` prints what `run`
/// with the same options injects.
#[derive(Args)]
struct Schedule {
    /// How long faults are injected (`90s`, `2m`, `30m`, `1h`).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// Nemeses, comma-separated, `all` (every one the seal-node binary supports) or `none`.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seeds the fault schedule and the workload; the same seed replays the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Voters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    voters: usize,
    /// Learners (read replicas).
    #[arg(long, default_value_t = 1)]
    learners: usize,
    /// Signers: 1 (software keys), or n >= 2 holding the keys as FROST shares (with
    /// --threshold); every node lists them all, and the signer nemesis faults one at a time.
    #[arg(long, default_value_t = 1)]
    signers: u16,
    /// With --signers n: how many sign together (2 <= k <= n).
    #[arg(long, default_value_t = 2)]
    threshold: u16,
}

/// `90s`, `2m`, `1h`, `1h30m` or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => return Err(format!("bad duration {s:?} (use s, m or h)")),
        };
    }
    if !num.is_empty() {
        total += num.parse::<u64>().map_err(|_| format!("bad duration {s:?}"))?;
    }
    if total == 0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs(total))
}

fn nemeses(list: &str, switches: bool) -> Result<Vec<String>, String> {
    let names: Vec<String> = if list.trim() == "all" {
        ALL.iter()
            .filter(|n| switches || !NEED_SWITCHES.contains(n))
            .map(|n| (*n).to_owned())
            .collect()
    } else if list.trim() == "none" {
        Vec::new()
    } else {
        list.split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    for n in &names {
        if !ALL.contains(&n.as_str()) {
            return Err(format!("unknown nemesis {n:?} (known: {}, all, none)", ALL.join(", ")));
        }
    }
    Ok(names)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("seal-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode, String> {
    match Cli::parse().command {
        Cmd::Run {
            schedule:
                Schedule {
                    duration,
                    nemesis,
                    seed,
                    voters,
                    learners,
                    signers,
                    threshold,
                },
            writers,
            readers,
            guns,
            out,
            bin_dir,
            max_staleness_ms,
            timestamp_lifetime_secs,
            liveness_secs,
            no_fault_switches,
            ack_before_commit,
            keep_data,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(PathBuf::from))
                    .ok_or("cannot locate seal-chaos's directory; pass --bin-dir")?,
            };
            let spec = RunSpec {
                out,
                node_bin: bin_dir.join("seal-node"),
                signer_bin: bin_dir.join("seal-signer"),
                voters,
                learners,
                duration,
                nemeses: nemeses(&nemesis, !no_fault_switches)?,
                schedule: None,
                seed,
                writers,
                readers,
                guns,
                max_staleness_ms,
                timestamp_lifetime_secs,
                liveness_bound: Duration::from_secs(liveness_secs),
                fault_switches: !no_fault_switches,
                signers,
                threshold,
                ack_before_commit,
                keep_data,
                verbose: true,
            };
            if signers == 0 || signers > 9 || (signers > 1 && !(2..=signers).contains(&threshold)) {
                return Err(format!(
                    "--signers {signers} --threshold {threshold}: use 1 signer, or n <= 9 signers with 2 <= k <= n"
                ));
            }
            let outcome = run(&spec)?;
            println!("{}", render_text(&outcome.summary));
            println!("history: {}", outcome.history.display());
            Ok(if outcome.report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Check { history } => {
            let h = History::read(&history).map_err(|e| e.to_string())?;
            let report = check(&h);
            let summary = summarize(&h, &report);
            let dir = history
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            write_report(&dir, &h, &summary)?;
            println!("{}", render_text(&summary));
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Plan {
            schedule:
                Schedule {
                    duration,
                    nemesis,
                    seed,
                    voters,
                    learners,
                    ..
                },
        } => {
            let steps = plan(seed, duration, &nemeses(&nemesis, true)?, voters, learners);
            let mut at = 0;
            for s in &steps {
                at += s.quiet_ms;
                println!(
                    "{:>8.1} s  for {:>4.1} s  {}",
                    at as f64 / 1000.0,
                    s.hold_ms as f64 / 1000.0,
                    serde_json::to_string(&s.fault).map_err(|e| e.to_string())?
                );
                at += s.hold_ms;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn nemesis_lists() {
        assert_eq!(nemeses("all", true).unwrap().len(), ALL.len());
        assert!(!nemeses("all", false).unwrap().iter().any(|n| n == "clock-skew"));
        assert_eq!(nemeses("kill, partition", true).unwrap(), vec!["kill", "partition"]);
        assert!(nemeses("none", true).unwrap().is_empty());
        assert!(nemeses("kill,meteor", true).is_err());
    }
}
