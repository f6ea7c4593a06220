//! Authentication before anything that depends on the collection, on a three-process cluster with
//! token auth (`anonymous_read` false), the real `seal-node` binary on loopback:
//!
//! * an anonymous read of an existing and of a nonexistent private collection gets the same 401
//!   challenge on the leader and on a follower, whatever it asks for: `X-Seal-Min-Version` (even
//!   far in the future: answered at once, the follower's wait is not entered), `?consistent`,
//!   `X-Seal-Consistency: linearizable`; nothing is forwarded to the leader, while an authorized
//!   client with the same headers is served (or waits and then gets 404);
//! * a follower answers an anonymous 30 MB publish 401 before the client has sent its body, and
//!   forwards nothing (the leader's request counter does not move), while an authorized write
//!   through it is forwarded;
//! * a follower whose request bodies in flight to the leader fill
//!   `limits.max_forward_bytes_in_flight` answers 503 `UNAVAILABLE`, and forwards again once
//!   they are gone.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::*;
use common::{multipart, request, Node, Response};
use seal_node::token_server::TokenSigner;
use seal_signer::testing::TestPki;
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

const SERVICE: &str = "seal-test";
const ISSUER: &str = "seal-test-issuer";
/// Nothing listens there: the nodes only name it in their challenges.
const REALM: &str = "http://127.0.0.1:9/auth/token";
const EXISTING: &str = "example.com/private/app";
const MISSING: &str = "example.com/private/none";
/// `MIN_VERSION_WAIT`: how long a follower waits for a version it has not applied.
const MIN_VERSION_WAIT: Duration = Duration::from_secs(2);

/// A token-signing CA the nodes trust, and its signer.
struct Tokens {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    signer: TokenSigner,
}

impl Tokens {
    fn new() -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestPki::new(dir.path(), "tokens");
        let (cert, key) = ca.leaf("token-signer");
        Tokens {
            ca_file: ca.ca_file(),
            signer: TokenSigner::load(&key, &cert).unwrap(),
            _dir: dir,
        }
    }

    /// The `auth` section of every node's config: token auth, no anonymous reads.
    fn auth_config(&self) -> Value {
        json!({"auth": {"type": "token", "options": {
            "realm": REALM, "service": SERVICE, "issuer": ISSUER,
            "rootcertbundle": self.ca_file, "anonymous_read": false,
        }}})
    }

    /// A valid token granting `actions` on `gun`.
    fn token(&self, gun: &str, actions: &[&str]) -> String {
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        let claims: Map<String, Value> = json!({
            "iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + 600, "nbf": now - 5,
            "iat": now - 5, "jti": "test",
            "access": [{"type": "repository", "name": gun, "actions": actions}],
        })
        .as_object()
        .unwrap()
        .clone();
        format!("Bearer {}", self.signer.sign(&claims).unwrap())
    }
}

/// Request headers, name and value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The challenge and body of a 401 for `actions` on `gun`, byte for byte.
fn expected_401(gun: &str, actions: &[&str], error: Option<&str>) -> (String, String) {
    let mut challenge = format!(
        "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:{gun}:{}\"",
        actions.join(",")
    );
    if let Some(e) = error {
        challenge.push_str(&format!(",error=\"{e}\""));
    }
    let detail: Vec<String> = actions
        .iter()
        .map(|a| format!("{{\"Type\":\"repository\",\"Class\":\"\",\"Name\":\"{gun}\",\"Action\":\"{a}\"}}"))
        .collect();
    let body = format!(
        "{{\"errors\":[{{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{}]}}]}}\n",
        detail.join(",")
    );
    (challenge, body)
}

fn assert_401(r: &Response, gun: &str, actions: &[&str], error: Option<&str>, what: &str) {
    let (challenge, body) = expected_401(gun, actions, error);
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some(challenge.as_str()), "{what}");
    assert_eq!(r.text(), body, "{what}");
    assert_eq!(
        r.header("x-seal-forwarded-to"),
        None,
        "{what}: answered by the node asked, not forwarded"
    );
}

/// The sum of `seal_http_requests_total` on `node` for `operation` (and `code`, when given).
fn requests_seen(node: &Node, operation: &str, code: Option<u16>) -> u64 {
    let text = node.get("/metrics").text();
    text.lines()
        .filter(|l| l.starts_with("seal_http_requests_total{"))
        .filter(|l| l.contains(&format!("operation=\"{operation}\"")))
        .filter(|l| code.is_none_or(|c| l.contains(&format!("code=\"{c}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Three voters, unproxied, whose configs also hold `extra` (token auth).
fn token_cluster(extra: Value) -> Cluster {
    start_cluster_with(0, ClusterOptions { proxied: false, extra })
}

fn leader_and_followers(cluster: &Cluster) -> (usize, Vec<usize>) {
    let leader = eventually("a leader in cluster status", || {
        cluster.raft.iter().find_map(|a| leader_of(&cluster.tls, a))
    }) as usize
        - 1;
    (leader, (0..3).filter(|i| *i != leader).collect())
}

/// Publishes a new collection `gun` through `node` with `token`.
fn publish_with_token(node: &Node, gun: &str, token: &str) -> TestRepo {
    let auth = [("Authorization", token)];
    let key = request(&node.addr, "GET", &tuf(gun, "timestamp.key"), &auth, &[]);
    assert_eq!(key.status, 200, "timestamp.key: {}", key.text());
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).unwrap());
    let files = repo.first_publish(&[("v1", b"payload\n")]);
    let (ct, body) = multipart(&files);
    let r = request(
        &node.addr,
        "POST",
        &tuf(gun, ""),
        &[("Content-Type", &ct), ("Authorization", token)],
        &body,
    );
    assert_eq!(r.status, 200, "publish: {}", r.text());
    repo
}

#[test]
fn reads_of_a_private_collection_answer_401_before_any_cluster_work() {
    let _serial = one_cluster_at_a_time();
    let tokens = Tokens::new();
    let cluster = token_cluster(tokens.auth_config());
    let (leader, followers) = leader_and_followers(&cluster);
    let (leader, follower) = (&cluster.nodes[leader], &cluster.nodes[followers[0]]);
    let writer = tokens.token(EXISTING, &["push", "pull"]);
    publish_with_token(leader, EXISTING, &writer);
    let reader = tokens.token(EXISTING, &["pull"]);
    eventually("the collection on the follower", || {
        let r = request(
            &follower.addr,
            "GET",
            &tuf(EXISTING, "root.json"),
            &[("Authorization", &reader)],
            &[],
        );
        (r.status == 200).then_some(())
    });

    // The controls: an authorized reader gets what the headers ask for, so each 401 below is the
    // token's doing. A version far in the future makes the follower wait, then ask the leader.
    let with_reader = |node: &Node, path: &str, extra: (&str, &str)| {
        request(&node.addr, "GET", path, &[("Authorization", &reader), extra], &[])
    };
    let r = with_reader(follower, &tuf(EXISTING, "targets.json"), ("X-Seal-Min-Version", "1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = with_reader(
        follower,
        &format!("{}?consistent", tuf(EXISTING, "timestamp.json")),
        ("X-Seal-Consistency", "linearizable"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("x-seal-forwarded-to").is_some(),
        "a linearizable read is forwarded"
    );
    let started = Instant::now();
    let r = with_reader(
        follower,
        &tuf(EXISTING, "targets.json"),
        ("X-Seal-Min-Version", "1000000"),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        started.elapsed() >= MIN_VERSION_WAIT,
        "an authorized reader waits for the version"
    );
    let r = with_reader(follower, &tuf(MISSING, "targets.json"), ("X-Seal-Min-Version", "1"));
    assert_eq!(r.status, 401, "the reader's token is for {EXISTING} only");

    // Without a token: one and the same answer for the collection that exists and the one that
    // does not, on the follower and on the leader, whatever the read asks for; at once.
    let variants: Vec<(&str, &str, Headers)> = vec![
        ("plain", "", vec![]),
        ("min version 1", "", vec![("X-Seal-Min-Version", "1")]),
        ("min version far ahead", "", vec![("X-Seal-Min-Version", "1000000")]),
        ("min version not a number", "", vec![("X-Seal-Min-Version", "x")]),
        ("?consistent", "?consistent", vec![]),
        ("linearizable header", "", vec![("X-Seal-Consistency", "linearizable")]),
        (
            "?consistent and min version far ahead",
            "?consistent=1",
            vec![("X-Seal-Min-Version", "1000000")],
        ),
    ];
    let leader_reads_before = requests_seen(leader, "GetRole", None) + requests_seen(leader, "Changefeed", None);
    for (node_name, node) in [("follower", follower), ("leader", leader)] {
        for gun in [EXISTING, MISSING] {
            for (variant, query, headers) in &variants {
                for path in [
                    tuf(gun, "targets.json"),
                    tuf(gun, "timestamp.json"),
                    format!("/v2/{gun}/_trust/changefeed?records=10"),
                ] {
                    let path = match (*query, path.contains('?')) {
                        ("", _) => path,
                        (q, true) => format!("{path}&{}", &q[1..]),
                        (q, false) => format!("{path}{q}"),
                    };
                    let what = format!("{node_name}: GET {path} ({variant})");
                    let started = Instant::now();
                    let r = request(&node.addr, "GET", &path, headers, &[]);
                    let took = started.elapsed();
                    assert_401(&r, gun, &["pull"], None, &what);
                    assert!(
                        took < MIN_VERSION_WAIT / 2,
                        "{what}: answered after {took:?}, not at once"
                    );
                }
            }
        }
        if node_name == "follower" {
            assert_eq!(
                requests_seen(leader, "GetRole", None) + requests_seen(leader, "Changefeed", None),
                leader_reads_before,
                "the follower forwarded an anonymous read to the leader"
            );
        }
    }
}

/// A `POST` of `len` bytes sent in the background while the answer is read: the answer, and how
/// many bytes of the body had been sent when its head arrived.
fn post_streaming(addr: &str, path: &str, headers: &[(&str, &str)], len: usize) -> (Response, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (mut stream, sent) = (stream.try_clone().unwrap(), sent.clone());
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            while sent.load(Ordering::SeqCst) < len {
                let n = chunk.len().min(len - sent.load(Ordering::SeqCst));
                match stream.write(&chunk[..n]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        sent.fetch_add(n, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut sent_at_answer = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if sent_at_answer.is_none() && raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    sent_at_answer = Some(sent.load(Ordering::SeqCst));
                }
            }
            // The node closes the connection with the body unread: a reset may follow the answer.
            Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("POST {path}: {e}"),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    (parse_response(&raw), sent_at_answer.expect("an answer"))
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[test]
fn a_follower_answers_an_anonymous_30_mb_publish_401_without_reading_or_forwarding_it() {
    let _serial = one_cluster_at_a_time();
    let tokens = Tokens::new();
    let cluster = token_cluster(tokens.auth_config());
    let (leader, followers) = leader_and_followers(&cluster);
    let (leader, follower) = (&cluster.nodes[leader], &cluster.nodes[followers[0]]);
    let ct = "multipart/form-data; boundary=a1d52fff367cf5b48540c8ca5c1fdb443949f851ec1779623269744e286e";
    const LEN: usize = 30_000_000;
    let writer = tokens.token(EXISTING, &["push", "pull"]);
    let authorized_write = || {
        request(
            &follower.addr,
            "POST",
            &tuf(EXISTING, ""),
            &[("Content-Type", ct), ("Authorization", &writer)],
            b"not a multipart body",
        )
    };
    // The node asked is a follower that forwards what the leader would accept.
    eventually("an authorized write forwarded by the follower", || {
        let r = authorized_write();
        r.header("x-seal-forwarded-to").is_some().then_some(())
    });
    let seen = |operation| requests_seen(leader, operation, None);
    let before = ["UpdateTUF", "DeleteTUF", "RotateKey"].map(seen);

    // Anonymous: 401 before the body is through, nothing forwarded.
    let (r, sent) = post_streaming(&follower.addr, &tuf(EXISTING, ""), &[("Content-Type", ct)], LEN);
    assert_401(&r, EXISTING, &["push", "pull"], None, "anonymous 30 MB publish");
    assert!(
        sent < LEN,
        "the follower answered only once the whole body was sent ({sent} bytes)"
    );
    // With `Expect: 100-continue`, the client is told 401 instead of being asked for the body.
    let mut s = TcpStream::connect(&follower.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {LEN}\r\nExpect: 100-continue\r\n\r\n",
        tuf(EXISTING, "")
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_401(
        &parse_response(&raw),
        EXISTING,
        &["push", "pull"],
        None,
        "anonymous publish expecting 100-continue",
    );
    // A token that does not verify, and one that does not grant push: refused the same way.
    let (r, sent) = post_streaming(
        &follower.addr,
        &tuf(EXISTING, ""),
        &[("Content-Type", ct), ("Authorization", "Bearer abc.def.ghi")],
        LEN,
    );
    assert_401(
        &r,
        EXISTING,
        &["push", "pull"],
        Some("invalid_token"),
        "a garbage token's 30 MB publish",
    );
    assert!(sent < LEN, "{sent} bytes sent before the answer");
    let reader = tokens.token(EXISTING, &["pull"]);
    let r = request(
        &follower.addr,
        "POST",
        &tuf(EXISTING, ""),
        &[("Content-Type", ct), ("Authorization", &reader)],
        b"--x--",
    );
    assert_401(
        &r,
        EXISTING,
        &["push", "pull"],
        Some("insufficient_scope"),
        "a pull token's publish",
    );
    for (method, path) in [("DELETE", tuf(EXISTING, "")), ("POST", tuf(EXISTING, "snapshot.key"))] {
        let r = request(&follower.addr, method, &path, &[("Content-Length", "0")], &[]);
        assert_401(&r, EXISTING, &["*"], None, &format!("anonymous {method} {path}"));
    }
    // The leader ran none of them.
    assert_eq!(
        ["UpdateTUF", "DeleteTUF", "RotateKey"].map(seen),
        before,
        "the leader's publish, delete and rotate counts"
    );

    // The control: an authorized write through the same follower is forwarded, and counted.
    let r = authorized_write();
    assert_eq!(r.error_code(), "MALFORMED_UPLOAD", "{}", r.text());
    assert!(r.header("x-seal-forwarded-to").is_some(), "forwarded to the leader");
    assert_eq!(seen("UpdateTUF"), before[0] + 1);
}

#[test]
fn a_follower_answers_503_once_bodies_in_flight_to_the_leader_fill_its_budget() {
    const BUDGET: usize = 1024 * 1024;
    let _serial = one_cluster_at_a_time();
    let tokens = Tokens::new();
    let mut extra = tokens.auth_config();
    extra["limits"] = json!({"max_body_bytes": BUDGET, "max_forward_bytes_in_flight": BUDGET});
    let cluster = token_cluster(extra);
    let (leader, followers) = leader_and_followers(&cluster);
    let (leader, follower) = (&cluster.nodes[leader], &cluster.nodes[followers[0]]);
    let writer = tokens.token(EXISTING, &["push", "pull"]);
    let ct = "multipart/form-data; boundary=B";
    let small_publish = || {
        request(
            &follower.addr,
            "POST",
            &tuf(EXISTING, ""),
            &[("Content-Type", ct), ("Authorization", &writer)],
            b"--B--\r\n",
        )
    };

    // An empty upload, forwarded: the leader finds no root in it. Once so, the node asked is a
    // follower that forwards.
    let forwarded = |r: &Response, what: &str| {
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "INVALID_UPDATE"),
            "{what}: {}",
            r.text()
        );
        assert!(r.header("x-seal-forwarded-to").is_some(), "{what}: forwarded");
    };
    let r = eventually("a write forwarded by the follower", || {
        let r = small_publish();
        r.header("x-seal-forwarded-to").is_some().then_some(r)
    });
    forwarded(&r, "before");

    // One authorized client announces a body as large as the whole budget and sends it slowly.
    let open_slow = || {
        let mut slow = TcpStream::connect(&follower.addr).unwrap();
        write!(
            slow,
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nAuthorization: {writer}\r\nContent-Length: {BUDGET}\r\n\r\n",
            tuf(EXISTING, "")
        )
        .unwrap();
        slow.write_all(&[b'x'; 1000]).unwrap();
        slow
    };
    let mut slow = open_slow();

    // Every other write to be forwarded is refused with Notary's 503 body until it is gone…
    let refused = eventually("a 503 while the budget is taken", || {
        std::thread::sleep(Duration::from_millis(50));
        let r = small_publish();
        if r.status == 503 {
            return Some(r);
        }
        // This write may have reached the follower first, and the slow one found the budget
        // short by its few bytes: then it has its own 503; start it again.
        slow.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        if slow.read(&mut [0u8; 1]).is_ok() {
            slow = open_slow();
        }
        None
    });
    assert_eq!(refused.error_code(), "UNAVAILABLE", "{}", refused.text());
    assert_eq!(refused.header("content-type"), Some("application/json; charset=utf-8"));
    assert!(
        refused.text().contains("limits.max_forward_bytes_in_flight"),
        "{}",
        refused.text()
    );
    assert!(refused.header("x-seal-forwarded-to").is_none());
    let r = small_publish();
    assert_eq!(r.status, 503, "still full: {}", r.text());
    // … while the leader, which forwards nothing, takes writes, and reads go on.
    let r = request(
        &leader.addr,
        "POST",
        &tuf(EXISTING, ""),
        &[("Content-Type", ct), ("Authorization", &writer)],
        b"--B--\r\n",
    );
    assert_eq!(r.error_code(), "INVALID_UPDATE", "{}", r.text());
    let r = request(
        &follower.addr,
        "GET",
        &tuf(EXISTING, "root.json"),
        &[("Authorization", &writer)],
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // The slow client goes away: its share comes back and writes are forwarded again.
    drop(slow);
    let r = eventually("a forwarded write once the budget is free", || {
        let r = small_publish();
        (r.status != 503).then_some(r)
    });
    forwarded(&r, "after");
}
