//! Environment overrides: which scalar keys a `SEAL_NODE_*` or
//! `NOTARY_SERVER_*` variable may set, and how it is typed and applied to the
//! JSON before it is parsed.

use serde_json::Value;

use super::{ConfigError, Env, FAULTS_FILE_ENV, NOTARY_ENV_PREFIX, SEAL_ENV_PREFIX};

/// The kind of value a scalar key holds, to type environment overrides.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

/// Every scalar key an environment variable may override.
const SCALAR_KEYS: &[(&str, Kind)] = &[
    ("server.http_addr", Kind::Str),
    ("server.tls_cert_file", Kind::Str),
    ("server.tls_key_file", Kind::Str),
    ("server.client_ca_file", Kind::Str),
    ("trust_service.type", Kind::Str),
    ("trust_service.hostname", Kind::Str),
    ("trust_service.port", Kind::Str),
    ("trust_service.tls_ca_file", Kind::Str),
    ("trust_service.tls_client_cert", Kind::Str),
    ("trust_service.tls_client_key", Kind::Str),
    ("trust_service.key_algorithm", Kind::Str),
    ("trust_service.attempt_timeout_ms", Kind::Int),
    ("trust_service.call_timeout_ms", Kind::Int),
    ("trust_service.key_creation_timeout_ms", Kind::Int),
    ("storage.backend", Kind::Str),
    ("storage.db_url", Kind::Str),
    ("storage.data_dir", Kind::Str),
    ("data_dir", Kind::Str),
    ("logging.level", Kind::Str),
    ("logging.format", Kind::Str),
    ("auth.type", Kind::Str),
    ("auth.options.realm", Kind::Str),
    ("auth.options.service", Kind::Str),
    ("auth.options.issuer", Kind::Str),
    ("auth.options.rootcertbundle", Kind::Str),
    ("auth.options.anonymous_read", Kind::Bool),
    ("caching.max_age.current_metadata", Kind::Int),
    ("caching.max_age.consistent_metadata", Kind::Int),
    ("raft.node_id", Kind::Int),
    ("raft.heartbeat_ms", Kind::Int),
    ("raft.election_timeout_min_ms", Kind::Int),
    ("raft.election_timeout_max_ms", Kind::Int),
    ("raft.max_staleness_ms", Kind::Int),
    ("raft.source_ip", Kind::Str),
    ("raft.snapshot_logs_since_last", Kind::Int),
    ("raft.snapshot_log_percent", Kind::Int),
    ("raft.max_in_snapshot_log_to_keep", Kind::Int),
    ("raft.max_connections", Kind::Int),
    ("raft.addr", Kind::Str),
    ("raft.tls_ca_file", Kind::Str),
    ("raft.tls_cert_file", Kind::Str),
    ("raft.tls_key_file", Kind::Str),
    ("connections.max_per_listener", Kind::Int),
    ("connections.handshake_timeout_ms", Kind::Int),
    ("connections.header_read_timeout_ms", Kind::Int),
    ("connections.idle_timeout_ms", Kind::Int),
    ("connections.drain_timeout_ms", Kind::Int),
    ("limits.max_body_bytes", Kind::Int),
    ("limits.max_parts", Kind::Int),
    ("limits.max_file_bytes", Kind::Int),
    ("limits.max_forward_bytes_in_flight", Kind::Int),
    ("limits.max_keys", Kind::Int),
    ("limits.max_delegations", Kind::Int),
    ("limits.max_targets", Kind::Int),
    ("limits.max_version_jump", Kind::Int),
    ("timestamps.refresh_margin_fraction", Kind::Float),
    ("timestamps.timestamp_lifetime_secs", Kind::Int),
    ("timestamps.snapshot_lifetime_secs", Kind::Int),
    ("signer.passphrase_env", Kind::Str),
    ("signer.keys_dir", Kind::Str),
    ("metrics.addr", Kind::Str),
    ("metrics.main_listener", Kind::Bool),
    ("insecure", Kind::Bool),
];

/// Collects this process's `SEAL_NODE_*` and `NOTARY_SERVER_*` variables
/// (skipping non-UTF-8 ones) and [`FAULTS_FILE_ENV`] (kept even when not UTF-8, so that
/// its presence is never missed); meant to be called once, by `main`.
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            if k == FAULTS_FILE_ENV {
                return Some((k, v.to_string_lossy().into_owned()));
            }
            Some((k, v.into_string().ok()?))
        })
        .filter(|(k, _)| k.starts_with(SEAL_ENV_PREFIX) || k.starts_with(NOTARY_ENV_PREFIX) || k == FAULTS_FILE_ENV)
        .collect()
}

/// The environment variable suffix of a key path.
fn env_suffix(key: &str) -> String {
    key.to_ascii_uppercase().replace('.', "_")
}

/// Applies environment overrides to the raw JSON tree. A `SEAL_NODE_*`
/// variable that names no key is refused (with the closest name when one is
/// close); unknown `NOTARY_SERVER_*` variables are ignored, as notary-server
/// ignores them (it only looks up the names of keys it knows).
pub(super) fn apply_env(root: &mut Value, env: &Env) -> Result<(), ConfigError> {
    let names: Vec<String> = SCALAR_KEYS
        .iter()
        .map(|(key, _)| format!("{SEAL_ENV_PREFIX}{}", env_suffix(key)))
        .collect();
    for var in env.keys().filter(|k| k.starts_with(SEAL_ENV_PREFIX)) {
        if !names.contains(var) {
            let near = names
                .iter()
                .map(|n| (super::strict::edit_distance(var, n), n))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, n)| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            return Err(ConfigError::Env {
                var: var.clone(),
                message: format!("names no config key{near}"),
            });
        }
    }
    for (key, kind) in SCALAR_KEYS {
        let suffix = env_suffix(key);
        let seal = format!("{SEAL_ENV_PREFIX}{suffix}");
        let notary = format!("{NOTARY_ENV_PREFIX}{suffix}");
        let (var, raw) = match (env.get(&seal), env.get(&notary)) {
            (Some(v), _) => (seal, v),
            (None, Some(v)) => (notary, v),
            (None, None) => continue,
        };
        let value = match kind {
            Kind::Str => Value::String(raw.clone()),
            Kind::Int => raw
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .map_err(|e| ConfigError::Env {
                    var: var.clone(),
                    message: format!("not a non-negative integer: {e}"),
                })?,
            Kind::Float => raw
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    message: "not a number".into(),
                })?,
            Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: "not a boolean (true or false)".into(),
                    })
                }
            },
        };
        set_path(root, key, value).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(format!("{} is not an object", parts[..i].join(".")));
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return Ok(());
        }
        node = map
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}
