//! Parsing of request paths into typed routes, as Notary v0.7.0's router
//! matches them (GUNs with slashes, checksum- and version-named files, key
//! routes, changefeeds), and the `repositories.gun_prefixes` filter.
//!
//! axum's path patterns cannot express `<gun:[^*]+>/_trust/tuf/<role>.json`
//! with slashes in both parts, so the HTTP layer sends every request to one
//! fallback handler that calls [`parse`].

use axum::http::Method;
use seal_tuf::metadata::{is_valid_role, BASE_ROLES, SNAPSHOT, TIMESTAMP};

/// Which file of a role a GET asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataSelector {
    /// `<role>.json`: the current version.
    Current,
    /// `<role>.<hex>.json`: by checksum. Only 64-digit (sha256) checksums are
    /// indexed; 96 and 128 digits route but are never found.
    Checksum(String),
    /// `<version>.<role>.json`: by version; `None` when the digits overflow
    /// (never found).
    Version(Option<u64>),
}

/// A server-held key role: `snapshot` or `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The snapshot role.
    Snapshot,
    /// The timestamp role.
    Timestamp,
}

impl KeyRole {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Snapshot => SNAPSHOT,
            KeyRole::Timestamp => TIMESTAMP,
        }
    }
}

/// A parsed request route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`.
    Ping,
    /// `POST /v2/<gun>/_trust/tuf/`.
    Publish {
        /// The collection.
        gun: String,
    },
    /// `DELETE /v2/<gun>/_trust/tuf/`.
    DeleteGun {
        /// The collection.
        gun: String,
    },
    /// `GET` of a metadata file.
    GetMetadata {
        /// The collection.
        gun: String,
        /// The role as written in the path.
        role: String,
        /// `false` when the role has the shape Notary's router accepts but is
        /// not a valid role name (answered 404 without a lookup).
        role_valid: bool,
        /// Which file.
        selector: MetadataSelector,
    },
    /// `GET /v2/<gun>/_trust/tuf/<role>.key`.
    GetKey {
        /// The collection.
        gun: String,
        /// The key's role.
        role: KeyRole,
    },
    /// `POST /v2/<gun>/_trust/tuf/<role>.key`.
    RotateKey {
        /// The collection.
        gun: String,
        /// The key's role.
        role: KeyRole,
    },
    /// `GET /v2/<gun>/_trust/changefeed` (`gun: Some`) or `GET /v2/_trust/changefeed`.
    Changefeed {
        /// The collection, or `None` for every collection.
        gun: Option<String>,
    },
    /// `GET /_notary_server/health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /_seal/ready`: whether this node serves reads now (Seal's, not a Notary route).
    Ready,
    /// `GET /tuf/`: the TUF 1.0 repositories held.
    Tuf1List,
    /// `GET /tuf/<repository>/metadata/<file>`: a TUF 1.0 repository's metadata file.
    Tuf1Metadata {
        /// The repository, as written in the path (checked by the handler).
        repository: String,
        /// The file name (`timestamp.json`, `3.root.json`, `2.bins-0a.json`, …).
        file: String,
    },
    /// `POST /tuf/<repository>/metadata`: signed metadata uploaded by the repository's owners.
    Tuf1Upload {
        /// The repository.
        repository: String,
    },
    /// `GET` (read) or `POST` (create when missing) `/tuf/<repository>/keys`: the repository's
    /// online keys, held by the signer.
    Tuf1Keys {
        /// The repository.
        repository: String,
        /// `POST`: make the keys the repository lacks.
        create: bool,
    },
    /// `POST /tuf/<repository>/keys/<role>`: a new online key for `role`, added to those held
    /// (a root listing it rotates to it).
    Tuf1RotateKey {
        /// The repository.
        repository: String,
        /// The key's role.
        role: KeyRole,
    },
    /// Anything else: 404 METADATA_NOT_FOUND without detail.
    NotFound,
}

impl Route {
    /// The operation name used in metrics labels (Notary's handler names).
    pub fn operation(&self) -> &'static str {
        match self {
            Route::Ping => "Ping",
            Route::Publish { .. } => "UpdateTUF",
            Route::DeleteGun { .. } => "DeleteTUF",
            Route::GetMetadata { selector, .. } => match selector {
                MetadataSelector::Current => "GetRole",
                MetadataSelector::Checksum(_) => "GetRoleByHash",
                MetadataSelector::Version(_) => "GetRoleByVersion",
            },
            Route::GetKey { .. } => "GetKey",
            Route::RotateKey { .. } => "RotateKey",
            Route::Changefeed { .. } => "Changefeed",
            Route::Health => "Health",
            Route::Metrics => "Metrics",
            Route::Ready => "Ready",
            Route::Tuf1List => "Tuf1List",
            Route::Tuf1Metadata { .. } => "Tuf1GetMetadata",
            Route::Tuf1Upload { .. } => "Tuf1Upload",
            Route::Tuf1Keys { create: false, .. } => "Tuf1GetKeys",
            Route::Tuf1Keys { create: true, .. } => "Tuf1CreateKeys",
            Route::Tuf1RotateKey { .. } => "Tuf1RotateKey",
            Route::NotFound => "NotFound",
        }
    }

    /// The TUF 1.0 repository this route acts on, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Tuf1Metadata { repository, .. }
            | Route::Tuf1Upload { repository }
            | Route::Tuf1Keys { repository, .. }
            | Route::Tuf1RotateKey { repository, .. } => Some(repository),
            _ => None,
        }
    }

    /// The GUN this route acts on, if any (never a TUF 1.0 repository's name: see
    /// [`Route::repository`]).
    pub fn gun(&self) -> Option<&str> {
        match self {
            Route::Publish { gun }
            | Route::DeleteGun { gun }
            | Route::GetMetadata { gun, .. }
            | Route::GetKey { gun, .. }
            | Route::RotateKey { gun, .. } => Some(gun),
            Route::Changefeed { gun } => gun.as_deref(),
            _ => None,
        }
    }
}

/// Parses a method and a (percent-decoded) path into a [`Route`].
pub fn parse(method: &Method, path: &str) -> Route {
    match (method.as_str(), path) {
        ("GET", "/v2/") => return Route::Ping,
        ("GET", "/_notary_server/health") => return Route::Health,
        ("GET", "/metrics") => return Route::Metrics,
        ("GET", "/_seal/ready") => return Route::Ready,
        ("GET", "/v2/_trust/changefeed") => return Route::Changefeed { gun: None },
        ("GET", "/tuf/") => return Route::Tuf1List,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/tuf/") {
        return parse_tuf1(method, rest);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound;
    };
    if let Some(gun) = rest.strip_suffix("/_trust/changefeed") {
        if *method == Method::GET && valid_gun(gun) {
            return Route::Changefeed {
                gun: Some(gun.to_string()),
            };
        }
        // A GUN may itself end in `/_trust/changefeed` and be followed by a
        // tuf path; fall through to the tuf patterns.
    }
    // The GUN pattern is greedy: try the last `/_trust/tuf/` first.
    const TUF: &str = "/_trust/tuf/";
    let mut candidates: Vec<usize> = rest.match_indices(TUF).map(|(i, _)| i).collect();
    candidates.reverse();
    for at in candidates {
        let gun = &rest[..at];
        let file = &rest[at + TUF.len()..];
        if !valid_gun(gun) {
            continue;
        }
        if let Some(route) = parse_tuf_file(method, gun, file) {
            return route;
        }
    }
    Route::NotFound
}

/// `/tuf/<repository>/…`: one path segment of repository name, then `metadata/<file>` (GET),
/// `metadata` (POST) or `keys` (GET, POST).
fn parse_tuf1(method: &Method, rest: &str) -> Route {
    let Some((repository, tail)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    let repository = repository.to_owned();
    match (method.as_str(), tail) {
        ("POST", "metadata") => Route::Tuf1Upload { repository },
        ("GET", "keys") => Route::Tuf1Keys {
            repository,
            create: false,
        },
        ("POST", "keys") => Route::Tuf1Keys {
            repository,
            create: true,
        },
        ("POST", "keys/snapshot") => Route::Tuf1RotateKey {
            repository,
            role: KeyRole::Snapshot,
        },
        ("POST", "keys/timestamp") => Route::Tuf1RotateKey {
            repository,
            role: KeyRole::Timestamp,
        },
        ("GET", tail) => match tail.strip_prefix("metadata/") {
            Some(file) if !file.is_empty() && !file.contains('/') => Route::Tuf1Metadata {
                repository,
                file: file.to_owned(),
            },
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

fn parse_tuf_file(method: &Method, gun: &str, file: &str) -> Option<Route> {
    let gun = gun.to_string();
    if file.is_empty() {
        return match *method {
            Method::POST => Some(Route::Publish { gun }),
            Method::DELETE => Some(Route::DeleteGun { gun }),
            _ => None,
        };
    }
    if let Some(stem) = file.strip_suffix(".key") {
        let role = match stem {
            SNAPSHOT => KeyRole::Snapshot,
            TIMESTAMP => KeyRole::Timestamp,
            _ => return None,
        };
        return match *method {
            Method::GET => Some(Route::GetKey { gun, role }),
            Method::POST => Some(Route::RotateKey { gun, role }),
            _ => None,
        };
    }
    if *method != Method::GET {
        return None;
    }
    let stem = file.strip_suffix(".json")?;
    let metadata = |role: &str, selector| Route::GetMetadata {
        gun: gun.clone(),
        role: role.to_string(),
        role_valid: is_valid_role(role),
        selector,
    };
    // Notary's order: by checksum, by version, current.
    if let Some((role, sum)) = stem.rsplit_once('.') {
        if matches!(sum.len(), 64 | 96 | 128) && sum.bytes().all(|b| b.is_ascii_hexdigit()) && route_role_shape(role) {
            return Some(metadata(role, MetadataSelector::Checksum(sum.to_ascii_lowercase())));
        }
    }
    if let Some((version, role)) = stem.split_once('.') {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) && route_role_shape(role) {
            return Some(metadata(role, MetadataSelector::Version(version.parse::<u64>().ok())));
        }
    }
    if route_role_shape(stem) {
        return Some(metadata(stem, MetadataSelector::Current));
    }
    None
}

/// Notary's router pattern for roles:
/// `root|targets(?:/[^/\s]+)*|snapshot|timestamp`. Looser than a valid role
/// name (seal-tuf's [`is_valid_role`], checked after routing): a path of this
/// shape with an invalid role is answered 404 without a lookup, as Notary does.
fn route_role_shape(role: &str) -> bool {
    if BASE_ROLES.contains(&role) {
        return true;
    }
    role.strip_prefix("targets/").is_some_and(|tail| {
        tail.split('/')
            .all(|seg| !seg.is_empty() && !seg.chars().any(char::is_whitespace))
    })
}

/// A GUN as Notary's router accepts it: non-empty, no `*`.
pub fn valid_gun(gun: &str) -> bool {
    !gun.is_empty() && !gun.contains('*')
}

/// Applies `repositories.gun_prefixes`: `true` when the GUN is allowed (no
/// prefixes configured, or the GUN starts with one of them).
pub fn gun_allowed(prefixes: &[String], gun: &str) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| gun.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuf1_routes() {
        let get = |p: &str| parse(&Method::GET, p);
        let post = |p: &str| parse(&Method::POST, p);
        assert_eq!(get("/tuf/"), Route::Tuf1List);
        assert_eq!(
            get("/tuf/fw/metadata/3.root.json"),
            Route::Tuf1Metadata {
                repository: "fw".into(),
                file: "3.root.json".into()
            }
        );
        assert_eq!(
            post("/tuf/fw/metadata"),
            Route::Tuf1Upload {
                repository: "fw".into()
            }
        );
        assert_eq!(
            get("/tuf/fw/keys"),
            Route::Tuf1Keys {
                repository: "fw".into(),
                create: false
            }
        );
        assert_eq!(
            post("/tuf/fw/keys"),
            Route::Tuf1Keys {
                repository: "fw".into(),
                create: true
            }
        );
        for (m, p) in [
            (Method::GET, "/tuf"),
            (Method::GET, "/tuf/fw"),
            (Method::GET, "/tuf/fw/metadata"),
            (Method::GET, "/tuf/fw/metadata/"),
            (Method::GET, "/tuf/fw/metadata/a/b.json"),
            (Method::POST, "/tuf/fw/metadata/"),
            (Method::POST, "/tuf/"),
            (Method::DELETE, "/tuf/fw/metadata"),
            (Method::PUT, "/tuf/fw/keys"),
            (Method::GET, "/tuf/fw/keys/timestamp"),
            (Method::POST, "/tuf/fw/keys/targets"),
        ] {
            assert_eq!(parse(&m, p), Route::NotFound, "{m} {p}");
        }
        assert_eq!(
            post("/tuf/fw/keys/timestamp"),
            Route::Tuf1RotateKey {
                repository: "fw".into(),
                role: KeyRole::Timestamp
            }
        );
        // A repository is never a GUN: the prefix filter and Notary's scopes do not see it.
        assert_eq!(post("/tuf/fw/metadata").gun(), None);
        assert_eq!(post("/tuf/fw/metadata").repository(), Some("fw"));
    }

    const SUM: &str = "78ef50942a62194c0dea5c8eb002a2bdefb891450d3fb38947606f6b2b8028af";

    fn get(path: &str) -> Route {
        parse(&Method::GET, path)
    }

    fn meta(gun: &str, role: &str, selector: MetadataSelector) -> Route {
        Route::GetMetadata {
            gun: gun.into(),
            role: role.into(),
            role_valid: true,
            selector,
        }
    }

    #[test]
    fn fixed_routes() {
        assert_eq!(get("/v2/"), Route::Ping);
        assert_eq!(get("/_notary_server/health"), Route::Health);
        assert_eq!(get("/metrics"), Route::Metrics);
        assert_eq!(get("/_seal/ready"), Route::Ready);
        assert_eq!(get("/v2/_trust/changefeed"), Route::Changefeed { gun: None });
        assert_eq!(
            get("/v2/example.com/a/_trust/changefeed"),
            Route::Changefeed {
                gun: Some("example.com/a".into())
            }
        );
        assert_eq!(get("/nonexistent"), Route::NotFound);
        assert_eq!(get("/v2"), Route::NotFound);
        assert_eq!(parse(&Method::POST, "/v2/"), Route::NotFound);
    }

    #[test]
    fn metadata_routes() {
        let g = "example.com/interop/app";
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/root.json")),
            meta(g, "root", MetadataSelector::Current)
        );
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/snapshot.{SUM}.json")),
            meta(g, "snapshot", MetadataSelector::Checksum(SUM.into()))
        );
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/targets/releases.{SUM}.json")),
            meta(g, "targets/releases", MetadataSelector::Checksum(SUM.into()))
        );
        let sha512 = "ab".repeat(64);
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/root.{sha512}.json")),
            meta(g, "root", MetadataSelector::Checksum(sha512.clone()))
        );
        let sha384 = "cd".repeat(48);
        assert!(matches!(
            get(&format!("/v2/{g}/_trust/tuf/root.{sha384}.json")),
            Route::GetMetadata {
                selector: MetadataSelector::Checksum(_),
                ..
            }
        ));
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/3.root.json")),
            meta(g, "root", MetadataSelector::Version(Some(3)))
        );
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/12.targets/releases.json")),
            meta(g, "targets/releases", MetadataSelector::Version(Some(12)))
        );
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/99999999999999999999999.root.json")),
            meta(g, "root", MetadataSelector::Version(None))
        );
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/targets/a/b.json")),
            meta(g, "targets/a/b", MetadataSelector::Current)
        );
        // Shape accepted by the router, but not a valid role: routed, marked.
        assert_eq!(
            get(&format!("/v2/{g}/_trust/tuf/targets/A.json")),
            Route::GetMetadata {
                gun: g.into(),
                role: "targets/A".into(),
                role_valid: false,
                selector: MetadataSelector::Current
            }
        );
        // Not a role at all: catch-all.
        assert_eq!(get(&format!("/v2/{g}/_trust/tuf/bogus.json")), Route::NotFound);
        assert_eq!(get(&format!("/v2/{g}/_trust/tuf/root")), Route::NotFound);
        assert_eq!(get(&format!("/v2/{g}/_trust/tuf/targets/.json")), Route::NotFound);
        // A short checksum is not a checksum.
        assert_eq!(get(&format!("/v2/{g}/_trust/tuf/root.abc.json")), Route::NotFound);
    }

    #[test]
    fn write_and_key_routes() {
        let g = "example.com/a";
        let p = format!("/v2/{g}/_trust/tuf/");
        assert_eq!(parse(&Method::POST, &p), Route::Publish { gun: g.into() });
        assert_eq!(parse(&Method::DELETE, &p), Route::DeleteGun { gun: g.into() });
        assert_eq!(parse(&Method::GET, &p), Route::NotFound);
        assert_eq!(
            get(&format!("{p}timestamp.key")),
            Route::GetKey {
                gun: g.into(),
                role: KeyRole::Timestamp
            }
        );
        assert_eq!(
            parse(&Method::POST, &format!("{p}snapshot.key")),
            Route::RotateKey {
                gun: g.into(),
                role: KeyRole::Snapshot
            }
        );
        assert_eq!(get(&format!("{p}root.key")), Route::NotFound);
        assert_eq!(parse(&Method::PUT, &format!("{p}root.json")), Route::NotFound);
        assert_eq!(parse(&Method::POST, &format!("{p}root.json")), Route::NotFound);
    }

    #[test]
    fn guns_with_odd_characters() {
        assert_eq!(parse(&Method::POST, "/v2/a*b/_trust/tuf/"), Route::NotFound);
        assert_eq!(parse(&Method::POST, "/v2//_trust/tuf/"), Route::NotFound);
        assert_eq!(
            parse(&Method::POST, "/v2/x/_trust/tuf/y/_trust/tuf/"),
            Route::Publish {
                gun: "x/_trust/tuf/y".into()
            }
        );
        assert_eq!(get("/v2/x/_trust/tuf/root.json").gun(), Some("x"),);
    }

    #[test]
    fn prefixes() {
        assert!(gun_allowed(&[], "anything"));
        let p = vec!["docker.io/".to_string()];
        assert!(gun_allowed(&p, "docker.io/library/x"));
        assert!(!gun_allowed(&p, "quay.io/x"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No path, however odd, makes the parser panic; a parsed GUN is
        /// always one the router accepts.
        #[test]
        fn parse_never_panics(path in "(/v2/)?[a-z0-9/._*%-]{0,80}(/_trust/(tuf/|changefeed))?[a-z0-9/._-]{0,80}",
                              m in 0usize..5) {
            let method = [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::HEAD][m].clone();
            let route = parse(&method, &path);
            if let Some(gun) = route.gun() {
                prop_assert!(valid_gun(gun));
            }
            if let Route::GetMetadata { role, role_valid, .. } = &route {
                prop_assert_eq!(*role_valid, is_valid_role(role));
            }
        }

        #[test]
        fn valid_role_never_panics(role in "\\PC{0,300}") {
            let _ = is_valid_role(&role);
        }
    }
}
