//! Python virtualenvs for the tests that run a Python tool (python-tuf's client,
//! kubernetes-validate): made with `python3 -m venv` and filled from PyPI with pip once,
//! then reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The file in a virtualenv naming the requirements installed in it.
const INSTALLED: &str = "seal-requirements.txt";

/// One test binary's threads make or fill one virtualenv at a time.
static MAKING: Mutex<()> = Mutex::new(());

/// The virtualenv at `dir` with `requirements` (pip specifiers, such as `tuf==7.0.1`)
/// installed: made with `python3 -m venv` and `pip install` when `dir` does not already hold
/// exactly these requirements. `None` after [`crate::skip`] (a failure under CI) when python3,
/// venv or pip is missing or the install fails. Its interpreter is `<dir>/bin/python`.
#[track_caller]
pub fn python_venv(dir: &Path, requirements: &[&str]) -> Option<PathBuf> {
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = requirements.join("\n");
    let marker = dir.join(INSTALLED);
    if dir.join("bin/python").exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Some(dir.to_owned());
    }
    if Command::new("python3").arg("--version").output().is_err() {
        crate::skip("python3 is not installed (scripts/install-deps.sh installs it)");
        return None;
    }
    if !dir.join("bin/pip").exists() {
        let (ok, said) = run(Command::new("python3").args(["-m", "venv"]).arg(dir));
        if !ok {
            crate::skip(&format!(
                "python3 -m venv {} failed ({said}); install python3-venv",
                dir.display()
            ));
            return None;
        }
    }
    let (ok, said) = run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(requirements));
    if !ok {
        crate::skip(&format!("pip install {} failed: {said}", requirements.join(" ")));
        return None;
    }
    if let Err(e) = std::fs::write(&marker, wanted) {
        crate::skip(&format!("writing {}: {e}", marker.display()));
        return None;
    }
    Some(dir.to_owned())
}

/// Runs `cmd` to its end: whether it succeeded, and what it wrote.
fn run(cmd: &mut Command) -> (bool, String) {
    match cmd.output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}
