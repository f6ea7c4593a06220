//! Strict reading of the config file: every unknown key is refused with its
//! full path (and the closest known key when one is close), every type error
//! names its key path, and notary-server's keys that Seal does not support
//! are refused with a sentence saying what to use instead, or (when ignoring
//! them is harmless) accepted with a warning.
//!
//! | Notary key | Seal |
//! |---|---|
//! | `server.*`, `trust_service.*`, `auth.*`, `logging.level`, `caching.*`, `repositories.gun_prefixes` | supported |
//! | `storage.backend`: `mysql`, `postgres`, `rethinkdb` (and their `db_url`, `database`, `username`, `password`, `tls_ca_file`, `client_cert_file`, `client_key_file`) | refused: Seal keeps its data in its own replicated RocksDB; import with `seal-node import-notary` |
//! | `storage.backend`: `memory` | accepted with a warning: the data is kept under `storage.data_dir` |
//! | `reporting` (bugsnag) | accepted with a warning and ignored: errors are logged, not reported |

use serde_json::Value;

use super::raw::RawConfig;
use super::ConfigError;

/// Notary's SQL and RethinkDB storage backends.
const NOTARY_DATABASES: &[&str] = &["mysql", "postgres", "rethinkdb"];

/// Keys of `storage` that only Notary's database backends read.
const NOTARY_DATABASE_KEYS: &[&str] = &[
    "db_url",
    "database",
    "username",
    "password",
    "tls_ca_file",
    "client_cert_file",
    "client_key_file",
];

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

fn import_hint() -> &'static str {
    "Seal keeps its data in its own replicated RocksDB under storage.data_dir; \
     import a Notary database with `seal-node import-notary` (see docs/migration.md)"
}

/// Refuses or removes notary-server's keys that Seal does not support (see
/// the module's table); returns the warnings for the ones accepted.
pub(super) fn screen_notary_keys(root: &mut Value) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let Value::Object(map) = root else {
        return Ok(warnings);
    };
    if map.remove("reporting").is_some() {
        warnings.push(
            "config key reporting: Notary's error reporting (bugsnag) is not supported by Seal and is ignored; \
             errors are written to the log"
                .to_owned(),
        );
    }
    if let Some(Value::Object(storage)) = map.get("storage") {
        let backend = match storage.get("backend") {
            Some(Value::String(s)) => Some(s.trim().to_ascii_lowercase()),
            _ => None,
        };
        match backend.as_deref() {
            Some(db) if NOTARY_DATABASES.contains(&db) => {
                return Err(invalid(
                    "storage.backend",
                    format!(
                        "{db:?} is Notary's database backend, which Seal does not use: {}",
                        import_hint()
                    ),
                ))
            }
            Some("memory") => warnings.push(
                "config key storage.backend: \"memory\" is Notary's throw-away store; Seal keeps the data \
                 in RocksDB under storage.data_dir, where it survives a restart"
                    .to_owned(),
            ),
            _ => {}
        }
        for key in NOTARY_DATABASE_KEYS {
            if storage.contains_key(*key) {
                let blank = matches!(storage.get(*key), Some(Value::String(s)) if s.trim().is_empty());
                if !blank {
                    return Err(invalid(
                        &format!("storage.{key}"),
                        format!(
                            "only Notary's database backends read it, and Seal has none: {}",
                            import_hint()
                        ),
                    ));
                }
            }
        }
        if let Some(Value::Object(storage)) = map.get_mut("storage") {
            for key in NOTARY_DATABASE_KEYS {
                storage.remove(*key);
            }
        }
    }
    Ok(warnings)
}

/// The sections that are objects: serde would also read a list as one (`"raft": []` as an
/// empty `raft`), so a list there is refused first.
const OBJECT_SECTIONS: &[&str] = &[
    "server",
    "trust_service",
    "storage",
    "logging",
    "auth",
    "auth.options",
    "repositories",
    "caching",
    "caching.max_age",
    "raft",
    "limits",
    "connections",
    "timestamps",
    "signer",
    "metrics",
];

/// Deserializes the raw config, each error naming its key path.
pub(super) fn deserialize(root: Value) -> Result<RawConfig, ConfigError> {
    for section in OBJECT_SECTIONS {
        let found = section.split('.').try_fold(&root, |v, k| v.get(k));
        if matches!(found, Some(Value::Array(_))) {
            return Err(invalid(section, "expected an object, found a list"));
        }
    }
    serde_path_to_error::deserialize(root).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        describe(&path, &message)
    })
}

/// Turns serde's message at `path` into a [`ConfigError`].
fn describe(path: &str, message: &str) -> ConfigError {
    let parent = if path == "." { String::new() } else { path.to_owned() };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // serde_path_to_error's path already ends with the unknown field.
        let full = if parent.ends_with(field) {
            parent.clone()
        } else {
            join(&parent, field)
        };
        let prefix = full.strip_suffix(field).unwrap_or("");
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let suggestion = closest(field, &known).map(|k| format!("{prefix}{k}"));
        return ConfigError::UnknownKey { key: full, suggestion };
    }
    let message = match message.strip_prefix("invalid type: ") {
        Some(rest) => match rest.split_once(", expected ") {
            Some((found, expected)) => format!("expected {}, found {}", kind(expected), found_kind(found)),
            None => rest.to_owned(),
        },
        None if message.starts_with("data did not match any variant of untagged enum RawPort") => {
            "expected a port number (or a string holding one)".to_owned()
        }
        None => message.to_owned(),
    };
    invalid(if parent.is_empty() { "(top level)" } else { &parent }, message)
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// What serde expected, in words.
fn kind(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u64" | "u32" | "u16" | "usize" | "i64" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" => "a string".into(),
        "a sequence" => "a list".into(),
        _ if e.starts_with("struct ") || e == "a map" => "an object".into(),
        _ => e.to_owned(),
    }
}

/// What serde found, in words.
fn found_kind(found: &str) -> String {
    let f = found.trim();
    let word = f.split_whitespace().next().unwrap_or(f);
    match word {
        "string" => "a string".into(),
        "integer" => format!("the integer {}", f.trim_start_matches("integer ").trim_matches('`')),
        "floating" => "a number with a fraction".into(),
        "boolean" => "a boolean".into(),
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "null" | "unit" => "null".into(),
        _ => f.to_owned(),
    }
}

/// The known key closest to `field`, when it is a likely typo of it.
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(field, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
