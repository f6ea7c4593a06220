use super::*;
use crate::routes::{KeyRole, MetadataSelector};
use axum::http::{HeaderValue, Method};
use josekit::jws::{JwsHeader, JwsSigner};
use serde_json::json;

const REALM: &str = "http://127.0.0.1:4447/auth/token";
const SERVICE: &str = "notary-server";
const ISSUER: &str = "anchors-token-issuer";
/// 2026-11-22T00:00:00Z.
const NOW: i64 = 1_795_305_600;

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

fn config(anonymous_read: bool) -> TokenAuthConfig {
    TokenAuthConfig {
        realm: REALM.into(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        rootcertbundle: PathBuf::from("roots.pem"),
        anonymous_read,
    }
}

/// A CA and a leaf signing key of `alg` (rcgen), the leaf's chain and key.
struct Pki {
    ca_pem: String,
    leaf_der: Vec<u8>,
    key_pem: String,
    jws_alg: &'static str,
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params
}

fn pki(alg: &'static rcgen::SignatureAlgorithm, jws_alg: &'static str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let params = ca_params("token CA");
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let leaf_key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "token signer");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        leaf_der: leaf_cert.der().to_vec(),
        key_pem: leaf_key.serialize_pem(),
        jws_alg,
    }
}

fn auth_with(pem: &str, anonymous_read: bool) -> TokenAuth {
    TokenAuth::new(&config(anonymous_read), pem.as_bytes(), Path::new("roots.pem")).unwrap()
}

fn signer(alg: &str, key_pem: &str) -> Box<dyn JwsSigner> {
    use josekit::jws::{EdDSA, ES256, ES384, RS256};
    match alg {
        "ES256" => Box::new(ES256.signer_from_pem(key_pem).unwrap()),
        "ES384" => Box::new(ES384.signer_from_pem(key_pem).unwrap()),
        "RS256" => Box::new(RS256.signer_from_pem(key_pem).unwrap()),
        "EdDSA" => {
            let der = ed25519_pkcs8_v1(key_pem.as_bytes()).unwrap();
            Box::new(EdDSA.signer_from_der(&*der).unwrap())
        }
        other => panic!("{other}"),
    }
}

fn claims(access: Value) -> Map<String, Value> {
    json!({"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": NOW + 300, "nbf": NOW - 10,
           "iat": NOW - 10, "jti": "1", "access": access})
    .as_object()
    .unwrap()
    .clone()
}

fn push_pull(gun: &str) -> Value {
    json!([{"type": "repository", "name": gun, "actions": ["push", "pull"]}])
}

/// A compact JWS over `claims` with `header` members, signed by `key_pem`.
fn sign(alg: &str, key_pem: &str, header: &[(&str, Value)], claims: &Map<String, Value>) -> String {
    let mut h = JwsHeader::new();
    h.set_token_type("JWT");
    for (k, v) in header {
        h.set_claim(k, Some(v.clone())).unwrap();
    }
    let payload = josekit::jwt::JwtPayload::from_map(claims.clone()).unwrap();
    josekit::jwt::encode_with_signer(&payload, &h, signer(alg, key_pem).as_ref()).unwrap()
}

fn x5c(ders: &[&[u8]]) -> Value {
    Value::Array(
        ders.iter()
            .map(|d| Value::String(base64::engine::general_purpose::STANDARD.encode(d)))
            .collect(),
    )
}

fn token_for(pki: &Pki, claims: &Map<String, Value>) -> String {
    sign(pki.jws_alg, &pki.key_pem, &[("x5c", x5c(&[&pki.leaf_der]))], claims)
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn publish(gun: &str) -> Route {
    Route::Publish { gun: gun.into() }
}

fn get_root(gun: &str) -> Route {
    Route::GetMetadata {
        gun: gun.into(),
        role: "root".into(),
        role_valid: true,
        selector: MetadataSelector::Current,
    }
}

fn challenge_of(e: ApiError) -> String {
    match e {
        ApiError::Unauthorized { challenge: Some(c), .. } => c,
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn scopes_per_route_are_notarys() {
    let g = "example.com/a";
    let cases: Vec<(Route, &str)> = vec![
        (Route::Ping, "registry:catalog:*"),
        (Route::Changefeed { gun: None }, "registry:catalog:*"),
        (get_root(g), "repository:example.com/a:pull"),
        (
            Route::GetMetadata {
                gun: g.into(),
                role: "snapshot".into(),
                role_valid: true,
                selector: MetadataSelector::Version(Some(2)),
            },
            "repository:example.com/a:pull",
        ),
        (
            Route::Changefeed { gun: Some(g.into()) },
            "repository:example.com/a:pull",
        ),
        (publish(g), "repository:example.com/a:push,pull"),
        (
            Route::GetKey {
                gun: g.into(),
                role: KeyRole::Timestamp,
            },
            "repository:example.com/a:push,pull",
        ),
        (
            Route::RotateKey {
                gun: g.into(),
                role: KeyRole::Snapshot,
            },
            "repository:example.com/a:*",
        ),
        (Route::DeleteGun { gun: g.into() }, "repository:example.com/a:*"),
    ];
    for (route, scope) in cases {
        assert_eq!(scope_param(&required_access(&route)), scope, "{route:?}");
    }
    for open in [Route::Health, Route::Metrics, Route::NotFound] {
        assert!(required_access(&open).is_empty());
    }
    let r = || "fw".to_owned();
    for (route, scope) in [
        (Route::Tuf1List, "registry:catalog:*"),
        (
            Route::Tuf1Metadata {
                repository: r(),
                file: "timestamp.json".into(),
            },
            "tuf-repository:fw:pull",
        ),
        (
            Route::Tuf1Keys {
                repository: r(),
                create: false,
            },
            "tuf-repository:fw:pull",
        ),
        (Route::Tuf1Upload { repository: r() }, "tuf-repository:fw:push,pull"),
        (
            Route::Tuf1Keys {
                repository: r(),
                create: true,
            },
            "tuf-repository:fw:*",
        ),
        (
            Route::Tuf1RotateKey {
                repository: r(),
                role: KeyRole::Timestamp,
            },
            "tuf-repository:fw:*",
        ),
    ] {
        assert_eq!(scope_param(&required_access(&route)), scope, "{route:?}");
    }
}

#[test]
fn challenges_match_the_notary_fixture() {
    let Some(dir) = crate::error::tests::fixtures_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("errors/auth-challenges.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let p = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    let auth = auth_with(&p.ca_pem, false);
    let mut checked = 0;
    for ex in v["exchanges"].as_array().unwrap() {
        let method = Method::from_bytes(ex["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = ex["path"].as_str().unwrap();
        let route = crate::routes::parse(&method, path.split('?').next().unwrap());
        let mut headers = HeaderMap::new();
        if let Some(a) = ex["authorization"].as_str() {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        let result = auth.authorize(&route, &headers, at(NOW));
        match ex["www_authenticate"].as_str() {
            None => assert!(result.is_ok(), "{path}"),
            Some(expected) => {
                let err = result.unwrap_err();
                assert_eq!(String::from_utf8(err.body()).unwrap(), ex["body"].as_str().unwrap());
                assert_eq!(challenge_of(err), expected, "{method} {path}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn bearer_header_forms() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        m
    };
    assert_eq!(bearer_token(&h("Bearer abc")), Some("abc".into()));
    assert_eq!(bearer_token(&h("bearer abc")), Some("abc".into()));
    assert_eq!(bearer_token(&h("Basic dXNlcjpwYXNz")), None);
    assert_eq!(bearer_token(&h("Bearer  abc")), None);
    assert_eq!(bearer_token(&HeaderMap::new()), None);
}

#[test]
fn valid_tokens_of_each_key_type_grant_their_access() {
    for (alg, jws_alg) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, "ES256"),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "ES384"),
        (&rcgen::PKCS_ED25519, "EdDSA"),
    ] {
        let p = pki(alg, jws_alg);
        let auth = auth_with(&p.ca_pem, false);
        let token = token_for(&p, &claims(push_pull("example.com/a")));
        let v = auth.verify(&token, at(NOW)).unwrap();
        assert_eq!(v.subject.as_deref(), Some("alice"));
        assert_eq!(v.expires_at, NOW + 300);
        auth.authorize(&publish("example.com/a"), &bearer(&token), at(NOW))
            .unwrap();
        auth.authorize(&get_root("example.com/a"), &bearer(&token), at(NOW))
            .unwrap();
        let e = auth
            .authorize(&publish("example.com/b"), &bearer(&token), at(NOW))
            .unwrap_err();
        assert_eq!(
            challenge_of(e),
            format!(
                "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:example.com/b:push,pull\",error=\"insufficient_scope\""
            )
        );
    }
}

#[test]
fn an_rsa_token_through_an_intermediate_verifies() {
    // Openssl-made chain of the fixtures: root → intermediate → leaf (RSA 2048).
    let Some(dir) = crate::error::tests::fixtures_dir() else {
        return;
    };
    let pki_dir = dir.join("certs/local-test-pki");
    let root = std::fs::read_to_string(pki_dir.join("root-ca.crt")).unwrap();
    let bundle = std::fs::read(pki_dir.join("notary-server.crt")).unwrap();
    let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&bundle)
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect();
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    let key = std::fs::read_to_string(pki_dir.join("notary-server.key")).unwrap();
    let auth = auth_with(&root, false);
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let c = claims(push_pull("example.com/a"));
    let token = sign("RS256", &key, &[("x5c", x5c(&refs))], &c);
    auth.verify(&token, at(NOW)).unwrap();
    // Without the intermediate, no path to the root.
    let token = sign("RS256", &key, &[("x5c", x5c(&refs[..1]))], &c);
    assert!(matches!(
        auth.verify(&token, at(NOW)),
        Err(TokenError::UntrustedChain { .. })
    ));
}

#[test]
fn each_claim_is_checked() {
    let p = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    let auth = auth_with(&p.ca_pem, false);
    let verify = |c: &Map<String, Value>| auth.verify(&token_for(&p, c), at(NOW));
    let with = |key: &str, value: Value| {
        let mut c = claims(push_pull("example.com/a"));
        c.insert(key.into(), value);
        c
    };
    let without = |key: &str| {
        let mut c = claims(push_pull("example.com/a"));
        c.remove(key);
        c
    };

    assert!(matches!(
        verify(&with("iss", json!("someone-else"))),
        Err(TokenError::WrongIssuer { found: Some(_) })
    ));
    assert!(matches!(
        verify(&without("iss")),
        Err(TokenError::WrongIssuer { found: None })
    ));
    assert!(matches!(
        verify(&with("aud", json!("other-service"))),
        Err(TokenError::WrongAudience { .. })
    ));
    assert!(matches!(verify(&without("aud")), Err(TokenError::WrongAudience { .. })));
    verify(&with("aud", json!(["other-service", SERVICE]))).unwrap();
    assert!(matches!(
        verify(&with("aud", json!(["a", "b"]))),
        Err(TokenError::WrongAudience { .. })
    ));

    // exp: required; 60 s of leeway, not more.
    assert_eq!(verify(&without("exp")), Err(TokenError::MissingExpiry));
    verify(&with("exp", json!(NOW - LEEWAY_SECS))).unwrap();
    assert_eq!(
        verify(&with("exp", json!(NOW - LEEWAY_SECS - 1))),
        Err(TokenError::Expired {
            exp: NOW - LEEWAY_SECS - 1,
            now: NOW
        })
    );
    // nbf: optional; 60 s of leeway, not more.
    verify(&without("nbf")).unwrap();
    verify(&with("nbf", json!(NOW + LEEWAY_SECS))).unwrap();
    assert_eq!(
        verify(&with("nbf", json!(NOW + LEEWAY_SECS + 1))),
        Err(TokenError::NotYetValid {
            nbf: NOW + LEEWAY_SECS + 1,
            now: NOW
        })
    );

    // access: shapes.
    assert!(matches!(
        verify(&with("access", json!("all"))),
        Err(TokenError::BadClaim { claim: "access", .. })
    ));
    assert!(matches!(
        verify(&with(
            "access",
            json!([{"type": "repository", "name": 5, "actions": []}])
        )),
        Err(TokenError::BadClaim { claim: "access", .. })
    ));
    assert!(verify(&without("access")).unwrap().access.is_empty());
}

#[test]
fn access_is_matched_per_action() {
    let p = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    let auth = auth_with(&p.ca_pem, false);
    let g = "example.com/a";
    let check = |access: Value, route: Route| {
        let token = token_for(&p, &claims(access));
        auth.authorize(&route, &bearer(&token), at(NOW))
    };
    let pull_only = json!([{"type": "repository", "name": g, "actions": ["pull"]}]);
    let star = json!([{"type": "repository", "name": g, "actions": ["*"]}]);
    check(pull_only.clone(), get_root(g)).unwrap();
    assert!(check(pull_only, publish(g)).is_err());
    // push,pull does not grant `*` (delete); `*` grants everything.
    assert!(check(push_pull(g), Route::DeleteGun { gun: g.into() }).is_err());
    check(star.clone(), Route::DeleteGun { gun: g.into() }).unwrap();
    check(star.clone(), publish(g)).unwrap();
    // A grant for the GUN is not one for the catalog, nor for another type.
    assert!(check(star, Route::Ping).is_err());
    check(
        json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]),
        Route::Changefeed { gun: None },
    )
    .unwrap();
    assert!(check(json!([{"type": "registry", "name": g, "actions": ["*"]}]), publish(g)).is_err());
}

#[test]
fn signatures_chains_and_algorithms_are_checked() {
    let p = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    let auth = auth_with(&p.ca_pem, false);
    let c = claims(push_pull("example.com/a"));
    let good = token_for(&p, &c);

    // Tampered payload: the signature no longer verifies.
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = c.clone();
    forged.insert("access".into(), push_pull("example.com/b"));
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(matches!(
        auth.verify(&tampered, at(NOW)),
        Err(TokenError::BadSignature { .. })
    ));

    // A chain from another CA.
    let rogue = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    assert!(matches!(
        auth.verify(&token_for(&rogue, &c), at(NOW)),
        Err(TokenError::UntrustedChain { .. })
    ));

    // alg none, HS256, a mismatched alg, no key at all.
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(
        auth.verify(&none, at(NOW)),
        Err(TokenError::UnsupportedAlgorithm { alg: "none".into() })
    );
    let hs = format!(
        "{}.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        auth.verify(&hs, at(NOW)),
        Err(TokenError::UnsupportedAlgorithm { .. })
    ));
    let ed = pki(&rcgen::PKCS_ED25519, "EdDSA");
    let ed_auth = auth_with(&ed.ca_pem, false);
    // An Ed25519 signature presented as ES256 over the Ed25519 chain.
    let t = token_for(&ed, &c);
    let t_parts: Vec<&str> = t.split('.').collect();
    let mut h: Map<String, Value> = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t_parts[0])
            .unwrap(),
    )
    .unwrap();
    h.insert("alg".into(), json!("ES256"));
    let relabelled = format!(
        "{}.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()),
        t_parts[1],
        t_parts[2]
    );
    assert_eq!(
        ed_auth.verify(&relabelled, at(NOW)),
        Err(TokenError::AlgorithmKeyMismatch {
            alg: "ES256".into(),
            key: KeyKind::Ed25519
        })
    );
    let bare = sign("ES256", &p.key_pem, &[], &c);
    assert_eq!(auth.verify(&bare, at(NOW)), Err(TokenError::NoSigningKey));

    // Garbage.
    for bad in ["abc.def.ghi", "", "a.b", "....", "e30.e30.e30"] {
        assert!(auth.verify(bad, at(NOW)).is_err(), "{bad}");
    }
    assert_eq!(
        auth.verify(&"a".repeat(MAX_TOKEN_LEN + 1), at(NOW)),
        Err(TokenError::TooLarge)
    );
}

#[test]
fn chain_certificates_must_be_valid_now() {
    // A leaf that expired in 2021 under a CA valid until 2036.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let params = ca_params("token CA");
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let auth = auth_with(&ca_cert.pem(), false);
    let token_at = |t: i64| {
        let mut c = claims(push_pull("g"));
        c.insert("exp".into(), json!(t + 300));
        c.insert("nbf".into(), json!(t - 10));
        sign(
            "ES256",
            &leaf_key.serialize_pem(),
            &[("x5c", x5c(&[leaf_cert.der()]))],
            &c,
        )
    };
    assert!(matches!(
        auth.verify(&token_at(NOW), at(NOW)),
        Err(TokenError::UntrustedChain { .. })
    ));
    // The same chain while the leaf was valid (2020-09-13).
    let then = 1_600_000_000;
    auth.verify(&token_at(then), at(then)).unwrap();
}

#[test]
fn a_kid_names_a_key_only_while_its_certificate_is_valid() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = ca_params("short-lived token signer");
    params.is_ca = rcgen::IsCa::NoCa;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 3_600).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let auth = auth_with(&cert.pem(), false);
    let parsed = x509_cert::Certificate::from_der(cert.der()).unwrap();
    let kid = libtrust_key_id(&parsed.tbs_certificate.subject_public_key_info.to_der().unwrap());
    let token_at = |t: i64| {
        let c = json!({"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": t + 300, "nbf": t - 10,
                       "iat": t - 10, "jti": "1", "access": push_pull("example.com/a")});
        sign(
            "ES256",
            &key.serialize_pem(),
            &[("kid", json!(kid))],
            c.as_object().unwrap(),
        )
    };
    auth.verify(&token_at(NOW), at(NOW)).unwrap();
    // After the certificate expired, and before it was valid, its kid signs nothing.
    for t in [NOW + 7_200, NOW - 2 * 86_400] {
        let r = auth.verify(&token_at(t), at(t));
        assert!(
            matches!(&r, Err(TokenError::UntrustedChain { reason }) if reason.contains("is not valid now")),
            "{r:?}"
        );
    }
}

#[test]
fn a_root_may_sign_tokens_itself_by_x5c_or_kid() {
    // A self-signed signing certificate listed in the bundle (a common
    // registry set-up), named by x5c or by its libtrust key id.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = ca_params("self-signed token signer");
    params.is_ca = rcgen::IsCa::NoCa;
    let cert = params.self_signed(&key).unwrap();
    let auth = auth_with(&cert.pem(), false);
    let c = claims(push_pull("example.com/a"));
    let by_x5c = sign("ES256", &key.serialize_pem(), &[("x5c", x5c(&[cert.der()]))], &c);
    auth.verify(&by_x5c, at(NOW)).unwrap();
    let parsed = x509_cert::Certificate::from_der(cert.der()).unwrap();
    let kid = libtrust_key_id(&parsed.tbs_certificate.subject_public_key_info.to_der().unwrap());
    assert_eq!(kid.len(), 12 * 4 + 11);
    assert!(kid
        .split(':')
        .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))));
    let by_kid = sign("ES256", &key.serialize_pem(), &[("kid", json!(kid))], &c);
    auth.verify(&by_kid, at(NOW)).unwrap();
    let unknown = sign("ES256", &key.serialize_pem(), &[("kid", json!("AAAA:BBBB"))], &c);
    assert!(matches!(
        auth.verify(&unknown, at(NOW)),
        Err(TokenError::UnknownKeyId { .. })
    ));
    // A key signing under a kid of another key does not verify.
    let other = rcgen::KeyPair::generate().unwrap();
    let wrong = sign("ES256", &other.serialize_pem(), &[("kid", json!(kid))], &c);
    assert!(matches!(
        auth.verify(&wrong, at(NOW)),
        Err(TokenError::BadSignature { .. })
    ));
}

#[test]
fn libtrust_key_id_encoding() {
    // Base32 of the first 30 bytes of sha256(""), grouped by four
    // (computed independently with Python's base64.b32encode).
    let id = libtrust_key_id(b"");
    assert_eq!(id, "4OYM:IQUY:7QOB:JGX3:6TEJ:S35Z:EQT2:4QPE:MSNZ:GTFE:SWMR:W6CS");
}

#[test]
fn anonymous_read_lets_pulls_through_only() {
    let p = pki(&rcgen::PKCS_ECDSA_P256_SHA256, "ES256");
    let g = "example.com/a";
    let none = HeaderMap::new();
    let closed = auth_with(&p.ca_pem, false);
    assert_eq!(
        challenge_of(closed.authorize(&get_root(g), &none, at(NOW)).unwrap_err()),
        format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:example.com/a:pull\"")
    );
    let open = auth_with(&p.ca_pem, true);
    open.authorize(&get_root(g), &none, at(NOW)).unwrap();
    open.authorize(&Route::Changefeed { gun: Some(g.into()) }, &none, at(NOW))
        .unwrap();
    for route in [
        publish(g),
        Route::GetKey {
            gun: g.into(),
            role: KeyRole::Timestamp,
        },
        Route::DeleteGun { gun: g.into() },
        Route::Ping,
        Route::Changefeed { gun: None },
    ] {
        assert!(open.authorize(&route, &none, at(NOW)).is_err(), "{route:?}");
    }
    // A token that is sent must verify, even for an anonymous read.
    let e = open
        .authorize(&get_root(g), &bearer("abc.def.ghi"), at(NOW))
        .unwrap_err();
    assert!(challenge_of(e).ends_with(",error=\"invalid_token\""));
    // A valid token without the access still reads anonymously.
    let token = token_for(&p, &claims(push_pull("example.com/other")));
    open.authorize(&get_root(g), &bearer(&token), at(NOW)).unwrap();
}

#[test]
fn root_bundles_are_checked() {
    let err = TokenAuth::new(&config(false), b"not a certificate", Path::new("x.pem")).unwrap_err();
    assert_eq!(err, AuthConfigError::NoCertificate { path: "x.pem".into() });
    assert!(err.to_string().contains("x.pem"));
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        TokenAuth::new(&config(false), garbage.as_bytes(), Path::new("x.pem")),
        Err(AuthConfigError::BadCertificate { index: 0, .. })
    ));
    let mut c = config(false);
    c.rootcertbundle = PathBuf::from("/nonexistent/roots.pem");
    assert!(matches!(TokenAuth::from_config(&c), Err(AuthConfigError::Read { .. })));
}
