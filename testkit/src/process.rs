//! The one process launcher of Seal's process tests, seal-chaos and
//! `seal-node local-cluster`: start a program (a `seal-node`, a
//! `seal-signer`) with its output appended to a log file, wait until it is
//! ready, pause, resume, stop, kill and restart it; a [`Process`] is killed
//! when dropped, and one dropped while a test panics prints the end of its
//! log, so a failure still shows what the process said.
//!
//! [`node`] and [`signer`] say how a Seal process is started from its JSON
//! config, [`Process::wait_healthy`] and [`Process::wait_listening`] when
//! each is ready.

use std::ffi::OsString;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a Seal process gets to become ready.
pub const START_WAIT: Duration = Duration::from_secs(60);

/// What to run: a program, its arguments and environment, and the file its
/// standard output and error are appended to.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
    nofile: Option<u32>,
}

impl Launch {
    /// `program`, its output appended to `log`.
    pub fn new(program: impl AsRef<Path>, log: impl AsRef<Path>) -> Launch {
        Launch {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            log: log.as_ref().to_owned(),
            nofile: None,
        }
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the program with its open-file limit (`ulimit -n`) set to `nofile`.
    pub fn nofile(mut self, nofile: u32) -> Launch {
        self.nofile = Some(nofile);
        self
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn command(&self) -> std::process::Command {
        let mut c = match self.nofile {
            Some(n) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&self.program);
                c
            }
            None => std::process::Command::new(&self.program),
        };
        c.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts it.
    pub fn start(self) -> Result<Process, String> {
        let mut p = Process {
            launch: self,
            child: None,
            paused: false,
            log_from: 0,
        };
        p.spawn()?;
        Ok(p)
    }
}

/// A running (or stopped) program started from a [`Launch`].
#[derive(Debug)]
pub struct Process {
    launch: Launch,
    child: Option<Child>,
    paused: bool,
    /// Where the log stood when the program last started.
    log_from: u64,
}

fn log_file(path: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Process {
    fn spawn(&mut self) -> Result<(), String> {
        let log = log_file(&self.launch.log)?;
        self.log_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = self
            .launch
            .command()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.launch.program.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`"-HUP"`, `"-TERM"`, …) with `kill`; whether it was delivered.
    pub fn signal(&self, signal: &str) -> bool {
        self.pid().is_some_and(|pid| {
            std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// SIGSTOP: it keeps its connections open and answers nothing, as a hung machine would.
    pub fn pause(&mut self) {
        if self.signal("-STOP") {
            self.paused = true;
        }
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&mut self) {
        if self.paused {
            self.signal("-CONT");
        }
        self.paused = false;
    }

    /// Whether [`Process::pause`] stopped it.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// How it ended, if it has (`None` while it runs, and once killed).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether it is gone (never started, killed, or exited).
    pub fn is_gone(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (continued first when paused, so that it is not left stopped), reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Waits up to `within` for it to exit by itself; its status, or `None`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if self.child.is_none() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; how it
    /// ended when it ended by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.paused {
            self.resume();
        }
        self.signal("-TERM");
        let status = self.wait_exit(grace);
        self.kill();
        status
    }

    /// Starts it again with the same command (its log appended to), killing it first if it
    /// still runs.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.launch.log
    }

    /// What it wrote since it last started.
    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.launch.log) {
            if f.seek(std::io::SeekFrom::Start(self.log_from)).is_ok() {
                let mut bytes = Vec::new();
                let _ = f.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        text
    }

    /// The last `n` lines it wrote since it last started, joined with ` | `, and where its
    /// log is: for error messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.output();
        let mut lines: Vec<&str> = text.lines().rev().take(n).collect();
        lines.reverse();
        if lines.is_empty() {
            lines.push("(nothing logged)");
        }
        format!("{} (log: {})", lines.join(" | "), self.launch.log.display())
    }

    /// Polls `ready` every 100 ms until it holds; an error naming `what` when the process
    /// exits first or `within` passes.
    pub fn wait_until(&mut self, what: &str, within: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while !ready() {
            self.still_waiting(what, within, deadline)?;
        }
        Ok(())
    }

    /// Waits until a line it wrote since it last started gives `Some` through `find`.
    pub fn wait_for_line<T>(
        &mut self,
        what: &str,
        within: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.output_lines_find(&find) {
                return Ok(found);
            }
            self.still_waiting(what, within, deadline)?;
        }
    }

    /// An error when it is not running or `deadline` has passed; else sleeps a little.
    fn still_waiting(&mut self, what: &str, within: Duration, deadline: Instant) -> Result<(), String> {
        if let Some(status) = self.exit_status() {
            return Err(format!("exited ({status}) before {what}: {}", self.tail(5)));
        }
        if self.child.is_none() {
            return Err(format!("not running, waiting for {what}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no {what} within {within:?}: {}", self.tail(5)));
        }
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }

    fn output_lines_find<T>(&self, find: &impl Fn(&str) -> Option<T>) -> Option<T> {
        // Only whole lines: the last one may still be being written.
        let text = self.output();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole.lines().find_map(find)
    }

    /// Waits until the `seal-node` serving HTTP on `addr` answers its health check (it knows
    /// a leader and its signer).
    pub fn wait_healthy(&mut self, addr: &str, within: Duration) -> Result<(), String> {
        self.wait_until(&format!("a healthy node on {addr}"), within, || {
            crate::http::healthy(addr)
        })
    }

    /// Waits until a `seal-signer` says it listens (`seal-signer listening on <addr>`); the port
    /// it listens on.
    pub fn wait_listening(&mut self, within: Duration) -> Result<u16, String> {
        self.wait_for_line("seal-signer listening", within, |l| {
            l.strip_prefix("seal-signer listening on ")?
                .trim()
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- {} (pid {:?}), the end of its log:\n{}",
                self.launch.program.display(),
                self.pid(),
                self.output()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        self.kill();
    }
}

/// `seal-node serve` with `config` written to `<dir>/config.json`, logging (at `SEAL_LOG`
/// `log_level`) to `<dir>/node.log`.
pub fn node(bin: &Path, dir: &Path, config: &serde_json::Value, log_level: &str) -> Result<Launch, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("config.json");
    let text = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Launch::new(bin, dir.join("node.log"))
        .args(["serve", "--config"])
        .arg(path)
        .env("SEAL_LOG", log_level))
}

/// `seal-signer serve --config <config>`, the default alias's passphrase `passphrase`,
/// logging to `config` with the extension `log`.
pub fn signer(bin: &Path, config: &Path, passphrase: &str) -> Launch {
    Launch::new(bin, config.with_extension("log"))
        .args(["serve", "--config"])
        .arg(config)
        .env("SEAL_SIGNER_MAIN", passphrase)
        .env("RUST_LOG", "warn")
}

/// Runs `command` to the end, stdin closed: its exit code (-1 when a signal
/// ended it), stdout and stderr as text.
pub fn run_to_end(command: &mut std::process::Command) -> (i32, String, String) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `seal-node cluster <args>` (the cluster admin commands) of the binary `bin` against the
/// admin service at `addr`, with mutual TLS from `ca`, `cert` and `key`, to the end.
pub fn cluster_admin(
    bin: &Path,
    addr: &str,
    (ca, cert, key): (&Path, &Path, &Path),
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    std::process::Command::new(bin)
        .arg("cluster")
        .args(args)
        .args(["--addr", addr])
        .arg("--ca")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .stdin(Stdio::null())
        .output()
}

/// `seal-node` with its test-only fault switches, as `scripts/test.sh` leaves it: `cargo build -p
/// seal-node --bin seal-node --features fault-injection`, then `target/<profile>/seal-node` copied
/// to `target/fault-injection/` before `cargo test` links the shipping build back in its place.
/// `None`, after saying so, when it is not there (a failure under `CI=true`).
pub fn fault_switch_node() -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test>
    let target = exe.ancestors().nth(3).expect("target/");
    let bin = target.join("fault-injection").join("seal-node");
    if bin.exists() {
        Some(bin)
    } else {
        crate::skip(&format!(
            "{} is missing: run scripts/test.sh, which builds it",
            bin.display()
        ));
        None
    }
}

/// The binary `name` cargo built beside the running test (`$CARGO_TARGET_DIR/<profile>/`),
/// which must exist.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test>: the binaries are in target/<profile>.
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --bins -p <its crate>` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_logs_to_its_file_is_waited_for_restarted_and_killed() {
        let dir = std::env::temp_dir().join(format!("seal-testkit-process-{}", std::process::id()));
        let log = dir.join("sh.log");
        let mut p = Launch::new("sh", &log)
            .args([
                "-c",
                "echo \"seal-signer listening on 127.0.0.1:$PORT\"; echo err >&2; exec sleep 30",
            ])
            .env("PORT", "4242")
            .start()
            .unwrap();
        assert_eq!(p.wait_listening(Duration::from_secs(10)).unwrap(), 4242);
        p.wait_for_line("err", Duration::from_secs(10), |l| (l == "err").then_some(()))
            .unwrap();
        p.pause();
        assert!(p.is_paused());
        p.restart().unwrap();
        assert_eq!(p.wait_listening(Duration::from_secs(10)).unwrap(), 4242);
        assert_eq!(p.output().lines().count(), 2, "only the output since the restart");
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
        assert!(p.stop(Duration::from_secs(10)).is_some_and(|s| !s.success()));
        assert!(p.is_gone());
        let mut quick = Launch::new("sh", &log).args(["-c", "exit 3"]).start().unwrap();
        let err = quick
            .wait_until("forever", Duration::from_secs(10), || false)
            .unwrap_err();
        assert!(err.starts_with("exited"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
