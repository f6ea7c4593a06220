//! What a route needs from a token ([`required_access`], Notary's scopes) and
//! how a challenge names it ([`scope_param`], [`ChallengeError`]).

use crate::error::AccessItem;
use crate::routes::Route;

/// The resource type of TUF 1.0 repositories in tokens (`tuf-repository:<name>:push`): a
/// grant on a Notary GUN never covers a repository of the same name.
pub const TUF1_RESOURCE: &str = "tuf-repository";

/// The access a route needs, in Notary's order (empty: no token needed).
pub fn required_access(route: &Route) -> Vec<AccessItem> {
    let item = |resource_type: &str, name: &str, action: &str| AccessItem {
        resource_type: resource_type.into(),
        name: name.into(),
        action: action.into(),
    };
    match route {
        Route::Ping | Route::Changefeed { gun: None } => vec![item("registry", "catalog", "*")],
        Route::GetMetadata { gun, .. } | Route::Changefeed { gun: Some(gun) } => {
            vec![item("repository", gun, "pull")]
        }
        Route::Publish { gun } | Route::GetKey { gun, .. } => {
            vec![item("repository", gun, "push"), item("repository", gun, "pull")]
        }
        Route::DeleteGun { gun } | Route::RotateKey { gun, .. } => vec![item("repository", gun, "*")],
        Route::Tuf1List => vec![item("registry", "catalog", "*")],
        Route::Tuf1Metadata { repository, .. }
        | Route::Tuf1Keys {
            repository,
            create: false,
        } => {
            vec![item(TUF1_RESOURCE, repository, "pull")]
        }
        Route::Tuf1Upload { repository } => vec![
            item(TUF1_RESOURCE, repository, "push"),
            item(TUF1_RESOURCE, repository, "pull"),
        ],
        Route::Tuf1Keys {
            repository,
            create: true,
        }
        | Route::Tuf1RotateKey { repository, .. } => vec![item(TUF1_RESOURCE, repository, "*")],
        Route::Health | Route::Metrics | Route::Ready | Route::NotFound => Vec::new(),
    }
}

/// The challenge's `scope` value: `type:name:action,action` per resource,
/// resources separated by spaces, in order of first appearance.
pub fn scope_param(access: &[AccessItem]) -> String {
    let mut resources: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for a in access {
        match resources
            .iter_mut()
            .find(|(t, n, _)| *t == a.resource_type && *n == a.name)
        {
            Some((_, _, actions)) => {
                if !actions.contains(&a.action.as_str()) {
                    actions.push(&a.action)
                }
            }
            None => resources.push((&a.resource_type, &a.name, vec![&a.action])),
        }
    }
    resources
        .iter()
        .map(|(t, n, actions)| format!("{t}:{n}:{}", actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error parameter of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No token was sent (no `error` parameter).
    TokenRequired,
    /// `error="invalid_token"`.
    InvalidToken,
    /// `error="insufficient_scope"`.
    InsufficientScope,
}
