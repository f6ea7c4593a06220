//! Token authentication with real processes: `seal-node serve` with
//! `auth.type = "token"` and the development token issuer
//! (`seal-token-server`), certificates from a throw-away PKI.
//!
//! Without a token every route answers Notary's exact 401 challenge; reads
//! are anonymous only when the config says so; a token for one GUN cannot
//! publish to another; expired, not-yet-valid, wrong-audience,
//! wrong-issuer, tampered and untrusted tokens are refused with
//! `invalid_token`; a token from the token server lets a publish through.
//! Tokens with bad claims are minted far outside the 60 s leeway, so no
//! assertion depends on timing.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{multipart, request, Node, Response};
use seal_node::token_server::TokenSigner;
use seal_signer::testing::TestPki;
use seal_testkit::process::{Launch, Process, START_WAIT};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

const SERVICE: &str = "seal-test";
const ISSUER: &str = "seal-test-issuer";
const UNAUTHORIZED_CT: &str = "application/json; charset=utf-8";

fn tuf(gun: &str, path: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{path}")
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn free_port() -> u16 {
    seal_testkit::free_port()
}

/// The token-signing PKI, and a second CA the node does not trust.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestPki,
    signer_cert: PathBuf,
    signer_key: PathBuf,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestPki::new(dir.path(), "tokens");
        let (signer_cert, signer_key) = ca.leaf("token-signer");
        let rogue_dir = dir.path().join("rogue");
        std::fs::create_dir_all(&rogue_dir).unwrap();
        let rogue = TestPki::new(&rogue_dir, "rogue");
        let (rogue_cert, rogue_key) = rogue.leaf("token-signer");
        Pki {
            dir,
            ca,
            signer_cert,
            signer_key,
            rogue_cert,
            rogue_key,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn signer(&self) -> TokenSigner {
        TokenSigner::load(&self.signer_key, &self.signer_cert).unwrap()
    }

    fn rogue_signer(&self) -> TokenSigner {
        TokenSigner::load(&self.rogue_key, &self.rogue_cert).unwrap()
    }
}

/// A node config with token auth.
fn node_config(realm: &str, service: &str, issuer: &str, roots: &Path, anonymous_read: bool) -> Value {
    json!({
        "server": {},
        "trust_service": {"type": "local"},
        "storage": {"backend": "rocksdb"},
        "auth": {"type": "token", "options": {
            "realm": realm, "service": service, "issuer": issuer,
            "rootcertbundle": roots, "anonymous_read": anonymous_read,
        }},
    })
}

fn start_node(pki: &Pki, name: &str, realm: &str, anonymous_read: bool) -> Node {
    Node::serve(
        &pki.path().join(name),
        node_config(realm, SERVICE, ISSUER, &pki.ca.ca_file(), anonymous_read),
    )
}

/// The claims of a good token for `access`, valid now.
fn claims(access: Value) -> Map<String, Value> {
    let now = now_secs();
    json!({"iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + 600, "nbf": now - 5,
           "iat": now - 5, "jti": "test", "access": access})
    .as_object()
    .unwrap()
    .clone()
}

fn push_pull(gun: &str) -> Value {
    json!([{"type": "repository", "name": gun, "actions": ["push", "pull"]}])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get_with(node: &Node, path: &str, token: &str) -> Response {
    request(&node.addr, "GET", path, &[("Authorization", &bearer(token))], &[])
}

fn publish_with(node: &Node, gun: &str, files: &[(String, Vec<u8>)], token: Option<&str>) -> Response {
    let (ct, body) = multipart(files);
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", ct.as_str())];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(&node.addr, "POST", &tuf(gun, ""), &headers, &body)
}

/// The challenge a node configured with `realm` sends.
fn challenge(realm: &str, scope: &str, error: Option<&str>) -> String {
    let mut c = format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"{scope}\"");
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    c
}

fn assert_401(r: &Response, expected_challenge: &str, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some(expected_challenge), "{what}");
    assert_eq!(r.header("content-type"), Some(UNAUTHORIZED_CT), "{what}");
    assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}");
}

/// The first publish of `gun` with `token`; returns the repo.
fn first_publish(node: &Node, gun: &str, token: &str) -> (TestRepo, Vec<(String, Vec<u8>)>) {
    let key = get_with(node, &tuf(gun, "timestamp.key"), token);
    assert_eq!(key.status, 200, "timestamp.key: {}", key.text());
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).unwrap());
    let files = repo.first_publish(&[("v1", b"one")]);
    (repo, files)
}

/// A running `seal-token-server`, killed when dropped.
struct TokenServer {
    _process: Process,
    addr: String,
    realm: String,
}

impl TokenServer {
    /// Starts it with `config` (its `server.http_addr` set to a free port)
    /// and waits until it says where it listens.
    fn start(dir: &Path, mut config: Value) -> TokenServer {
        let addr = format!("127.0.0.1:{}", free_port());
        config["server"] = json!({"http_addr": addr});
        let path = dir.join("tokens.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut process = Launch::new(env!("CARGO_BIN_EXE_seal-token-server"), dir.join("token-server.log"))
            .args(["--config"])
            .arg(&path)
            .env("SEAL_LOG", "warn")
            .start()
            .expect("start seal-token-server");
        let realm = process
            .wait_for_line("the token server listening", START_WAIT, |l| {
                l.strip_prefix("Seal development token server: ").map(str::to_owned)
            })
            .unwrap_or_else(|e| panic!("token-server: {e}"));
        assert_eq!(realm, format!("http://{addr}/auth/token"));
        TokenServer {
            _process: process,
            addr,
            realm,
        }
    }

    /// `GET /auth/token` with `scopes`, as `user:password` when given.
    fn token_response(&self, credentials: Option<(&str, &str)>, scopes: &[&str]) -> Response {
        let mut path = format!("/auth/token?service={SERVICE}");
        for s in scopes {
            path.push_str(&format!("&scope={}", s.replace(' ', "%20")));
        }
        let basic = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let headers: Vec<(&str, &str)> = basic.iter().map(|b| ("Authorization", b.as_str())).collect();
        request(&self.addr, "GET", &path, &headers, &[])
    }

    /// A token for `scopes`, which must be issued.
    fn token(&self, credentials: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let r = self.token_response(credentials, scopes);
        assert_eq!(r.status, 200, "token request: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["token"], v["access_token"]);
        assert!(v["expires_in"].as_u64().unwrap() > 0);
        assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
        v["token"].as_str().unwrap().to_owned()
    }
}

/// `seal-token-server hash-password` with `password` on stdin.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seal-token-server"))
        .args(["hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// The token server's config: alice may push and pull under
/// `example.com/alice/`, everyone may pull `example.com/public/*`.
fn token_server_config(pki: &Pki, alice_hash: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "service": SERVICE,
        "signing_key": pki.signer_key,
        "certificate_chain": pki.signer_cert,
        "token_lifetime_secs": 600,
        "users": {
            "alice": {"password_hash": alice_hash, "access": [
                {"type": "repository", "name": "example.com/alice/*", "actions": ["push", "pull"]}
            ]}
        },
        "anonymous": [{"name": "example.com/public/*", "actions": ["pull"]}],
    })
}

fn fixtures_dir() -> Option<PathBuf> {
    seal_testkit::notary_fixtures()
}

#[test]
fn without_a_token_every_route_gets_notarys_exact_challenge() {
    // Configured as the Notary server that produced the fixture.
    const REALM: &str = "http://127.0.0.1:4447/auth/token";
    let pki = Pki::new();
    let node = Node::serve(
        &pki.path().join("node"),
        node_config(REALM, "notary-server", "anchors-token-issuer", &pki.ca.ca_file(), false),
    );

    // A publish without a token: Notary's exact header and body.
    let r = publish_with(&node, "example.com/a", &[], None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"http://127.0.0.1:4447/auth/token\",service=\"notary-server\",scope=\"repository:example.com/a:push,pull\""
        )
    );
    assert_eq!(r.header("content-type"), Some(UNAUTHORIZED_CT));
    assert_eq!(
        r.text(),
        "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{\"Type\":\"repository\",\"Class\":\"\",\"Name\":\"example.com/a\",\"Action\":\"push\"},{\"Type\":\"repository\",\"Class\":\"\",\"Name\":\"example.com/a\",\"Action\":\"pull\"}]}]}\n"
    );

    // Health and metrics stay open.
    assert_eq!(node.get("/_notary_server/health").status, 200);
    assert_eq!(node.get("/metrics").status, 200);

    // Every exchange Notary recorded, byte for byte.
    let Some(dir) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(dir.join("errors/auth-challenges.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let exchanges = fixture["exchanges"].as_array().unwrap();
    assert_eq!(exchanges.len(), 10);
    for ex in exchanges {
        let method = ex["method"].as_str().unwrap();
        let path = ex["path"].as_str().unwrap();
        let auth = ex["authorization"].as_str();
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let r = request(&node.addr, method, path, &headers, &[]);
        let what = format!("{method} {path}");
        assert_eq!(
            u64::from(r.status),
            ex["status"].as_u64().unwrap(),
            "{what}: {}",
            r.text()
        );
        assert_eq!(r.header("www-authenticate"), ex["www_authenticate"].as_str(), "{what}");
        if r.status == 401 {
            assert_eq!(r.text(), ex["body"].as_str().unwrap(), "{what}");
        }
    }
}

#[test]
fn anonymous_reads_are_refused_by_default_and_allowed_by_config() {
    const GUN: &str = "example.com/anon/app";
    let pki = Pki::new();
    let realm = "http://127.0.0.1:9/auth/token";
    let closed = start_node(&pki, "closed", realm, false);
    let open = start_node(&pki, "open", realm, true);
    let token = pki.signer().sign(&claims(push_pull(GUN))).unwrap();

    // Publish the same collection to both, with a token.
    for node in [&closed, &open] {
        let (_, files) = first_publish(node, GUN, &token);
        let r = publish_with(node, GUN, &files, Some(&token));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Default: no anonymous read.
    let pull = format!("repository:{GUN}:pull");
    assert_401(
        &closed.get(&tuf(GUN, "root.json")),
        &challenge(realm, &pull, None),
        "closed root",
    );
    assert_401(
        &closed.get(&format!("/v2/{GUN}/_trust/changefeed?records=10")),
        &challenge(realm, &pull, None),
        "closed changefeed",
    );
    assert_eq!(get_with(&closed, &tuf(GUN, "root.json"), &token).status, 200);

    // anonymous_read: pull routes without a token.
    let root = open.get(&tuf(GUN, "root.json"));
    assert_eq!(root.status, 200, "{}", root.text());
    assert_eq!(root.body, get_with(&open, &tuf(GUN, "root.json"), &token).body);
    assert_eq!(open.get(&tuf(GUN, "timestamp.json")).status, 200);
    assert_eq!(open.get(&format!("/v2/{GUN}/_trust/changefeed?records=10")).status, 200);
    assert_eq!(open.get(&tuf("example.com/none", "root.json")).status, 404);
    // ... but nothing that needs more than pull.
    let push_pull_scope = format!("repository:{GUN}:push,pull");
    assert_401(
        &open.get(&tuf(GUN, "timestamp.key")),
        &challenge(realm, &push_pull_scope, None),
        "open timestamp.key",
    );
    assert_401(
        &publish_with(&open, GUN, &[], None),
        &challenge(realm, &push_pull_scope, None),
        "open publish",
    );
    assert_401(
        &request(&open.addr, "DELETE", &tuf(GUN, ""), &[], &[]),
        &challenge(realm, &format!("repository:{GUN}:*"), None),
        "open delete",
    );
    assert_401(
        &open.get("/v2/"),
        &challenge(realm, "registry:catalog:*", None),
        "open ping",
    );
    assert_401(
        &open.get("/v2/_trust/changefeed?records=10"),
        &challenge(realm, "registry:catalog:*", None),
        "open global changefeed",
    );
    // A token that is sent must verify, even where anonymous reads are allowed.
    assert_401(
        &get_with(&open, &tuf(GUN, "root.json"), "abc.def.ghi"),
        &challenge(realm, &pull, Some("invalid_token")),
        "open root with a garbage token",
    );
}

#[test]
fn a_token_for_one_gun_cannot_publish_to_another() {
    let pki = Pki::new();
    let hash = hash_password("alice's password");
    let ts = TokenServer::start(pki.path(), token_server_config(&pki, &hash));
    let node = start_node(&pki, "node", &ts.realm, false);
    let alice = Some(("alice", "alice's password"));
    const MINE: &str = "example.com/alice/app";
    const THEIRS: &str = "example.com/bob/app";

    let token = ts.token(alice, &[&format!("repository:{MINE}:push,pull")]);
    let (_, files) = first_publish(&node, MINE, &token);
    let theirs_scope = format!("repository:{THEIRS}:push,pull");
    let refused = challenge(&ts.realm, &theirs_scope, Some("insufficient_scope"));

    // The same valid token, used on another GUN.
    assert_401(
        &publish_with(&node, THEIRS, &files, Some(&token)),
        &refused,
        "publish to bob",
    );
    assert_401(
        &get_with(&node, &tuf(THEIRS, "timestamp.key"), &token),
        &refused,
        "bob's key",
    );
    // Asking the token server for bob's GUN grants nothing there.
    let token_b = ts.token(alice, &[&theirs_scope]);
    assert_401(
        &publish_with(&node, THEIRS, &files, Some(&token_b)),
        &refused,
        "bob with token_b",
    );
    // Nor does asking for both at once.
    let both = ts.token(alice, &[&format!("repository:{MINE}:push,pull"), &theirs_scope]);
    assert_401(
        &publish_with(&node, THEIRS, &files, Some(&both)),
        &refused,
        "bob with both",
    );
    // Nothing was written to bob's GUN (seen with a token that may read it);
    // alice's own publish works.
    let reader = pki
        .signer()
        .sign(&claims(
            json!([{"type": "repository", "name": THEIRS, "actions": ["pull"]}]),
        ))
        .unwrap();
    assert_eq!(get_with(&node, &tuf(THEIRS, "root.json"), &reader).status, 404);
    let r = publish_with(&node, MINE, &files, Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn expired_early_foreign_and_forged_tokens_are_refused() {
    const GUN: &str = "example.com/claims/app";
    let pki = Pki::new();
    let realm = "http://127.0.0.1:9/auth/token";
    let node = start_node(&pki, "node", realm, false);
    let signer = pki.signer();
    let now = now_secs();
    let key_path = tuf(GUN, "timestamp.key");

    // The control: a correct token works, so each refusal below is due to
    // the one thing changed.
    let good = signer.sign(&claims(push_pull(GUN))).unwrap();
    let r = get_with(&node, &key_path, &good);
    assert_eq!(r.status, 200, "{}", r.text());

    let with = |key: &str, value: Value| {
        let mut c = claims(push_pull(GUN));
        c.insert(key.into(), value);
        c
    };
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged_claims = claims(push_pull("example.com/everything"));
    forged_claims.insert("sub".into(), json!("mallory"));
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
    let mut flipped_sig = parts[2].to_owned().into_bytes();
    flipped_sig[5] = if flipped_sig[5] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, String)> = vec![
        ("expired", signer.sign(&with("exp", json!(now - 3600))).unwrap()),
        ("not yet valid", signer.sign(&with("nbf", json!(now + 3600))).unwrap()),
        (
            "wrong audience",
            signer.sign(&with("aud", json!("another-service"))).unwrap(),
        ),
        (
            "wrong issuer",
            signer.sign(&with("iss", json!("another-issuer"))).unwrap(),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        ),
        (
            "tampered signature",
            format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(flipped_sig).unwrap()),
        ),
        (
            "untrusted chain",
            pki.rogue_signer().sign(&claims(push_pull(GUN))).unwrap(),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
                parts[1]
            ),
        ),
        ("garbage", "abc.def.ghi".to_owned()),
    ];
    let scope = format!("repository:{GUN}:push,pull");
    let expected = challenge(realm, &scope, Some("invalid_token"));
    for (what, token) in &cases {
        assert_401(&get_with(&node, &key_path, token), &expected, what);
        assert_401(&publish_with(&node, GUN, &[], Some(token)), &expected, what);
    }
    // A token that is not Bearer is no token at all.
    let r = request(
        &node.addr,
        "GET",
        &key_path,
        &[("Authorization", "Basic YWxpY2U6cHc=")],
        &[],
    );
    assert_401(&r, &challenge(realm, &scope, None), "basic credentials");
}

#[test]
fn a_token_from_the_token_server_lets_a_publish_through() {
    const GUN: &str = "example.com/alice/app";
    let pki = Pki::new();
    let hash = hash_password("s3cret");
    let ts = TokenServer::start(pki.path(), token_server_config(&pki, &hash));
    let node = start_node(&pki, "node", &ts.realm, false);
    let scope = format!("repository:{GUN}:push,pull");

    // The token server's own refusals.
    for creds in [("alice", "wrong"), ("mallory", "s3cret")] {
        let r = ts.token_response(Some(creds), &[&scope]);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Seal development token server\"")
        );
    }
    let r = request(
        &ts.addr,
        "GET",
        &format!("/auth/token?service=other&scope={scope}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Without a token: the challenge names the token server.
    assert_401(
        &publish_with(&node, GUN, &[], None),
        &challenge(&ts.realm, &scope, None),
        "no token",
    );

    // With alice's token: key, publish, read back.
    let token = ts.token(Some(("alice", "s3cret")), &[&scope]);
    let (repo, files) = first_publish(&node, GUN, &token);
    let r = publish_with(&node, GUN, &files, Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
    let root = get_with(&node, &tuf(GUN, "root.json"), &token);
    assert_eq!(root.status, 200);
    assert_eq!(root.body, repo.root_file(1));
    assert_eq!(get_with(&node, &tuf(GUN, "timestamp.json"), &token).status, 200);
    // Reads still need a token on this node.
    assert_eq!(node.get(&tuf(GUN, "root.json")).status, 401);
    // push,pull is not `*`: no delete, no key rotation.
    let star = challenge(&ts.realm, &format!("repository:{GUN}:*"), Some("insufficient_scope"));
    assert_401(
        &request(
            &node.addr,
            "DELETE",
            &tuf(GUN, ""),
            &[("Authorization", &bearer(&token))],
            &[],
        ),
        &star,
        "delete",
    );
    assert_401(
        &request(
            &node.addr,
            "POST",
            &tuf(GUN, "snapshot.key"),
            &[("Authorization", &bearer(&token))],
            &[],
        ),
        &star,
        "rotate",
    );
    assert_eq!(
        get_with(&node, &tuf(GUN, "root.json"), &token).status,
        200,
        "still there"
    );

    // An anonymous token grants only the anonymous rules (pull on public/*).
    let anon = ts.token(None, &[&scope, "repository:example.com/public/x:push,pull"]);
    assert_401(
        &get_with(&node, &tuf(GUN, "root.json"), &anon),
        &challenge(&ts.realm, &format!("repository:{GUN}:pull"), Some("insufficient_scope")),
        "anonymous token on alice's GUN",
    );
    assert_eq!(
        get_with(&node, &tuf("example.com/public/x", "root.json"), &anon).status,
        404,
        "pull granted on public/x (nothing published there)"
    );
}

#[test]
fn a_bad_root_bundle_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("roots.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (name, bundle) in [("garbage", not_pem.clone()), ("missing", dir.path().join("absent.pem"))] {
        let mut config = node_config("http://x/auth/token", SERVICE, ISSUER, &bundle, false);
        config["server"]["http_addr"] = json!(format!("127.0.0.1:{}", free_port()));
        config["storage"]["data_dir"] = json!(dir.path().join(name));
        config["insecure"] = json!(true);
        let mut node = seal_testkit::process::node(
            &common::node_binary(),
            &dir.path().join(format!("{name}-node")),
            &config,
            "warn",
        )
        .unwrap()
        .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase")
        .start()
        .unwrap();
        let status = node
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{name}: seal-node kept running with a bad root bundle"));
        // Its log: standard output (nothing here) and standard error.
        let stderr = node.output();
        assert!(!status.success(), "{name}");
        assert!(
            stderr.contains("auth.options.rootcertbundle") && stderr.contains(&bundle.display().to_string()),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn tuf1_repositories_need_tuf_repository_grants_not_a_guns() {
    let pki = Pki::new();
    let realm = "https://auth.example.com/token";
    let node = start_node(&pki, "node", realm, false);
    const REPO: &str = "firmware";
    let token = |access: Value| pki.signer().sign(&claims(access)).unwrap();
    let post = |path: &str, token: Option<&str>| {
        let auth = token.map(bearer);
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        request(&node.addr, "POST", path, &headers, b"{}")
    };
    let keys = format!("/tuf/{REPO}/keys");
    let all = format!("tuf-repository:{REPO}:*");

    assert_401(&post(&keys, None), &challenge(realm, &all, None), "no token");
    assert_401(
        &request(&node.addr, "GET", "/tuf/", &[], &[]),
        &challenge(realm, "registry:catalog:*", None),
        "listing without a token",
    );
    // Every right on the Notary GUN of the same name grants nothing on the repository.
    let gun_token = token(json!([{"type": "repository", "name": REPO, "actions": ["*"]}]));
    assert_401(
        &post(&keys, Some(&gun_token)),
        &challenge(realm, &all, Some("insufficient_scope")),
        "a GUN's grant",
    );
    assert_eq!(get_with(&node, &keys, &gun_token).status, 401);
    // A pull grant reads but cannot upload or make keys.
    let reader = token(json!([{"type": "tuf-repository", "name": REPO, "actions": ["pull"]}]));
    assert_eq!(get_with(&node, &keys, &reader).status, 404, "no keys yet");
    assert_401(
        &post(&format!("/tuf/{REPO}/metadata"), Some(&reader)),
        &challenge(
            realm,
            &format!("tuf-repository:{REPO}:push,pull"),
            Some("insufficient_scope"),
        ),
        "upload with pull",
    );
    assert_401(
        &post(&keys, Some(&reader)),
        &challenge(realm, &all, Some("insufficient_scope")),
        "keys with pull",
    );
    // With anonymous reads configured, a repository's files are read without a token too.
    let open = start_node(&pki, "open", realm, true);
    let r = request(
        &open.addr,
        "GET",
        &format!("/tuf/{REPO}/metadata/timestamp.json"),
        &[],
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "METADATA_NOT_FOUND"),
        "{}",
        r.text()
    );
    assert_401(
        &request(&open.addr, "POST", &keys, &[], b""),
        &challenge(realm, &all, None),
        "anonymous keys",
    );
    // The repository's own grant makes the keys.
    let owner = token(json!([{"type": "tuf-repository", "name": REPO, "actions": ["*"]}]));
    let r = post(&keys, Some(&owner));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get_with(&node, &keys, &reader).body, r.body);
}
