//! Where key passphrases come from: the environment (Seal's and Notary's
//! variables), a terminal prompt, or fixed values.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use zeroize::{Zeroize, Zeroizing};

use super::KeyStoreError;

/// Why a passphrase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To decrypt an existing key.
    Decrypt,
    /// To encrypt a new (or re-encrypted) key: a new passphrase is chosen,
    /// so a prompt asks twice.
    Create,
}

/// A supplier of key passphrases. The key store calls it once per attempt.
pub trait PassphraseSource {
    /// The passphrase for the key `key_id` (empty when not yet known, as for
    /// an encrypted key being imported) of `role` (root, targets, snapshot,
    /// targets/releases…) in collection `gun`. `attempt` counts from 0 and
    /// grows after each wrong passphrase; the store gives up after
    /// [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS).
    fn passphrase(
        &mut self,
        role: &str,
        key_id: &str,
        gun: Option<&str>,
        purpose: Purpose,
        attempt: u32,
    ) -> Result<Zeroizing<String>, KeyStoreError>;
}

impl<F> PassphraseSource for F
where
    F: FnMut(&str, &str, Option<&str>, Purpose, u32) -> Result<Zeroizing<String>, KeyStoreError>,
{
    fn passphrase(
        &mut self,
        role: &str,
        key_id: &str,
        gun: Option<&str>,
        purpose: Purpose,
        attempt: u32,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        self(role, key_id, gun, purpose, attempt)
    }
}

/// Shortest passphrase a prompt accepts for a new key (Notary's rule).
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// The alias naming a role's passphrase variable: `ROOT`, `TARGETS`,
/// `SNAPSHOT`, `TIMESTAMP` (a Seal addition; Notary has no timestamp
/// variable), and `DELEGATION` for every other role (delegations such as
/// `targets/releases`, as Notary does).
pub fn role_alias(role: &str) -> &'static str {
    match role {
        "root" => "ROOT",
        "targets" => "TARGETS",
        "snapshot" => "SNAPSHOT",
        "timestamp" => "TIMESTAMP",
        _ => "DELEGATION",
    }
}

/// The variables consulted for `role`, in order:
/// `SEAL_<ALIAS>_PASSPHRASE`, then Notary's `NOTARY_<ALIAS>_PASSPHRASE`.
pub fn passphrase_vars(role: &str) -> [String; 2] {
    let alias = role_alias(role);
    [format!("SEAL_{alias}_PASSPHRASE"), format!("NOTARY_{alias}_PASSPHRASE")]
}

/// Looks an environment variable up.
type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Reads one passphrase from the terminal, showing the prompt.
type Prompter = Box<dyn FnMut(&str) -> io::Result<Zeroizing<String>>>;

/// The CLI's source: the environment first, then a prompt on the terminal.
///
/// * For `role`, `SEAL_<ALIAS>_PASSPHRASE` then `NOTARY_<ALIAS>_PASSPHRASE`
///   (see [`role_alias`]); an empty value counts as unset, as in Notary. A
///   passphrase from the environment that turns out wrong is an error at
///   once, naming the variable.
/// * Else, when interactive, a prompt on the terminal (`/dev/tty`, echo off)
///   worded as Notary's ("Enter passphrase for root key with ID ebdd8e3:").
///   Typed passphrases are trimmed of surrounding whitespace like Notary's.
///   A new key's passphrase is asked twice and must be at least
///   [`MIN_PASSPHRASE_LEN`] characters. A typed passphrase is remembered per
///   role for the life of this value, as Notary does, so one command does
///   not ask twice for the same role.
/// * Else [`KeyStoreError::NoPassphrase`] naming the `SEAL_` variable.
pub struct EnvOrPrompt {
    env: EnvLookup,
    interactive: bool,
    prompter: Prompter,
    cache: BTreeMap<String, Zeroizing<String>>,
    last_was_cached: bool,
}

impl fmt::Debug for EnvOrPrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvOrPrompt")
            .field("interactive", &self.interactive)
            .field("cached_roles", &self.cache.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl EnvOrPrompt {
    /// A source that looks variables up with `env` (so tests need not touch
    /// the process environment) and prompts only if `interactive`.
    pub fn new(env: impl Fn(&str) -> Option<String> + 'static, interactive: bool) -> EnvOrPrompt {
        EnvOrPrompt {
            env: Box::new(env),
            interactive,
            prompter: Box::new(|prompt: &str| rpassword::prompt_password(prompt).map(Zeroizing::new)),
            cache: BTreeMap::new(),
            last_was_cached: false,
        }
    }

    /// For `main`: takes the `SEAL_*_PASSPHRASE` and `NOTARY_*_PASSPHRASE`
    /// variables from the process environment now (read once, at start-up),
    /// and prompts when standard input is a terminal (Notary's test).
    pub fn from_process_env() -> EnvOrPrompt {
        use std::io::IsTerminal;
        let vars: BTreeMap<String, Zeroizing<String>> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, Zeroizing::new(v.into_string().ok()?))))
            .filter(|(k, _)| (k.starts_with("SEAL_") || k.starts_with("NOTARY_")) && k.ends_with("_PASSPHRASE"))
            .collect();
        EnvOrPrompt::new(
            move |name| vars.get(name).map(|v| v.as_str().to_owned()),
            io::stdin().is_terminal(),
        )
    }

    /// Replaces the terminal prompt (for tests, or a GUI): `prompter` shows
    /// the text it is given and returns what the user typed.
    pub fn with_prompter(mut self, prompter: impl FnMut(&str) -> io::Result<String> + 'static) -> EnvOrPrompt {
        let mut prompter = prompter;
        self.prompter = Box::new(move |prompt: &str| prompter(prompt).map(Zeroizing::new));
        self
    }

    fn ask(&mut self, prompt: &str, role: &str) -> Result<Zeroizing<String>, KeyStoreError> {
        let typed = (self.prompter)(prompt).map_err(|_| KeyStoreError::NoPassphrase {
            role: role.to_owned(),
            var: passphrase_vars(role)[0].clone(),
        })?;
        Ok(Zeroizing::new(typed.trim().to_owned()))
    }

    fn prompt_decrypt(
        &mut self,
        role: &str,
        key_id: &str,
        gun: Option<&str>,
        attempt: u32,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        if attempt == 0 {
            if let Some(cached) = self.cache.get(role) {
                self.last_was_cached = true;
                return Ok(cached.clone());
            }
        }
        let retry = if attempt > 0 && !self.last_was_cached {
            "Passphrase incorrect. Please retry.\n"
        } else {
            ""
        };
        self.last_was_cached = false;
        let prompt = format!("{retry}Enter passphrase for {role} key{}: ", describe(key_id, gun));
        let pass = self.ask(&prompt, role)?;
        self.cache.insert(role.to_owned(), pass.clone());
        Ok(pass)
    }

    fn prompt_create(
        &mut self,
        role: &str,
        key_id: &str,
        gun: Option<&str>,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let what = format!("new {role} key{}", describe(key_id, gun));
        let mut notice = if role == "root" { ROOT_WARNING } else { "" }.to_owned();
        let mut reason = "";
        for _ in 0..super::MAX_ATTEMPTS {
            let pass = self.ask(&format!("{notice}Enter passphrase for {what}: "), role)?;
            if pass.chars().count() < MIN_PASSPHRASE_LEN {
                reason = "passphrase too short";
                notice = format!(
                    "Passphrase is too short (at least {MIN_PASSPHRASE_LEN} characters). Please use a password \
                     manager to generate and store a good random passphrase.\n"
                );
                continue;
            }
            let again = self.ask(&format!("Repeat passphrase for {what}: "), role)?;
            if *again != *pass {
                reason = "the passphrases do not match";
                notice = "Passphrases do not match. Please retry.\n".to_owned();
                continue;
            }
            self.cache.insert(role.to_owned(), pass.clone());
            return Ok(pass);
        }
        Err(KeyStoreError::PassphraseRejected(format!(
            "{reason} ({} attempts)",
            super::MAX_ATTEMPTS
        )))
    }
}

const ROOT_WARNING: &str = "You are about to create a new root signing key passphrase. This passphrase protects \
the most sensitive key of your collections: choose a long, complex one, keep it (and the key file) safe and \
backed up, ideally in a password manager. A lost root passphrase cannot be recovered.\n";

/// ` with ID ebdd8e3 (gun)`, as Notary words it; empty parts left out.
fn describe(key_id: &str, gun: Option<&str>) -> String {
    let mut s = String::new();
    if !key_id.is_empty() {
        s.push_str(" with ID ");
        s.push_str(key_id.get(..7).unwrap_or(key_id));
    }
    if let Some(gun) = gun {
        s.push_str(" (");
        s.push_str(gun);
        s.push(')');
    }
    s
}

impl PassphraseSource for EnvOrPrompt {
    fn passphrase(
        &mut self,
        role: &str,
        key_id: &str,
        gun: Option<&str>,
        purpose: Purpose,
        attempt: u32,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let vars = passphrase_vars(role);
        for var in &vars {
            let Some(value) = (self.env)(var).map(Zeroizing::new) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if attempt > 0 && purpose == Purpose::Decrypt {
                return Err(KeyStoreError::WrongPassphrase {
                    role: role.to_owned(),
                    id: key_id.to_owned(),
                    variable: Some(var.clone()),
                });
            }
            return Ok(value);
        }
        if !self.interactive {
            let [seal_var, _] = vars;
            return Err(KeyStoreError::NoPassphrase {
                role: role.to_owned(),
                var: seal_var,
            });
        }
        match purpose {
            Purpose::Decrypt => self.prompt_decrypt(role, key_id, gun, attempt),
            Purpose::Create => self.prompt_create(role, key_id, gun),
        }
    }
}

/// Fixed passphrases, for tests and for library callers. Keys of the map
/// are full role names (`targets/releases`) or lowercase aliases (`root`,
/// `targets`, `snapshot`, `timestamp`, `delegation`); a role's own entry
/// wins over its alias's. A wrong passphrase is an error at once (the same
/// value would be given again). The values are zeroized on drop.
#[derive(Clone, Default)]
pub struct StaticPassphrases(pub BTreeMap<String, String>);

impl StaticPassphrases {
    /// From `(role or alias, passphrase)` pairs.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> StaticPassphrases {
        StaticPassphrases(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    fn lookup(&self, role: &str) -> Option<&String> {
        self.0
            .get(role)
            .or_else(|| self.0.get(&role_alias(role).to_ascii_lowercase()))
    }
}

impl fmt::Debug for StaticPassphrases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticPassphrases")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for StaticPassphrases {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

impl PassphraseSource for StaticPassphrases {
    fn passphrase(
        &mut self,
        role: &str,
        key_id: &str,
        _gun: Option<&str>,
        purpose: Purpose,
        attempt: u32,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        if attempt > 0 && purpose == Purpose::Decrypt {
            return Err(KeyStoreError::WrongPassphrase {
                role: role.to_owned(),
                id: key_id.to_owned(),
                variable: None,
            });
        }
        match self.lookup(role) {
            Some(pass) => Ok(Zeroizing::new(pass.clone())),
            None => Err(KeyStoreError::NoPassphrase {
                role: role.to_owned(),
                var: format!(
                    "a StaticPassphrases entry {role:?} or {:?}",
                    role_alias(role).to_ascii_lowercase()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'static {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    /// The prompts a scripted prompter was shown.
    type Prompts = Rc<RefCell<Vec<String>>>;

    /// A prompter answering from a script and recording the prompts.
    fn scripted(answers: &[&str]) -> (impl FnMut(&str) -> io::Result<String>, Prompts) {
        let prompts = Rc::new(RefCell::new(Vec::new()));
        let seen = prompts.clone();
        let mut answers: Vec<String> = answers.iter().rev().map(|s| s.to_string()).collect();
        let f = move |p: &str| {
            seen.borrow_mut().push(p.to_owned());
            answers
                .pop()
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no more input"))
        };
        (f, prompts)
    }

    #[test]
    fn seal_variable_wins_over_notarys_and_delegations_share_one_alias() {
        let mut src = EnvOrPrompt::new(
            env(&[
                ("SEAL_ROOT_PASSPHRASE", "seal-root"),
                ("NOTARY_ROOT_PASSPHRASE", "notary-root"),
                ("NOTARY_TARGETS_PASSPHRASE", "notary-targets"),
                ("NOTARY_DELEGATION_PASSPHRASE", "deleg"),
                ("SEAL_SNAPSHOT_PASSPHRASE", ""),
                ("NOTARY_SNAPSHOT_PASSPHRASE", "notary-snap"),
            ]),
            false,
        );
        let mut get = |role: &str| {
            src.passphrase(role, "ab", None, Purpose::Decrypt, 0)
                .map(|p| p.to_string())
        };
        assert_eq!(get("root").unwrap(), "seal-root");
        assert_eq!(get("targets").unwrap(), "notary-targets");
        assert_eq!(get("targets/releases").unwrap(), "deleg");
        assert_eq!(get("targets/a/b").unwrap(), "deleg");
        assert_eq!(
            get("snapshot").unwrap(),
            "notary-snap",
            "an empty variable counts as unset"
        );
        assert_eq!(role_alias("targets/releases"), "DELEGATION");
    }

    #[test]
    fn a_wrong_env_passphrase_is_an_error_at_once() {
        let mut src = EnvOrPrompt::new(env(&[("NOTARY_TARGETS_PASSPHRASE", "x")]), true);
        let err = src
            .passphrase("targets", "0ba3b4050c97cad9", Some("g"), Purpose::Decrypt, 1)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong passphrase for targets key 0ba3b40 (from NOTARY_TARGETS_PASSPHRASE)"
        );
    }

    #[test]
    fn without_env_or_terminal_the_error_names_the_seal_variable() {
        let mut src = EnvOrPrompt::new(env(&[]), false);
        let err = src
            .passphrase("root", "ebdd8e3b", None, Purpose::Decrypt, 0)
            .unwrap_err();
        match &err {
            KeyStoreError::NoPassphrase { role, var } => {
                assert_eq!(role, "root");
                assert_eq!(var, "SEAL_ROOT_PASSPHRASE");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("SEAL_ROOT_PASSPHRASE"));
        let err = src
            .passphrase("targets/releases", "e2069a2d", None, Purpose::Create, 0)
            .unwrap_err();
        assert!(err.to_string().contains("SEAL_DELEGATION_PASSPHRASE"), "{err}");
    }

    #[test]
    fn prompts_are_worded_like_notarys_trimmed_and_cached_per_role() {
        let (prompter, prompts) = scripted(&[" first \n", "second"]);
        let mut src = EnvOrPrompt::new(env(&[]), true).with_prompter(prompter);
        let id = "ebdd8e3b6b65e2638700ae9e64b6de9a95853acb8242cecf882a4ed3ec518bba";
        assert_eq!(*src.passphrase("root", id, None, Purpose::Decrypt, 0).unwrap(), "first");
        // Cached for the role on a first attempt; a retry prompts again.
        assert_eq!(*src.passphrase("root", id, None, Purpose::Decrypt, 0).unwrap(), "first");
        assert_eq!(
            *src.passphrase("root", id, None, Purpose::Decrypt, 1).unwrap(),
            "second"
        );
        let prompts = prompts.borrow();
        assert_eq!(prompts[0], "Enter passphrase for root key with ID ebdd8e3: ");
        assert_eq!(
            prompts[1], "Enter passphrase for root key with ID ebdd8e3: ",
            "no 'incorrect' after a cached try"
        );
        assert_eq!(prompts.len(), 2);
    }

    #[test]
    fn retry_prompt_says_the_passphrase_was_incorrect() {
        let (prompter, prompts) = scripted(&["a", "b"]);
        let mut src = EnvOrPrompt::new(env(&[]), true).with_prompter(prompter);
        src.passphrase("targets", "0ba3b4050c", Some("example.com/app"), Purpose::Decrypt, 0)
            .unwrap();
        src.passphrase("targets", "0ba3b4050c", Some("example.com/app"), Purpose::Decrypt, 1)
            .unwrap();
        assert_eq!(
            prompts.borrow()[1],
            "Passphrase incorrect. Please retry.\nEnter passphrase for targets key with ID 0ba3b40 (example.com/app): "
        );
    }

    #[test]
    fn create_asks_twice_and_enforces_length_and_match() {
        let (prompter, prompts) = scripted(&["short", "long enough", "different", "long enough", "long enough"]);
        let mut src = EnvOrPrompt::new(env(&[]), true).with_prompter(prompter);
        let pass = src
            .passphrase("targets/releases", "e2069a2d68", None, Purpose::Create, 0)
            .unwrap();
        assert_eq!(*pass, "long enough");
        let prompts = prompts.borrow();
        assert_eq!(
            prompts[0],
            "Enter passphrase for new targets/releases key with ID e2069a2: "
        );
        assert!(prompts[1].starts_with("Passphrase is too short"));
        assert_eq!(
            prompts[2],
            "Repeat passphrase for new targets/releases key with ID e2069a2: "
        );
        assert!(prompts[3].starts_with("Passphrases do not match."));
        assert_eq!(prompts.len(), 5);
    }

    #[test]
    fn create_gives_up_after_three_rejections() {
        let (prompter, _) = scripted(&["a", "b", "c"]);
        let mut src = EnvOrPrompt::new(env(&[]), true).with_prompter(prompter);
        let err = src.passphrase("root", "", None, Purpose::Create, 0).unwrap_err();
        assert!(
            matches!(&err, KeyStoreError::PassphraseRejected(m) if m.contains("too short")),
            "{err}"
        );
    }

    #[test]
    fn static_passphrases_prefer_the_role_over_its_alias() {
        let mut src = StaticPassphrases::new([("delegation", "d"), ("targets/special", "s"), ("root", "r")]);
        let mut get = |role: &str| {
            src.passphrase(role, "", None, Purpose::Decrypt, 0)
                .map(|p| p.to_string())
        };
        assert_eq!(get("targets/special").unwrap(), "s");
        assert_eq!(get("targets/other").unwrap(), "d");
        assert_eq!(get("root").unwrap(), "r");
        assert!(matches!(get("snapshot"), Err(KeyStoreError::NoPassphrase { .. })));
        assert!(matches!(
            src.passphrase("root", "", None, Purpose::Decrypt, 1),
            Err(KeyStoreError::WrongPassphrase { .. })
        ));
        assert!(!format!("{src:?}").contains("\"r\""), "Debug must not show passphrases");
    }
}
