//! `seal-bench`: Seal's load generator. It speaks Notary's HTTP API, so the
//! same workload drives a Seal node, the real Notary server, or a static
//! file server holding the same bytes, and `compare` runs one workload
//! against two of them back to back, alternating, and prints the ratio with
//! its spread over the rounds. It starts no server itself:
//! `scripts/bench-compare.sh` does (docs/benchmarks.md).

mod publish;
mod read;
mod scale;
mod stats;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::publish::{NewLoad, PublishLoad};
use crate::read::ReadLoad;
use crate::stats::{spread, Run};

#[derive(Parser)]
#[command(
    name = "seal-bench",
    about = "Load generator for Notary's HTTP API: Seal, Notary, or static files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The collection the read workloads read.
const READ_GUN: &str = "bench.example.com/read/app";

#[derive(clap::Args, Clone)]
struct ReadArgs {
    /// The collection whose timestamp.json, targets.json and checksum-named snapshot are read.
    #[arg(long, default_value = READ_GUN)]
    gun: String,
    /// Open keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(clap::Args, Clone)]
struct PublishArgs {
    /// Collections published to (each has at most one publish in flight).
    #[arg(long, default_value_t = 100)]
    guns: usize,
    /// Client threads, each with one publish in flight.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Publishes/s the metadata signed ahead suffices for.
    #[arg(long, default_value_t = 2_500)]
    max_rate: u64,
}

#[derive(clap::Args, Clone)]
struct NewArgs {
    /// Client threads, each creating one collection at a time.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Collections whose client keys are made before each run.
    #[arg(long, default_value_t = 4_000)]
    count: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a collection with 20 targets and prints the paths a reader asks for; with
    /// --out, also writes those files' bytes under DIR at the same paths, for a static server.
    Seed {
        /// The server, host:port.
        addr: String,
        #[arg(long, default_value = READ_GUN)]
        gun: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Keep-alive GETs of a collection's files, one path after the other.
    Read {
        addr: String,
        #[command(flatten)]
        args: ReadArgs,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Later publishes (targets + snapshot) over existing collections.
    Publish {
        addr: String,
        #[command(flatten)]
        args: PublishArgs,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// First publishes of new collections.
    New {
        addr: String,
        #[command(flatten)]
        args: NewArgs,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Many collections: seed them, read random ones, time a restarted node's first answer.
    Scale {
        #[command(subcommand)]
        command: ScaleCommand,
    },
    /// Runs one workload against two servers, alternating which goes first, for several
    /// rounds, and prints each side's figures and the ratio A/B with its spread.
    Compare {
        workload: Workload,
        /// NAME=host:port of the first server (the numerator).
        a: String,
        /// NAME=host:port of the second server.
        b: String,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Length of each timed run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        publish: PublishArgs,
        /// Collections whose client keys are made before each run of `new`.
        #[arg(long, default_value_t = 4_000)]
        count: usize,
    },
}

#[derive(Subcommand)]
enum ScaleCommand {
    /// Creates collections <prefix>/c<from> .. <prefix>/c<to - 1> (first publishes).
    Seed {
        addr: String,
        #[arg(long, default_value = "scale.example.com/run")]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        from: usize,
        #[arg(long)]
        to: usize,
        /// Client threads, each with one first publish in flight.
        #[arg(long, default_value_t = 8)]
        threads: usize,
    },
    /// Keep-alive GETs of the timestamp.json of random collections among the first `count`
    /// (or of `hot` of them, spread over that range).
    Read {
        addr: String,
        #[arg(long, default_value = "scale.example.com/run")]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        hot: Option<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The first GET of timestamp.json of `reads` distinct random collections among the first
    /// `count`, one at a time on one keep-alive connection (run right after a restart with the
    /// page cache dropped: reads that no earlier request warmed).
    First {
        addr: String,
        #[arg(long, default_value = "scale.example.com/run")]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 2000)]
        reads: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Waits until collection `index`'s timestamp.json is served and prints how long that took.
    Ready {
        addr: String,
        #[arg(long, default_value = "scale.example.com/run")]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        index: usize,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Workload {
    Read,
    Publish,
    New,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("seal-bench: {e}");
        std::process::exit(1);
    }
}

/// `host:port`, with an `http://` prefix or a trailing `/` tolerated.
fn host_port(addr: &str) -> String {
    addr.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

fn socket(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {addr}: no address"))
}

/// The read paths of `gun` on `addr`, seeding the collection when the server has none.
fn ensure_read_paths(addr: &str, gun: &str) -> Result<Vec<String>, String> {
    match publish::read_paths(addr, gun) {
        Ok(p) => Ok(p),
        Err(first) => {
            publish::seed(addr, gun).map_err(|e| format!("{first}; seeding it failed: {e}"))?;
            publish::read_paths(addr, gun)
        }
    }
}

fn read_runs(addr: &str, args: &ReadArgs, paths: &[String], seconds: u64) -> Result<Vec<Run>, String> {
    let sock = socket(addr)?;
    paths
        .iter()
        .map(|path| {
            ReadLoad {
                addr: sock,
                paths: vec![path.clone()],
                connections: args.connections,
                threads: args.threads,
                duration: Duration::from_secs(seconds),
            }
            .run()
        })
        .collect()
}

/// The file name a read path ends in, for labels.
fn file_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Seed { addr, gun, out } => {
            let addr = host_port(&addr);
            let paths = ensure_read_paths(&addr, &gun)?;
            for p in &paths {
                if let Some(dir) = &out {
                    let file = dir.join(p.trim_start_matches('/'));
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                    }
                    std::fs::write(&file, publish::get(&addr, p)?).map_err(|e| format!("{}: {e}", file.display()))?;
                }
                println!("{p}");
            }
        }
        Command::Read { addr, args, seconds } => {
            let addr = host_port(&addr);
            let paths = ensure_read_paths(&addr, &args.gun)?;
            for (path, run) in paths.iter().zip(read_runs(&addr, &args, &paths, seconds)?) {
                println!("GET {:<60} {}", file_of(path), run.line());
            }
        }
        Command::Publish { addr, args, seconds } => {
            let addr = host_port(&addr);
            let load = PublishLoad::prepare(&addr, &format!("bench.example.com/{}", std::process::id()), args.guns)?;
            let (run, inline) = load.run(args.publishers, Duration::from_secs(seconds), args.max_rate)?;
            println!(
                "publish {} ({} GUNs, {} publishers, {inline} signed inline)",
                run.line(),
                args.guns,
                args.publishers
            );
        }
        Command::New { addr, args, seconds } => {
            let addr = host_port(&addr);
            let load = NewLoad::prepare(&addr, &format!("new.example.com/{}", std::process::id()), args.count)?;
            let run = load.run(args.threads, Duration::from_secs(seconds))?;
            println!("new collections {} ({} threads)", run.line(), args.threads);
        }
        Command::Scale { command } => scale_command(command)?,
        Command::Compare {
            workload,
            a,
            b,
            rounds,
            seconds,
            read,
            publish,
            count,
        } => compare(
            workload,
            [side(&a)?, side(&b)?],
            rounds,
            seconds,
            &read,
            &publish,
            count,
        )?,
    }
    Ok(())
}

fn scale_command(command: ScaleCommand) -> Result<(), String> {
    match command {
        ScaleCommand::Seed {
            addr,
            prefix,
            from,
            to,
            threads,
        } => {
            let run = scale::seed(&host_port(&addr), &prefix, from, to, threads)?;
            println!(
                "seeded {} collections ({from}..{to}): {}",
                to.saturating_sub(from),
                run.line()
            );
            let json = serde_json::json!({
                "what": "seed", "from": from, "to": to, "rate": run.rate(),
                "seconds": run.elapsed.as_secs_f64(), "p50_ms": run.quantile_ms(0.5), "p99_ms": run.quantile_ms(0.99),
            });
            println!("RESULT {json}");
        }
        ScaleCommand::Read {
            addr,
            prefix,
            count,
            hot,
            seconds,
            connections,
            threads,
        } => {
            let addr = host_port(&addr);
            let paths = scale::read_paths(&prefix, count, hot);
            let n = paths.len();
            let run = ReadLoad {
                addr: socket(&addr)?,
                paths,
                connections,
                threads,
                duration: Duration::from_secs(seconds),
            }
            .run()?;
            println!("GET timestamp.json of {n} random collections: {}", run.line());
            let json = serde_json::json!({
                "what": "read", "collections": n, "rate": run.rate(),
                "p50_ms": run.quantile_ms(0.5), "p99_ms": run.quantile_ms(0.99), "p999_ms": run.quantile_ms(0.999),
                "errors": run.errors,
            });
            println!("RESULT {json}");
        }
        ScaleCommand::First {
            addr,
            prefix,
            count,
            reads,
            seed,
        } => {
            let indices = scale::distinct_sample(count, reads, seed);
            let run = scale::first_reads(&host_port(&addr), &prefix, &indices)?;
            println!(
                "first GET timestamp.json of {} distinct collections of {count}: {}",
                indices.len(),
                run.line()
            );
            let json = serde_json::json!({
                "what": "first", "collections": indices.len(), "rate": run.rate(),
                "p50_ms": run.quantile_ms(0.5), "p99_ms": run.quantile_ms(0.99), "p999_ms": run.quantile_ms(0.999),
            });
            println!("RESULT {json}");
        }
        ScaleCommand::Ready {
            addr,
            prefix,
            index,
            timeout_secs,
        } => {
            let took = scale::wait_ready(
                &host_port(&addr),
                &scale::timestamp_path(&prefix, index),
                Duration::from_secs(timeout_secs),
            )?;
            println!("served after {:.3} s", took.as_secs_f64());
            println!(
                "RESULT {}",
                serde_json::json!({"what": "ready", "seconds": took.as_secs_f64()})
            );
        }
    }
    Ok(())
}

/// A compared server: its name and address.
#[derive(Clone)]
struct Side {
    name: String,
    addr: String,
}

fn side(spec: &str) -> Result<Side, String> {
    let (name, addr) = spec
        .split_once('=')
        .ok_or_else(|| format!("`{spec}`: expected NAME=host:port"))?;
    Ok(Side {
        name: name.to_owned(),
        addr: host_port(addr),
    })
}

/// The figures of one compared quantity over the rounds.
struct Series {
    label: String,
    runs: [Vec<Run>; 2],
}

impl Series {
    fn report(&self, sides: &[Side; 2]) {
        let rates = |i: usize| self.runs[i].iter().map(Run::rate).collect::<Vec<_>>();
        let (ra, rb) = (rates(0), rates(1));
        let ratios: Vec<f64> = ra
            .iter()
            .zip(&rb)
            .map(|(a, b)| if *b > 0.0 { a / b } else { 0.0 })
            .collect();
        let (med, lo, hi) = spread(&ratios);
        let p99 = |i: usize| spread(&self.runs[i].iter().map(|r| r.quantile_ms(0.99)).collect::<Vec<_>>()).0;
        println!(
            "{}: {} {:.0}/s (p99 {:.2} ms), {} {:.0}/s (p99 {:.2} ms); {}/{} = {:.2} [{:.2}, {:.2}] over {} rounds",
            self.label,
            sides[0].name,
            spread(&ra).0,
            p99(0),
            sides[1].name,
            spread(&rb).0,
            p99(1),
            sides[0].name,
            sides[1].name,
            med,
            lo,
            hi,
            ratios.len()
        );
        let json = serde_json::json!({
            "what": self.label,
            "a": sides[0].name, "b": sides[1].name,
            "a_rate": spread(&ra).0, "b_rate": spread(&rb).0,
            "a_p99_ms": p99(0), "b_p99_ms": p99(1),
            "ratio": med, "ratio_min": lo, "ratio_max": hi,
            "rounds": ratios.len(),
        });
        println!("RESULT {json}");
    }
}

fn compare(
    workload: Workload,
    sides: [Side; 2],
    rounds: usize,
    seconds: u64,
    read: &ReadArgs,
    publish: &PublishArgs,
    count: usize,
) -> Result<(), String> {
    let duration = Duration::from_secs(seconds);
    let order = |round: usize| if round % 2 == 0 { [0, 1] } else { [1, 0] };
    let mut series: Vec<Series> = Vec::new();
    match workload {
        Workload::Read => {
            let paths = [
                ensure_read_paths(&sides[0].addr, &read.gun)?,
                ensure_read_paths(&sides[1].addr, &read.gun)?,
            ];
            for (k, path) in paths[0].iter().enumerate() {
                let mut s = Series {
                    label: format!("GET {}", file_of(path).split('.').next().unwrap_or_default()),
                    runs: [Vec::new(), Vec::new()],
                };
                for round in 0..rounds {
                    for i in order(round) {
                        let run = read_runs(&sides[i].addr, read, &paths[i][k..=k], seconds)?.remove(0);
                        eprintln!("round {} {} {}: {}", round + 1, sides[i].name, s.label, run.line());
                        s.runs[i].push(run);
                    }
                }
                series.push(s);
            }
        }
        Workload::Publish => {
            let pid = std::process::id();
            let loads = [
                PublishLoad::prepare(&sides[0].addr, &format!("bench.example.com/{pid}/a"), publish.guns)?,
                PublishLoad::prepare(&sides[1].addr, &format!("bench.example.com/{pid}/b"), publish.guns)?,
            ];
            let mut s = Series {
                label: format!("publish ({} GUNs, {} publishers)", publish.guns, publish.publishers),
                runs: [Vec::new(), Vec::new()],
            };
            for round in 0..rounds {
                for i in order(round) {
                    let (run, inline) = loads[i].run(publish.publishers, duration, publish.max_rate)?;
                    eprintln!(
                        "round {} {}: {} ({inline} signed inline)",
                        round + 1,
                        sides[i].name,
                        run.line()
                    );
                    s.runs[i].push(run);
                }
            }
            series.push(s);
        }
        Workload::New => {
            let pid = std::process::id();
            let mut s = Series {
                label: format!("new collections ({} publishers)", publish.publishers),
                runs: [Vec::new(), Vec::new()],
            };
            for round in 0..rounds {
                for i in order(round) {
                    let load = NewLoad::prepare(&sides[i].addr, &format!("new.example.com/{pid}/{round}/{i}"), count)?;
                    let run = load.run(publish.publishers, duration)?;
                    eprintln!("round {} {}: {}", round + 1, sides[i].name, run.line());
                    s.runs[i].push(run);
                }
            }
            series.push(s);
        }
    }
    for s in &series {
        s.report(&sides);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "seal-bench",
            "compare",
            "publish",
            "a=h:1",
            "b=h:2",
            "--publishers",
            "4",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Compare {
                publish: PublishArgs { publishers: 4, .. },
                ..
            }
        ));
        assert!(Cli::try_parse_from(["seal-bench", "compare", "read", "a=h:1"]).is_err());
    }
}
