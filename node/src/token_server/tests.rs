use super::*;
use crate::auth::TokenAuth;
use crate::config::TokenAuthConfig;
use std::time::Duration;

fn rule(name: &str, actions: &[&str]) -> AccessRule {
    AccessRule {
        resource_type: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

#[test]
fn globs() {
    assert!(glob_match("*", "example.com/a/b"));
    assert!(glob_match("example.com/alice/*", "example.com/alice/app"));
    assert!(glob_match("example.com/alice/*", "example.com/alice/x/y"));
    assert!(!glob_match("example.com/alice/*", "example.com/alicex/app"));
    assert!(!glob_match("example.com/alice/*", "example.com/bob/app"));
    assert!(glob_match("example.com/a", "example.com/a"));
    assert!(!glob_match("example.com/a", "example.com/ab"));
    assert!(glob_match("*/app", "example.com/x/app"));
    assert!(glob_match("a*b*c", "a-b-b-c"));
    assert!(!glob_match("a*b*c", "a-b-b-"));
    assert!(!glob_match("", "a"));
}

#[test]
fn scopes_parse_as_docker_writes_them() {
    assert_eq!(
        scope("repository:example.com/a:push,pull"),
        Scope {
            resource_type: "repository".into(),
            name: "example.com/a".into(),
            actions: vec!["push".into(), "pull".into()]
        }
    );
    assert_eq!(scope("repository:host:5000/a:pull").name, "host:5000/a");
    assert_eq!(scope("registry:catalog:*").actions, vec!["*".to_string()]);
    assert_eq!(Scope::parse("repository"), None);
    assert_eq!(Scope::parse("repository:pull"), None);
    assert_eq!(Scope::parse(":a:pull"), None);
}

#[test]
fn grants_are_the_intersection() {
    let rules = vec![
        rule("example.com/alice/*", &["push", "pull"]),
        rule("example.com/shared", &["pull"]),
        rule("example.com/alice/owned", &["*"]),
    ];
    let g = grant(
        &rules,
        &[
            scope("repository:example.com/alice/app:push,pull"),
            scope("repository:example.com/shared:push,pull"),
            scope("repository:example.com/bob/app:pull"),
            scope("repository:example.com/alice/app:*"),
            scope("repository:example.com/alice/owned:*"),
            scope("registry:catalog:*"),
        ],
    );
    assert_eq!(
        g,
        vec![
            scope("repository:example.com/alice/app:push,pull"),
            scope("repository:example.com/shared:pull"),
            scope("repository:example.com/alice/owned:*"),
        ]
    );
    assert!(grant(&[], &[scope("repository:x:pull")]).is_empty());
}

#[test]
fn passwords_hash_and_verify() {
    let h = hash_password("correct horse").unwrap();
    assert!(h.starts_with("$argon2id$"));
    assert!(verify_password(&h, "correct horse"));
    assert!(!verify_password(&h, "wrong"));
    assert!(!verify_password("not a hash", "correct horse"));
    assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
}

#[test]
fn basic_credentials_parse() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        m
    };
    assert_eq!(basic_credentials(&HeaderMap::new()), Ok(None));
    assert_eq!(
        basic_credentials(&h("Basic YWxpY2U6cDpx")),
        Ok(Some(("alice".into(), "p:q".into())))
    );
    assert_eq!(basic_credentials(&h("Basic !!!")), Err(IssueError::BadCredentials));
    assert_eq!(basic_credentials(&h("Bearer abc")), Err(IssueError::BadCredentials));
    assert_eq!(
        basic_credentials(&h("Basic bm9jb2xvbg==")),
        Err(IssueError::BadCredentials)
    );
}

fn write_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca_file, cert_file, key_file) = (dir.join("ca.crt"), dir.join("signer.crt"), dir.join("signer.key"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca_file, cert_file, key_file)
}

#[test]
fn issued_tokens_verify_at_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_pki(dir.path());
    let hash = hash_password("pw").unwrap();
    let config = TokenServerConfig::from_json(
        &json!({
            "issuer": "dev-issuer", "service": "seal", "signing_key": key, "certificate_chain": cert,
            "users": {"alice": {"password_hash": hash, "access": [{"name": "example.com/alice/*", "actions": ["push", "pull"]}]}},
            "anonymous": [{"name": "*", "actions": ["pull"]}],
        })
        .to_string(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(config.http_addr.to_string(), DEFAULT_ADDR);
    let issuer = TokenIssuer::new(config).unwrap();
    let auth = TokenAuth::from_config(&TokenAuthConfig {
        realm: "http://x/auth/token".into(),
        service: "seal".into(),
        issuer: "dev-issuer".into(),
        rootcertbundle: ca,
        anonymous_read: false,
    })
    .unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_795_305_600);

    assert_eq!(
        issuer.authenticate(Some(("alice", "nope"))),
        Err(IssueError::BadCredentials)
    );
    assert_eq!(
        issuer.authenticate(Some(("mallory", "pw"))),
        Err(IssueError::BadCredentials)
    );
    let alice = issuer.authenticate(Some(("alice", "pw"))).unwrap();
    let scopes = vec!["repository:example.com/alice/app:push,pull repository:example.com/bob/app:push,pull".into()];
    let t = issuer.issue(&alice, Some("seal"), &scopes, now).unwrap();
    assert_eq!(t.token, t.access_token);
    assert_eq!(t.expires_in, DEFAULT_LIFETIME_SECS);
    assert_eq!(t.issued_at, "2026-11-22T00:00:00Z");
    let v = auth.verify(&t.token, now).unwrap();
    assert_eq!(v.subject.as_deref(), Some("alice"));
    assert_eq!(v.expires_at, 1_795_305_600 + 300);
    assert_eq!(v.access.len(), 1, "bob's GUN is not granted");
    assert_eq!(v.access[0].name, "example.com/alice/app");
    assert_eq!(v.access[0].actions, vec!["push", "pull"]);

    // Anonymous: pull only.
    let anon = issuer.authenticate(None).unwrap();
    let t = issuer
        .issue(&anon, None, &["repository:example.com/bob/app:push,pull".into()], now)
        .unwrap();
    let v = auth.verify(&t.token, now).unwrap();
    assert_eq!(v.subject.as_deref(), Some(""));
    assert_eq!(v.access[0].actions, vec!["pull"]);

    // The token stops verifying after its lifetime and the leeway.
    let later = now + Duration::from_secs(DEFAULT_LIFETIME_SECS + 61);
    assert!(auth.verify(&t.token, later).is_err());

    assert!(matches!(
        issuer.issue(&alice, Some("other"), &[], now),
        Err(IssueError::UnknownService { .. })
    ));
    assert!(matches!(
        issuer.issue(&alice, None, &["bogus".into()], now),
        Err(IssueError::BadScope(_))
    ));
}

#[test]
fn signer_checks_key_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = write_pki(dir.path());
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let chain = std::fs::read(&cert).unwrap();
    let err = TokenSigner::from_pem(other_key.as_bytes(), &chain).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(TokenSigner::from_pem(&std::fs::read(&key).unwrap(), b"").is_err());
    let s = TokenSigner::load(&key, &cert).unwrap();
    assert_eq!(s.algorithm(), "ES256");
    // Ed25519 and P-384 keys as ring writes them (PKCS#8 v2 for Ed25519).
    for (alg, jws) in [
        (&rcgen::PKCS_ED25519, "EdDSA"),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "ES384"),
    ] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let s = TokenSigner::from_pem(key.serialize_pem().as_bytes(), cert.pem().as_bytes()).unwrap();
        assert_eq!(s.algorithm(), jws);
        assert_eq!(s.sign(&Map::new()).unwrap().split('.').count(), 3);
    }
}

#[test]
fn config_errors_name_the_key() {
    let base = json!({"issuer": "i", "service": "s", "signing_key": "k", "certificate_chain": "c"});
    let key_of = |v: Value| match TokenServerConfig::from_json(&v.to_string(), Path::new("/etc")) {
        Err(TokenServerError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    let mut v = base.clone();
    v["users"] = json!({"alice": {"password_hash": "plain"}});
    assert_eq!(key_of(v), "users.alice.password_hash");
    let mut v = base.clone();
    v["anonymous"] = json!([{"name": "*", "actions": []}]);
    assert_eq!(key_of(v), "anonymous[0].actions");
    let mut v = base.clone();
    v["token_lifetime_secs"] = json!(0);
    assert_eq!(key_of(v), "token_lifetime_secs");
    let mut v = base.clone();
    v["server"] = json!({"http_addr": "nowhere"});
    assert_eq!(key_of(v), "server.http_addr");
    let mut v = base.clone();
    v["extra"] = json!(1);
    assert!(matches!(
        TokenServerConfig::from_json(&v.to_string(), Path::new("/etc")),
        Err(TokenServerError::Syntax { .. })
    ));
    let c = TokenServerConfig::from_json(&base.to_string(), Path::new("/etc")).unwrap();
    assert_eq!(c.signing_key, PathBuf::from("/etc/k"));
}
