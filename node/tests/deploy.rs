//! The production layout in `deploy/`, checked as a user would meet it:
//!
//! * every example config loads with the node's and the signer's own
//!   loaders, as written, with TLS, token auth and the cluster settings the
//!   README describes, and names only certificate files `deploy/certs.sh`
//!   makes (or the token issuer's CA);
//! * `deploy/certs.sh` makes a CA and leaves that `openssl` reads as meant
//!   (CA flag, key usages, extended key usages, SANs, 0600 keys), verifies
//!   against the CA, keeps its keys on a second run and replaces them with
//!   `--force`, and refuses a malformed host;
//! * those certificates work for real: three threshold signers and a
//!   voter and a learner made from the examples (`seal-node serve`, addresses
//!   and paths replaced, nothing else) talk mutual TLS, an HTTPS client
//!   trusting the generated CA gets a healthy node, a token holder gets a
//!   timestamp key made by a distributed key generation among the signers,
//!   the admin certificate runs `cluster status` and `cluster add-learner`
//!   (a signer's certificate cannot), and the learner then serves that key;
//! * the systemd units pass `systemd-analyze verify` (when installed), the
//!   Kubernetes manifests pass `kubernetes-validate --strict` (from PyPI, in
//!   a virtualenv under the target directory), and the Dockerfile copies only
//!   files that exist and builds only binaries the workspace has.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use seal_node::config::{Env, NodeConfig, TrustServiceType};
use seal_signer::config::{KeyBackendSection, SignerConfig};
use seal_signer::testing::{spawn_signer, TestPki};
use seal_testkit::process::run_to_end;
use serde_json::{json, Value};

/// The version of PyPI's kubernetes-validate the manifests are checked with.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `deploy/certs.sh` with `args`; its exit code, stdout and stderr.
fn certs_sh(args: &[&str]) -> (i32, String, String) {
    run_to_end(Command::new("bash").arg(deploy().join("certs.sh")).args(args))
}

/// `openssl x509 -text` of `cert`.
fn x509_text(cert: &Path) -> String {
    let (code, out, err) = run_to_end(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(cert),
    );
    assert_eq!(code, 0, "openssl x509 {}: {err}", cert.display());
    out
}

/// The certificate files (`*.crt`) `deploy/certs.sh` makes for the example layout.
fn example_certificates(dir: &Path) -> BTreeSet<String> {
    let (code, out, err) = certs_sh(&[
        "--config",
        deploy().join("certs.env").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "certs.sh: {out}{err}");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every string under `/etc/seal/tls/` in `v`.
fn tls_paths(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("/etc/seal/tls/") => out.push(s["/etc/seal/tls/".len()..].to_owned()),
        Value::Array(a) => a.iter().for_each(|v| tls_paths(v, out)),
        Value::Object(o) => o.values().for_each(|v| tls_paths(v, out)),
        _ => {}
    }
}

#[test]
fn the_example_configs_load_as_written_and_name_the_certificates_certs_sh_makes() {
    let certs_dir = tempfile::tempdir().unwrap();
    let made = example_certificates(certs_dir.path());
    let config = deploy().join("config");
    for i in 1..=5u64 {
        let path = config.join(format!("node-{i}.json"));
        let c = NodeConfig::load(&path, &Env::new()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(c.insecure_reasons().is_empty(), "node-{i}: {:?}", c.insecure_reasons());
        assert!(!c.insecure, "node-{i}");
        assert_eq!(c.raft.node_id, i);
        assert_eq!(
            c.raft.addr.as_deref(),
            Some(format!("seal-node-{i}.internal:7001").as_str())
        );
        assert!(c.raft.tls.is_some(), "node-{i}: raft TLS");
        assert!(c.server.tls.is_some(), "node-{i}: HTTPS");
        assert!(c.auth.is_some(), "node-{i}: token auth");
        assert_eq!(c.trust_service.kind, TrustServiceType::Remote);
        assert_eq!(
            c.trust_service.signers.len(),
            3,
            "node-{i}: every threshold signer is listed"
        );
        assert!(
            c.trust_service.tls_client_cert.is_some(),
            "node-{i}: client certificate for the signers"
        );
        assert_eq!(c.storage.data_dir, Path::new("/var/lib/seal/node"));
        assert!(c.raft.allowed_peer_names.contains(&"seal-admin".to_owned()));
        if i <= 3 {
            let ids: Vec<u64> = c.raft.bootstrap.iter().map(|m| m.id).collect();
            assert_eq!(ids, [1, 2, 3], "node-{i}: the voters bootstrap together");
        } else {
            assert!(c.raft.bootstrap.is_empty(), "node-{i}: a learner joins by add-learner");
            assert!(c.raft.max_staleness_ms > 5000, "node-{i}: a cross-region read bound");
        }
        let mut paths = Vec::new();
        tls_paths(&read_json(&path), &mut paths);
        for p in paths {
            assert!(
                made.contains(&p) || p == "token-ca.crt",
                "node-{i} names /etc/seal/tls/{p}, which certs.sh does not make"
            );
        }
    }
    for j in 1..=3u16 {
        let path = config.join(format!("signer-{j}.json"));
        let c = SignerConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t = c.key_backend.threshold_config().expect("a threshold signer");
        assert_eq!((t.min_signers, t.self_id, t.max_signers()), (2, j, 3));
        assert!(
            t.peers.iter().all(|p| p.name.is_some()),
            "signer-{j}: every peer is named"
        );
        assert!(matches!(c.key_backend, KeyBackendSection::Threshold { .. }));
        assert_eq!(c.server.admin_client_names, ["seal-admin"]);
        assert_eq!(c.storage.data_dir, Path::new("/var/lib/seal/signer"));
        let mut paths = Vec::new();
        tls_paths(&read_json(&path), &mut paths);
        for p in paths {
            assert!(
                made.contains(&p),
                "signer-{j} names /etc/seal/tls/{p}, which certs.sh does not make"
            );
        }
    }
}

#[test]
fn certs_sh_makes_a_ca_and_leaves_with_the_right_usages_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let made = example_certificates(dir.path());
    let d = dir.path();
    assert!(made.contains("ca.crt") && made.contains("admin.crt"), "{made:?}");

    let ca = x509_text(&d.join("ca.crt"));
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign"), "{ca}");
    assert!(ca.contains("prime256v1") || ca.contains("P-256"), "{ca}");

    // (file stem, extended key usages, SANs that must be there)
    let server = "TLS Web Server Authentication";
    let client = "TLS Web Client Authentication";
    let mut expected: Vec<(String, Vec<&str>, Vec<String>)> = Vec::new();
    for i in 1..=5 {
        let host = format!("DNS:seal-node-{i}.internal");
        expected.push((
            format!("seal-node-{i}-https"),
            vec![server],
            vec![host.clone(), "DNS:seal.internal".into()],
        ));
        expected.push((
            format!("seal-node-{i}-raft"),
            vec![server, client],
            vec![host, format!("DNS:seal-node-{i}")],
        ));
        expected.push((
            format!("seal-node-{i}-signer-client"),
            vec![client],
            vec![format!("DNS:seal-node-{i}")],
        ));
    }
    for j in 1..=3 {
        expected.push((
            format!("seal-signer-{j}"),
            vec![server, client],
            vec![format!("DNS:seal-signer-{j}.internal"), format!("DNS:seal-signer-{j}")],
        ));
    }
    expected.push(("admin".into(), vec![client], vec!["DNS:seal-admin".into()]));
    for (stem, ekus, sans) in &expected {
        let cert = d.join(format!("{stem}.crt"));
        let text = x509_text(&cert);
        assert!(text.contains("CA:FALSE"), "{stem}: {text}");
        assert!(text.contains("Digital Signature"), "{stem}: {text}");
        assert!(!text.contains("Certificate Sign"), "{stem}: {text}");
        assert!(
            text.contains("ecdsa-with-SHA256") && text.contains("prime256v1"),
            "{stem}: {text}"
        );
        for eku in ekus {
            assert!(text.contains(eku), "{stem} lacks {eku}: {text}");
        }
        if !ekus.contains(&server) {
            assert!(!text.contains(server), "{stem} is no server: {text}");
        }
        for san in sans {
            assert!(text.contains(san.as_str()), "{stem} lacks {san}: {text}");
        }
        let (code, out, err) = run_to_end(
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(d.join("ca.crt"))
                .arg(&cert),
        );
        assert_eq!(code, 0, "openssl verify {stem}: {out}{err}");
    }
    let basic = x509_text(&d.join("admin.crt"));
    assert!(basic.contains("Basic Constraints: critical"), "{basic}");

    // Private keys: only their owner reads them.
    use std::os::unix::fs::PermissionsExt as _;
    let keys: Vec<PathBuf> = made.iter().filter(|f| f.ends_with(".key")).map(|f| d.join(f)).collect();
    assert_eq!(keys.len(), expected.len() + 1, "one key per certificate and the CA's");
    for key in &keys {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }

    // A second run keeps every key and certificate; --force replaces them.
    let before: Vec<Vec<u8>> = keys.iter().map(|k| std::fs::read(k).unwrap()).collect();
    let ca_before = std::fs::read(d.join("ca.crt")).unwrap();
    example_certificates(d);
    let after: Vec<Vec<u8>> = keys.iter().map(|k| std::fs::read(k).unwrap()).collect();
    assert_eq!(before, after, "a second run must not replace keys");
    assert_eq!(ca_before, std::fs::read(d.join("ca.crt")).unwrap());
    let (code, out, err) = certs_sh(&[
        "--force",
        "--config",
        deploy().join("certs.env").to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let forced: Vec<Vec<u8>> = keys.iter().map(|k| std::fs::read(k).unwrap()).collect();
    assert!(
        before.iter().zip(&forced).all(|(a, b)| a != b),
        "--force makes new keys"
    );

    // A malformed host is refused with its name, and nothing is written.
    let empty = tempfile::tempdir().unwrap();
    let out_dir = empty.path().join("tls");
    let (code, _, err) = certs_sh(&[
        "--out",
        out_dir.to_str().unwrap(),
        "--node",
        "seal-node-1=bad host",
        "--signer",
        "seal-signer-1=localhost",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("'bad host'"), "{err}");
    assert!(!out_dir.exists(), "nothing written on bad input");
}

/// A rustls client trusting only the CA in `ca`.
fn https_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `GET path` over HTTPS to `addr` (TLS name `localhost`), with `token` if
/// given: the status code and body.
fn https(
    addr: &str,
    client: &Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let conn =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {out}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Replaces every string starting with `/etc/seal/tls/` by the same file in `certs`.
fn retarget_tls(v: &mut Value, certs: &Path) {
    match v {
        Value::String(s) if s.starts_with("/etc/seal/tls/") => {
            *s = certs.join(&s["/etc/seal/tls/".len()..]).to_string_lossy().into_owned();
        }
        Value::Array(a) => a.iter_mut().for_each(|v| retarget_tls(v, certs)),
        Value::Object(o) => o.values_mut().for_each(|v| retarget_tls(v, certs)),
        _ => {}
    }
}

#[test]
fn the_generated_certificates_carry_signers_node_https_and_admin_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = d.join("tls");
    let mut args = vec!["--out".to_owned(), certs.to_string_lossy().into_owned()];
    for i in [1, 4] {
        args.extend(["--node".into(), format!("seal-node-{i}=localhost,127.0.0.1")]);
    }
    for j in 1..=3 {
        args.extend(["--signer".into(), format!("seal-signer-{j}=localhost,127.0.0.1")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = certs_sh(&args);
    assert_eq!(code, 0, "certs.sh: {out}{err}");

    // Three threshold signers from signer-N.json: loopback ports, paths under the test's dir.
    let ports: Vec<u16> = (0..3).map(|_| seal_testkit::free_port()).collect();
    let passphrase = "deploy test passphrase";
    let mut signers = Vec::new();
    for j in 1..=3usize {
        let mut c = read_json(&deploy().join(format!("config/signer-{j}.json")));
        retarget_tls(&mut c, &certs);
        c["server"]["grpc_addr"] = json!(format!("127.0.0.1:{}", ports[j - 1]));
        c["storage"]["data_dir"] = json!(d.join(format!("signer-{j}")));
        for peer in c["key_backend"]["peers"].as_array_mut().unwrap() {
            let id = peer["id"].as_u64().unwrap() as usize;
            peer["addr"] = json!(format!("localhost:{}", ports[id - 1]));
        }
        let path = d.join(format!("signer-{j}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        let (process, port) = spawn_signer(&common::signer_binary(), &path, passphrase);
        assert_eq!(port, ports[j - 1]);
        signers.push(process);
    }

    // Tokens from an issuer of the test's own (the token service is outside this layout).
    let token_pki = TestPki::new(&d.join("tokens"), "tokens");
    let (token_cert, token_key) = token_pki.leaf("token-signer");
    std::fs::copy(token_pki.ca_file(), certs.join("token-ca.crt")).unwrap();

    // node-N.json on loopback: its Raft address, the signers' ports, the test's certificates.
    let node_config = |n: u64, raft_addr: &str| {
        let mut c = read_json(&deploy().join(format!("config/node-{n}.json")));
        retarget_tls(&mut c, &certs);
        c["raft"]["addr"] = json!(raft_addr);
        if c["raft"].get("bootstrap").is_some() {
            c["raft"]["bootstrap"] = json!([{"id": n, "raft_addr": raft_addr}]);
        }
        for (s, port) in c["trust_service"]["signers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(&ports)
        {
            *s = json!({"hostname": "localhost", "port": port});
        }
        c["insecure"] = json!(false);
        c
    };
    // Voter 1 from node-1.json, bootstrapping a cluster of one: the Raft port and its mutual TLS
    // run too.
    let raft_addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    let c = node_config(1, &raft_addr);
    let node = common::Node::serve_unprobed(&d.join("node-1"), c.clone());
    let client = https_client(&certs.join("ca.crt"));

    // Healthy over HTTPS, with every signer up (`{}`: the node reached them over mutual TLS).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match https(&node.addr, &client, "/_notary_server/health", None) {
            Ok((200, body)) if body.trim() == "{}" => break,
            other => assert!(Instant::now() < deadline, "node not healthy over HTTPS: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Token auth is on: no token, 401; a token: a timestamp key made by the signers' DKG.
    let gun = "registry.internal/team/app";
    let key_path = format!("/v2/{gun}/_trust/tuf/timestamp.key");
    let (status, body) = https(&node.addr, &client, &key_path, None).unwrap();
    assert_eq!(status, 401, "{body}");
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let auth = &c["auth"]["options"];
    let claims = json!({"iss": auth["issuer"], "sub": "deployer", "aud": auth["service"], "exp": now + 600,
                        "nbf": now - 5, "iat": now - 5, "jti": "deploy-test",
                        "access": [{"type": "repository", "name": gun, "actions": ["push", "pull"]}]});
    let token = seal_node::token_server::TokenSigner::load(&token_key, &token_cert)
        .unwrap()
        .sign(claims.as_object().unwrap())
        .unwrap();
    let (status, body) = https(&node.addr, &client, &key_path, Some(&token)).unwrap();
    assert_eq!(status, 200, "timestamp.key: {body}");
    let key: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(key["keytype"], "ed25519", "{body}");

    // The operators' certificate runs the cluster admin commands.
    let (ca, cert, key) = (certs.join("ca.crt"), certs.join("admin.crt"), certs.join("admin.key"));
    let out = seal_testkit::process::cluster_admin(&common::node_binary(), &raft_addr, (&ca, &cert, &key), &["status"])
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cluster status: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&raft_addr), "{stdout}");
    // A signer's certificate is not an operator's: the Raft port refuses it.
    let (cert, key) = (certs.join("seal-signer-1.crt"), certs.join("seal-signer-1.key"));
    let out = seal_testkit::process::cluster_admin(&common::node_binary(), &raft_addr, (&ca, &cert, &key), &["status"])
        .unwrap();
    assert!(!out.status.success(), "a signer certificate ran cluster status");

    // Learner 4 from node-4.json joins with `cluster add-learner` (admin certificate), replicates
    // over the Raft port's mutual TLS, and serves the key to the token holder.
    let learner_raft = format!("127.0.0.1:{}", seal_testkit::free_port());
    let learner = common::Node::serve_unprobed(&d.join("node-4"), node_config(4, &learner_raft));
    let (cert, key) = (certs.join("admin.crt"), certs.join("admin.key"));
    let out = seal_testkit::process::cluster_admin(
        &common::node_binary(),
        &raft_addr,
        (&ca, &cert, &key),
        &["add-learner", "--id", "4", "--raft-addr", &learner_raft],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "cluster add-learner: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match https(&learner.addr, &client, &key_path, Some(&token)) {
            Ok((200, served)) if served == body => break,
            other => assert!(
                Instant::now() < deadline,
                "the learner does not serve the key: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(learner);
    drop(node);
    drop(signers);
}

#[test]
fn the_systemd_units_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed (systemd's units were not verified)");
        return;
    };
    assert!(version.status.success());
    // The units name the binaries where the Dockerfile and README install them; point them at
    // the ones cargo built, since verify checks that ExecStart is executable.
    let bin_dir = common::node_binary().parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    for unit in ["seal-node.service", "seal-signer.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        for needed in [
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "LimitNOFILE=65536",
            "ReadWritePaths=",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=",
            "Restart=on-failure",
            "EnvironmentFile=",
        ] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
        std::fs::write(dir.path().join(unit), local).unwrap();
    }
    let (code, out, err) = run_to_end(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join("seal-node.service"))
            .arg(dir.path().join("seal-signer.service")),
    );
    assert_eq!(code, 0, "systemd-analyze verify: {out}{err}");
    assert!(!err.contains("seal-"), "systemd-analyze verify complained: {err}");
}

/// `<target dir>/deploy-venv/bin/kubernetes-validate`, installed from PyPI when missing; `None`
/// after saying so (a failure under CI) when it cannot be.
fn kubernetes_validate() -> Option<PathBuf> {
    let target = common::node_binary()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned();
    let venv = seal_testkit::python_venv(&target.join("deploy-venv"), &[KUBERNETES_VALIDATE])?;
    Some(venv.join("bin/kubernetes-validate"))
}

#[test]
fn the_kubernetes_manifests_validate() {
    let dir = deploy().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let all: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    for needed in [
        "kind: StatefulSet",
        "kind: PodDisruptionBudget",
        "clusterIP: None",
        "path: /_seal/ready",
        "path: /_notary_server/health",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "volumeClaimTemplates:",
        "podAntiAffinity:",
        "publishNotReadyAddresses: true",
    ] {
        assert!(all.contains(needed), "the manifests lack {needed}");
    }
    assert!(
        !all.contains("kind: Secret\n"),
        "secrets are referenced, never embedded"
    );
    let Some(tool) = kubernetes_validate() else {
        return;
    };
    let (code, out, err) = run_to_end(Command::new(&tool).arg("--strict").args(&files));
    assert_eq!(code, 0, "kubernetes-validate: {out}{err}");
    for resource in [
        "statefulset/seal-node",
        "statefulset/seal-signer",
        "poddisruptionbudget/seal-node",
    ] {
        assert!(out.contains(&format!("passed for resource {resource}")), "{out}");
    }

    // The configs inside the ConfigMaps load, and node 2's pod environment makes node 2.
    let dir = tempfile::tempdir().unwrap();
    let python = tool.with_file_name("python");
    let script = [
        "import sys, yaml",
        "for f in sys.argv[2:]:",
        "    for doc in yaml.safe_load_all(open(f)):",
        "        if doc and doc['kind'] == 'ConfigMap':",
        "            for k, v in doc['data'].items():",
        "                open(sys.argv[1] + '/' + k, 'w').write(v)",
    ]
    .join("\n");
    let (code, out, err) = run_to_end(Command::new(python).arg("-c").arg(script).arg(dir.path()).args(&files));
    assert_eq!(code, 0, "extracting the ConfigMaps: {out}{err}");
    let n = 2;
    let host = format!("seal-node-{n}.seal-node-peers.seal.svc.cluster.local");
    let tls = |f: &str| format!("/etc/seal/tls/seal-node-{n}-{f}");
    let env: Env = [
        ("SEAL_NODE_RAFT_NODE_ID", n.to_string()),
        ("SEAL_NODE_RAFT_ADDR", format!("{host}:7001")),
        ("SEAL_NODE_SERVER_TLS_CERT_FILE", tls("https.crt")),
        ("SEAL_NODE_SERVER_TLS_KEY_FILE", tls("https.key")),
        ("SEAL_NODE_RAFT_TLS_CERT_FILE", tls("raft.crt")),
        ("SEAL_NODE_RAFT_TLS_KEY_FILE", tls("raft.key")),
        ("SEAL_NODE_TRUST_SERVICE_TLS_CLIENT_CERT", tls("signer-client.crt")),
        ("SEAL_NODE_TRUST_SERVICE_TLS_CLIENT_KEY", tls("signer-client.key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in &env {
        assert!(
            all.contains(&format!("export {k}=")),
            "node.yaml's command does not set {k} ({v})"
        );
    }
    let c = NodeConfig::load(&dir.path().join("node.json"), &env).unwrap();
    assert_eq!(c.raft.node_id, n);
    assert_eq!(c.raft.addr.as_deref(), Some(format!("{host}:7001").as_str()));
    assert_eq!(c.raft.tls.as_ref().unwrap().cert_file, Path::new(&tls("raft.crt")));
    assert_eq!(
        c.trust_service.tls_client_cert.as_deref().unwrap(),
        Path::new(&tls("signer-client.crt"))
    );
    assert!(c.insecure_reasons().is_empty());
    assert!(c.raft.bootstrap.iter().any(|m| m.raft_addr == format!("{host}:7001")));
    for j in 1..=3u16 {
        let c = SignerConfig::load(&dir.path().join(format!("signer-{j}.json"))).unwrap();
        assert_eq!(c.key_backend.threshold_config().unwrap().self_id, j);
    }
}

/// The `name`s of the workspace's `[[bin]]` sections.
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for member in ["node", "signer", "client", "chaos"] {
        let text = std::fs::read_to_string(repo().join(member).join("Cargo.toml")).unwrap();
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if let (true, Some(rest)) = (in_bin, line.strip_prefix("name")) {
                bins.insert(rest.trim_start_matches([' ', '=']).trim().trim_matches('"').to_owned());
            }
        }
    }
    bins
}

#[test]
fn the_dockerfile_copies_files_that_exist_and_builds_binaries_that_exist() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let bins = workspace_binaries();
    assert!(
        bins.contains("seal-node") && bins.contains("seal-signer") && bins.contains("seal"),
        "{bins:?}"
    );
    let mut named = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("COPY ") {
            let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let (sources, _dest) = words.split_at(words.len() - 1);
            if rest.contains("--from=") {
                for s in sources {
                    let bin = Path::new(s).file_name().unwrap().to_string_lossy().into_owned();
                    assert!(
                        bins.contains(&bin),
                        "COPY --from names {bin}, not a [[bin]] of the workspace"
                    );
                    named.insert(bin);
                }
            } else {
                for s in sources {
                    assert!(
                        repo().join(s).exists(),
                        "COPY {s}: no such file in the build context (the repository)"
                    );
                }
            }
        }
        for (i, word) in line.split_whitespace().enumerate() {
            if word == "--bin" {
                let bin = line.split_whitespace().nth(i + 1).unwrap();
                assert!(
                    bins.contains(bin),
                    "cargo build --bin {bin}: not a [[bin]] of the workspace"
                );
            }
        }
    }
    assert_eq!(
        named,
        ["seal", "seal-node", "seal-signer"].map(String::from).into(),
        "the runtime image holds seal-node, seal-signer and seal"
    );
    // Every workspace member is in the build stage, or cargo cannot load the workspace.
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = "))
        .expect("workspace members");
    for member in members
        .trim_matches(['[', ']'])
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
    {
        assert!(
            text.lines().any(|l| l.trim() == format!("COPY {member} {member}")),
            "the build stage does not copy the workspace member {member}"
        );
    }
    // The build stage has scripts/install-deps.sh's build packages; the runtime stage no toolchain.
    let (build, runtime) = text.rsplit_once("\nFROM ").expect("two stages");
    for pkg in ["clang", "libclang-dev"] {
        assert!(
            build.split_whitespace().any(|w| w == pkg),
            "the build stage lacks {pkg}"
        );
    }
    for word in ["cargo", "-dev", "clang"] {
        assert!(
            !runtime
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains(word)),
            "the runtime stage holds {word}"
        );
    }
    assert!(text.contains("ENTRYPOINT [\"seal-node\"]"), "{text}");
    assert!(text.contains("EXPOSE "), "{text}");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("a USER");
    assert!(
        user.trim() != "root" && user.trim() != "0",
        "the runtime runs as {user}"
    );
    // BuildKit reads the ignore file beside the Dockerfile (`<Dockerfile>.dockerignore`).
    let ignore = std::fs::read_to_string(deploy().join("Dockerfile.dockerignore")).unwrap();
    assert!(ignore
        .lines()
        .any(|l| l.trim() == "target" || l.trim() == "/target" || l.trim() == "**/target"));
}
