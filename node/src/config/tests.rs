use super::*;
use seal_testkit::notary_fixtures as fixtures_dir;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_json(text, Path::new("/etc/seal"), &Env::new())
}

const MINIMAL: &str = r#"{"server":{"http_addr":"127.0.0.1:4443"},"trust_service":{"type":"local"}}"#;

#[test]
fn notary_local_config_parses() {
    let Some(dir) = fixtures_dir() else { return };
    let path = dir.join("configs/local/server-http-local-ed25519.json");
    let c = NodeConfig::load(&path, &Env::new()).unwrap();
    assert_eq!(
        c.server.http_addr,
        ListenAddr {
            host: "127.0.0.1".into(),
            port: 4444
        }
    );
    assert_eq!(c.server.tls, None);
    assert_eq!(c.trust_service.kind, TrustServiceType::Local);
    assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ed25519);
    assert_eq!(c.storage.backend, "memory");
    assert_eq!(c.logging.level, "debug");
    assert_eq!(c.auth, None);
    assert_eq!(c.caching.current_metadata, 300);
    assert_eq!(c.caching.consistent_metadata, 2_592_000);
    assert_eq!(c.storage.data_dir, dir.join("configs/local/seal-data"));
}

#[test]
fn notary_release_config_is_refused_for_its_mysql_storage() {
    let Some(dir) = fixtures_dir() else { return };
    let path = dir.join("configs/notary-v0.7.0/server-config.json");
    let e = NodeConfig::load(&path, &Env::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config key storage.backend: \"mysql\" is Notary's database backend, which Seal does not use: \
         Seal keeps its data in its own replicated RocksDB under storage.data_dir; import a Notary database \
         with `seal-node import-notary` (see docs/migration.md)"
    );
    // The same file with Seal's storage: every other key of Notary's release config is Seal's too.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    json["storage"] = serde_json::json!({"backend": "rocksdb"});
    let base = dir.join("configs/notary-v0.7.0");
    let c = NodeConfig::from_json(&json.to_string(), &base, &Env::new()).unwrap();
    assert_eq!(c.server.http_addr.host, "");
    assert_eq!(c.server.http_addr.port, 4443);
    assert_eq!(c.server.http_addr.socket_addr(), Some("0.0.0.0:4443".parse().unwrap()));
    assert_eq!(
        c.server.tls,
        Some(TlsFiles {
            cert_file: base.join("./notary-server.crt"),
            key_file: base.join("./notary-server.key"),
        })
    );
    let t = &c.trust_service;
    assert_eq!(t.kind, TrustServiceType::Remote);
    assert_eq!(t.hostname.as_deref(), Some("notarysigner"));
    assert_eq!(t.port, Some(7899));
    assert_eq!(t.key_algorithm, KeyAlgorithm::Ecdsa);
    assert_eq!(t.tls_ca_file, Some(base.join("./root-ca.crt")));
    assert_eq!(c.storage.backend, "rocksdb");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_refused_with_their_path_and_the_closest_known_key() {
    assert_eq!(
        error(r#"{"server":{"http_addr":":1","tls_cert_flie":"c.pem"},"trust_service":{"type":"local"}}"#),
        r#"unknown key "server.tls_cert_flie" (did you mean "server.tls_cert_file"?)"#
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"rafft":{"addr":"a:1"}}"#),
        r#"unknown key "rafft" (did you mean "raft"?)"#
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"node_idd":2}}"#),
        r#"unknown key "raft.node_idd" (did you mean "raft.node_id"?)"#
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"auth":{"options":{"reaml":"r"}}}"#),
        r#"unknown key "auth.options.reaml" (did you mean "auth.options.realm"?)"#
    );
    // Inside a list, with its index; nothing close: no suggestion.
    assert_eq!(
        error(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"remote","signers":[{"hostname":"s","port":1,"weight":2}]}}"#
        ),
        r#"unknown key "trust_service.signers[0].weight""#
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"colour":true}"#),
        r#"unknown key "colour""#
    );
}

#[test]
fn type_errors_name_the_key() {
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"node_id":"2"}}"#),
        "config key raft.node_id: expected an integer, found a string"
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":5},"trust_service":{"type":"local"}}"#),
        "config key server.http_addr: expected a string, found the integer 5"
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"insecure":"yes"}"#),
        "config key insecure: expected true or false, found a string"
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":5}"#),
        "config key raft: expected an object, found the integer 5"
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"caching":{"max_age":[]}}"#),
        "config key caching.max_age: expected an object, found a list"
    );
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"remote","port":true}}"#),
        "config key trust_service.port: expected a port number (or a string holding one)"
    );
}

#[test]
fn notary_keys_seal_does_not_support() {
    const BASE: &str = r#""server":{"http_addr":":1"},"trust_service":{"type":"local"}"#;
    for db in ["mysql", "postgres", "rethinkdb"] {
        let e = error(&format!(r#"{{{BASE},"storage":{{"backend":"{db}","db_url":"x"}}}}"#));
        assert!(
            e.starts_with(&format!(
                "config key storage.backend: \"{db}\" is Notary's database backend, which Seal does not use: \
                 Seal keeps its data in its own replicated RocksDB under storage.data_dir; import a Notary \
                 database with `seal-node import-notary`"
            )),
            "{e}"
        );
    }
    for key in ["db_url", "database", "username", "password", "client_cert_file"] {
        let e = error(&format!(r#"{{{BASE},"storage":{{"backend":"rocksdb","{key}":"x"}}}}"#));
        assert!(
            e.starts_with(&format!(
                "config key storage.{key}: only Notary's database backends read it, and Seal has none"
            )),
            "{e}"
        );
    }
    // Notary's memory store: accepted, said.
    let c = parse(&format!(r#"{{{BASE},"storage":{{"backend":"memory","db_url":""}}}}"#)).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].starts_with("config key storage.backend: \"memory\""),
        "{:?}",
        c.warnings
    );
    // Error reporting to bugsnag: accepted and ignored, said.
    let c = parse(&format!(
        r#"{{{BASE},"reporting":{{"bugsnag":{{"api_key":"k","release_stage":"production"}}}}}}"#
    ))
    .unwrap();
    assert_eq!(
        c.warnings,
        [
            "config key reporting: Notary's error reporting (bugsnag) is not supported by Seal and is ignored; \
          errors are written to the log"
        ]
    );
    assert!(error(&format!(r#"{{{BASE},"storage":{{"backend":"sqlite"}}}}"#)).contains("storage.backend"));
}

#[test]
fn seal_environment_variables_that_name_no_key_are_refused() {
    let e = NodeConfig::from_json(
        MINIMAL,
        Path::new("/etc/seal"),
        &env(&[("SEAL_NODE_SERVER_TLS_CERT_FLIE", "c.pem")]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable SEAL_NODE_SERVER_TLS_CERT_FLIE: names no config key \
         (did you mean SEAL_NODE_SERVER_TLS_CERT_FILE?)"
    );
    // Notary ignores the NOTARY_SERVER_ names it does not know; so does Seal.
    NodeConfig::from_json(
        MINIMAL,
        Path::new("/etc/seal"),
        &env(&[("NOTARY_SERVER_SOMETHING_ELSE", "x")]),
    )
    .unwrap();
}

#[test]
fn logging_format_and_the_one_line_summary() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.logging.format, LogFormat::Text);
    assert_eq!(c.summary(), "mode standalone, TLS off, signer local");
    assert_eq!(c.connections.drain_timeout, Duration::from_secs(10));
    let c = parse(
        r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"logging":{"format":"json"},
            "connections":{"drain_timeout_ms":2500}}"#,
    )
    .unwrap();
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.connections.drain_timeout, Duration::from_millis(2500));
    assert_eq!(
        error(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"logging":{"format":"xml"}}"#),
        "config key logging.format: unknown format \"xml\": expected text or json"
    );
}

#[test]
fn token_auth_config_parses() {
    let Some(dir) = fixtures_dir() else { return };
    let path = dir.join("configs/local/server-http-token-auth.json");
    let c = NodeConfig::load(&path, &Env::new()).unwrap();
    let auth = c.auth.unwrap();
    assert_eq!(auth.realm, "http://127.0.0.1:4447/auth/token");
    assert_eq!(auth.service, "notary-server");
    assert_eq!(auth.issuer, "anchors-token-issuer");
    assert_eq!(
        auth.rootcertbundle,
        dir.join("configs/local/../../certs/local-test-pki/root-ca.crt")
    );
    assert!(auth.rootcertbundle.exists());
    assert!(!auth.anonymous_read);
}

#[test]
fn a_list_of_signers_after_notarys_single_one() {
    let remote = |extra: &str| {
        parse(&format!(
            r#"{{"server":{{"http_addr":":1"}},"trust_service":{{"type":"remote","tls_ca_file":"ca.pem",
                "tls_client_cert":"c.pem","tls_client_key":"k.pem"{extra}}}}}"#
        ))
    };
    let addr = |h: &str, p: u16| SignerAddr {
        hostname: h.into(),
        port: p,
    };
    // Notary's hostname/port alone.
    let t = remote(r#","hostname":"s1","port":"7899""#).unwrap().trust_service;
    assert_eq!(t.signers, [addr("s1", 7899)]);
    assert_eq!(
        (t.attempt_timeout, t.call_timeout),
        (Duration::from_secs(1), Duration::from_secs(5))
    );
    // Both: the single one first, duplicates dropped; ports as numbers or strings.
    let t = remote(
        r#","hostname":"s1","port":7899,"signers":[{"hostname":"s2","port":"7899"},
           {"hostname":"s1","port":7899},{"hostname":"s3","port":7900}],"attempt_timeout_ms":250,
           "call_timeout_ms":3000"#,
    )
    .unwrap()
    .trust_service;
    assert_eq!(t.signers, [addr("s1", 7899), addr("s2", 7899), addr("s3", 7900)]);
    assert_eq!(
        (t.attempt_timeout, t.call_timeout),
        (Duration::from_millis(250), Duration::from_secs(3))
    );
    // The list alone, Notary's keys empty as its configs write them.
    let t = remote(r#","hostname":"","port":"","signers":[{"hostname":"s2","port":1}]"#)
        .unwrap()
        .trust_service;
    assert_eq!(t.signers, [addr("s2", 1)]);
    for (extra, key) in [
        ("", "trust_service.hostname"),
        (r#","hostname":"s1""#, "trust_service.port"),
        (r#","signers":[{"hostname":"","port":1}]"#, "trust_service.signers[0]"),
        (r#","signers":[{"hostname":"s","port":0}]"#, "trust_service.signers[0]"),
        (
            r#","signers":[{"hostname":"s","port":"x"}]"#,
            "trust_service.signers[0]",
        ),
        (
            r#","signers":[{"hostname":"s","port":70000}]"#,
            "trust_service.signers[0]",
        ),
        (
            r#","signers":[{"hostname":"s","port":1}],"attempt_timeout_ms":0"#,
            "trust_service.attempt_timeout_ms",
        ),
        (
            r#","signers":[{"hostname":"s","port":1}],"attempt_timeout_ms":9000"#,
            "trust_service.attempt_timeout_ms",
        ),
    ] {
        match remote(extra) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{extra}"),
            other => panic!("{extra}: {other:?}"),
        }
    }
    // An unknown key in an entry is a mistake, not something to ignore.
    assert!(remote(r#","signers":[{"hostname":"s","port":1,"prot":2}]"#).is_err());
}

#[test]
fn anonymous_read_option() {
    let text = r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"auth":{"type":"token",
        "options":{"realm":"r","service":"s","issuer":"i","rootcertbundle":"roots.pem","anonymous_read":true}}}"#;
    let c = parse(text).unwrap();
    let auth = c.auth.unwrap();
    assert!(auth.anonymous_read);
    assert_eq!(auth.rootcertbundle, PathBuf::from("/etc/seal/roots.pem"));
    let e = env(&[("SEAL_NODE_AUTH_OPTIONS_ANONYMOUS_READ", "false")]);
    let c = NodeConfig::from_json(text, Path::new("/etc/seal"), &e).unwrap();
    assert!(!c.auth.unwrap().anonymous_read);
    let e = env(&[("NOTARY_SERVER_AUTH_OPTIONS_ANONYMOUS_READ", "yes please")]);
    assert!(matches!(
        NodeConfig::from_json(text, Path::new("/etc/seal"), &e),
        Err(ConfigError::Env { var, .. }) if var == "NOTARY_SERVER_AUTH_OPTIONS_ANONYMOUS_READ"
    ));
}

#[test]
fn defaults_and_seal_keys() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.raft.node_id, 1);
    assert_eq!(c.raft.max_staleness_ms, DEFAULT_MAX_STALENESS_MS);
    assert_eq!(c.raft.snapshot_logs_since_last, 10_000);
    assert_eq!(c.raft.snapshot_log_percent, 0);
    assert_eq!(c.raft.max_in_snapshot_log_to_keep, 1_000);
    assert_eq!(c.raft.max_connections, 1024);
    assert_eq!(c.limits, UploadLimits::default());
    assert_eq!(c.timestamps.refresh_margin_fraction, 0.5);
    assert_eq!(c.timestamps.timestamp_lifetime_secs, 1_209_600);
    assert_eq!(c.timestamps.snapshot_lifetime_secs, 94_608_000);
    assert_eq!(c.storage.data_dir, PathBuf::from("/etc/seal/seal-data"));
    assert_eq!(c.signer.keys_dir, PathBuf::from("/etc/seal/seal-data/keys"));
    assert_eq!(c.signer.passphrase_env, "SEAL_SIGNER_PASSPHRASE");

    let c = parse(
        r#"{"server":{"http_addr":"[::1]:80"},"trust_service":{"type":"local","key_algorithm":"ecdsa"},
        "data_dir":"/var/seal","raft":{"node_id":3,"heartbeat_ms":100,"election_timeout_min_ms":300,"election_timeout_max_ms":600,"max_staleness_ms":800,
                "snapshot_logs_since_last":50,"snapshot_log_percent":25,"max_in_snapshot_log_to_keep":5,"max_connections":64,"source_ip":"127.0.0.7"},
        "limits":{"max_body_bytes":1000,"max_parts":5,"max_file_bytes":100},
        "caching":{"max_age":{"current_metadata":0,"consistent_metadata":60}},
        "repositories":{"gun_prefixes":["docker.io/"]},
        "signer":{"passphrase_env":"MY_PASS","keys_dir":"keys"}}"#,
    )
    .unwrap();
    assert_eq!(c.server.http_addr.to_string(), "[::1]:80");
    assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ecdsa);
    assert_eq!(c.storage.data_dir, PathBuf::from("/var/seal"));
    assert_eq!(c.raft.node_id, 3);
    assert_eq!(c.raft.max_staleness_ms, 800);
    assert_eq!(c.raft.snapshot_logs_since_last, 50);
    assert_eq!(c.raft.snapshot_log_percent, 25);
    assert_eq!(c.raft.max_in_snapshot_log_to_keep, 5);
    assert_eq!(c.raft.max_connections, 64);
    assert_eq!(c.raft.source_ip, Some([127, 0, 0, 7].into()));
    assert_eq!(
        c.limits,
        UploadLimits {
            max_body_bytes: 1000,
            max_parts: 5,
            max_file_bytes: 100,
            max_forward_bytes_in_flight: super::DEFAULT_MAX_FORWARD_BYTES_IN_FLIGHT,
        }
    );
    assert_eq!(c.caching.current_metadata, 0);
    assert_eq!(c.caching.consistent_metadata, 60);
    assert_eq!(c.repositories.gun_prefixes, vec!["docker.io/".to_string()]);
    assert_eq!(c.signer.passphrase_env, "MY_PASS");
    assert_eq!(c.signer.keys_dir, PathBuf::from("/etc/seal/keys"));
    // storage.data_dir wins over the top-level key.
    let c = parse(
        r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"data_dir":"a","storage":{"data_dir":"b"}}"#,
    )
    .unwrap();
    assert_eq!(c.storage.data_dir, PathBuf::from("/etc/seal/b"));
}

#[test]
fn environment_overrides() {
    let e = env(&[
        ("NOTARY_SERVER_SERVER_HTTP_ADDR", "0.0.0.0:1111"),
        ("SEAL_NODE_SERVER_HTTP_ADDR", "127.0.0.1:2222"),
        ("NOTARY_SERVER_LOGGING_LEVEL", "error"),
        ("SEAL_NODE_RAFT_NODE_ID", "7"),
        ("SEAL_NODE_TIMESTAMPS_REFRESH_MARGIN_FRACTION", "0.25"),
        ("NOTARY_SERVER_TRUST_SERVICE_PORT", "9999"),
        ("NOTARY_SERVER_CACHING_MAX_AGE_CURRENT_METADATA", "0"),
        ("SEAL_NODE_DATA_DIR", "/data"),
        ("UNRELATED", "x"),
    ]);
    let c = NodeConfig::from_json(MINIMAL, Path::new("/etc/seal"), &e).unwrap();
    assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:2222");
    assert_eq!(c.logging.level, "error");
    assert_eq!(c.raft.node_id, 7);
    assert_eq!(c.timestamps.refresh_margin_fraction, 0.25);
    assert_eq!(c.trust_service.port, Some(9999));
    assert_eq!(c.caching.current_metadata, 0);
    assert_eq!(c.storage.data_dir, PathBuf::from("/data"));

    let e = env(&[("SEAL_NODE_RAFT_NODE_ID", "seven")]);
    assert!(matches!(
        NodeConfig::from_json(MINIMAL, Path::new("/"), &e),
        Err(ConfigError::Env { var, .. }) if var == "SEAL_NODE_RAFT_NODE_ID"
    ));
    // A scalar override into a non-object is refused, not a panic.
    let e = env(&[("SEAL_NODE_SERVER_HTTP_ADDR", "1.2.3.4:5")]);
    assert!(matches!(
        NodeConfig::from_json(r#"{"server":5}"#, Path::new("/"), &e),
        Err(ConfigError::Env { .. })
    ));
}

#[test]
fn cluster_keys_resolve_relative_to_the_config_and_are_checked() {
    let c = NodeConfig::from_json(
        r#"{"server":{"http_addr":":4443"},"trust_service":{"type":"remote","hostname":"signer","port":"7899",
            "tls_ca_file":"ca.crt","tls_client_cert":"n2.crt","tls_client_key":"n2.key"},"raft":{"node_id":2,
            "addr":"127.0.0.1:7002","tls_ca_file":"ca.crt","tls_cert_file":"n2.crt","tls_key_file":"/abs/n2.key",
            "bootstrap":[{"id":1,"raft_addr":"127.0.0.1:7001"},{"id":2,"raft_addr":"127.0.0.1:7002"}],
            "allowed_peer_names":["seal-node-*"]}}"#,
        Path::new("/etc/seal"),
        &Env::new(),
    )
    .unwrap();
    assert_eq!(c.raft.addr.as_deref(), Some("127.0.0.1:7002"));
    let tls = c.raft.tls.unwrap();
    assert_eq!(tls.ca_file, PathBuf::from("/etc/seal/ca.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/abs/n2.key"));
    assert_eq!(c.raft.bootstrap.len(), 2);
    assert_eq!(c.raft.bootstrap[0].raft_addr, "127.0.0.1:7001");
    assert_eq!(c.raft.allowed_peer_names, ["seal-node-*"]);

    let base = r#"{"server":{"http_addr":":1"},"trust_service":{"type":"remote","hostname":"signer","port":"7899",
        "tls_ca_file":"a","tls_client_cert":"b","tls_client_key":"c"},"raft":"#;
    let key = |raft: &str| invalid_key(&format!("{base}{raft}}}"));
    assert_eq!(key(r#"{"addr":"127.0.0.1:7001"}"#), "raft.tls_ca_file");
    assert_eq!(key(r#"{"tls_ca_file":"ca.crt"}"#), "raft.tls_ca_file");
    assert_eq!(
        key(r#"{"bootstrap":[{"id":1,"raft_addr":"127.0.0.1:7001"}]}"#),
        "raft.bootstrap"
    );
    let tls = r#""addr":"127.0.0.1:7001","tls_ca_file":"a","tls_cert_file":"b","tls_key_file":"c""#;
    assert_eq!(
        key(&format!(
            r#"{{{tls},"bootstrap":[{{"id":1,"raft_addr":"x:1"}},{{"id":1,"raft_addr":"y:1"}}]}}"#
        )),
        "raft.bootstrap"
    );
    assert_eq!(
        key(&format!(r#"{{{tls},"bootstrap":[{{"id":1,"raft_addr":"nohost"}}]}}"#)),
        "raft.bootstrap"
    );
    assert!(
        parse(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"}}"#)
            .unwrap()
            .raft
            .addr
            .is_none()
    );
    // A cluster cannot sign with per-node local keys.
    let local = r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"addr":"127.0.0.1:7001",
        "tls_ca_file":"a","tls_cert_file":"b","tls_key_file":"c"}}"#;
    assert_eq!(invalid_key(local), "trust_service.type");
}

fn invalid_key(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn errors_name_the_key() {
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"magic"}}"#),
        "trust_service.type"
    );
    assert_eq!(invalid_key(r#"{"server":{"http_addr":":1"}}"#), "trust_service.type");
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1","tls_cert_file":"c.pem"},"trust_service":{"type":"local"}}"#),
        "server.tls_key_file"
    );
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1","tls_key_file":"k.pem"},"trust_service":{"type":"local"}}"#),
        "server.tls_cert_file"
    );
    for bad in ["nope", "1.2.3.4", "1.2.3.4:99999", "::1:80", "a b:80", ""] {
        assert_eq!(
            invalid_key(&format!(
                r#"{{"server":{{"http_addr":"{bad}"}},"trust_service":{{"type":"local"}}}}"#
            )),
            "server.http_addr",
            "{bad}"
        );
    }
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"remote","port":"7899"}}"#),
        "trust_service.hostname"
    );
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"remote","hostname":"h","port":"x"}}"#),
        "trust_service.port"
    );
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local","key_algorithm":"dsa"}}"#),
        "trust_service.key_algorithm"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"auth":{"type":"token","options":{"realm":"r"}}}"#
        ),
        "auth.options.service"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"caching":{"max_age":{"current_metadata":-1}}}"#
        ),
        "caching.max_age.current_metadata"
    );
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"limits":{"max_parts":0}}"#),
        "limits.max_parts"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"timestamps":{"refresh_margin_fraction":1.5}}"#
        ),
        "timestamps.refresh_margin_fraction"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"election_timeout_min_ms":100}}"#
        ),
        "raft.election_timeout_min_ms"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"max_staleness_ms":100}}"#
        ),
        "raft.max_staleness_ms"
    );
    assert_eq!(
        invalid_key(r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"source_ip":"node-1"}}"#),
        "raft.source_ip"
    );
    assert_eq!(
        invalid_key(
            r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"},"raft":{"snapshot_logs_since_last":0}}"#
        ),
        "raft.snapshot_logs_since_last"
    );
    assert!(matches!(parse("[1]"), Err(ConfigError::Syntax { .. })));
    assert!(matches!(parse("{"), Err(ConfigError::Syntax { .. })));
    assert!(matches!(
        NodeConfig::load(Path::new("/nonexistent/seal.json"), &Env::new()),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn max_forward_bytes_in_flight_is_at_least_one_largest_body() {
    let with = |limits: &str| {
        parse(&format!(
            r#"{{"server":{{"http_addr":":1"}},"trust_service":{{"type":"local"}},"limits":{limits}}}"#
        ))
    };
    let c = with("{}").unwrap();
    assert_eq!(c.limits.max_forward_bytes_in_flight, 64 * 1024 * 1024);
    let c = with(r#"{"max_forward_bytes_in_flight":1000,"max_body_bytes":1000}"#).unwrap();
    assert_eq!(c.limits.max_forward_bytes_in_flight, 1000);
    // Unset, it grows with max_body_bytes; set below it, it is refused.
    let c = with(r#"{"max_body_bytes":100000000}"#).unwrap();
    assert_eq!(c.limits.max_forward_bytes_in_flight, 100_000_000);
    for bad in [
        r#"{"max_forward_bytes_in_flight":0}"#,
        r#"{"max_forward_bytes_in_flight":999,"max_body_bytes":1000}"#,
    ] {
        assert_eq!(
            invalid_key(&format!(
                r#"{{"server":{{"http_addr":":1"}},"trust_service":{{"type":"local"}},"limits":{bad}}}"#
            )),
            "limits.max_forward_bytes_in_flight"
        );
    }
    let e = env(&[("SEAL_NODE_LIMITS_MAX_FORWARD_BYTES_IN_FLIGHT", "40000000")]);
    let c = NodeConfig::from_json(
        r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"}}"#,
        Path::new("/etc/seal"),
        &e,
    )
    .unwrap();
    assert_eq!(c.limits.max_forward_bytes_in_flight, 40_000_000);
}

#[test]
fn metrics_listener_section() {
    let with = |metrics: &str| {
        NodeConfig::from_json(
            &format!(r#"{{"server":{{"http_addr":":1"}},"trust_service":{{"type":"local"}},"metrics":{metrics}}}"#),
            Path::new("/etc/seal"),
            &env(&[]),
        )
    };
    let c = NodeConfig::from_json(
        r#"{"server":{"http_addr":":1"},"trust_service":{"type":"local"}}"#,
        Path::new("/etc/seal"),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.metrics, MetricsConfig::default());
    assert!(c.metrics.main_listener && c.metrics.addr.is_none());
    let c = with(r#"{"addr":"127.0.0.1:9100","main_listener":false}"#).unwrap();
    assert_eq!(c.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
    assert!(!c.metrics.main_listener);
    for (bad, key) in [
        (r#"{"main_listener":false}"#, "metrics.main_listener"),
        (r#"{"addr":"localhost"}"#, "metrics.addr"),
        (r#"{"addr":"127.0.0.1"}"#, "metrics.addr"),
    ] {
        match with(bad) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    match with(r#"{"adr":"127.0.0.1:9100"}"#) {
        Err(ConfigError::UnknownKey { key, suggestion }) => {
            assert_eq!(key, "metrics.adr");
            assert_eq!(suggestion.as_deref(), Some("metrics.addr"));
        }
        other => panic!("{other:?}"),
    }
}
