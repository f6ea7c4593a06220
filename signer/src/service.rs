//! The gRPC edge of the signer core, Notary-signer compatible:
//! `KeyManagement` (`CreateKey`, `DeleteKey`, `GetKeyInfo`) and `Signer`
//! (`Sign`); the one place a signer [`Error`] becomes a `tonic::Status`.
//!
//! Status codes follow notary-signer: an unknown key is `NotFound`, an
//! unsupported algorithm `Unknown`, other failures `Internal`. A policy
//! refusal is `FailedPrecondition` with the reason in the message; the
//! high-water mark is in the `x-seal-high-water` response metadata so an
//! honest node can skip a version that was signed but never committed.

use std::sync::Arc;

use seal_proto::signer::{
    key_management_server::KeyManagement, signer_server::Signer, Algorithm as PbAlgorithm, CreateKeyRequest,
    GetKeyInfoResponse, KeyId, KeyInfo, PublicKey as PbPublicKey, Signature as PbSignature, SignatureRequest, Void,
};
use tonic::{Request, Response, Status};

use crate::backend::BackendError;
use crate::core::SignerCore;
use crate::error::Error;
use crate::policy::{self, Claimed};
use crate::store::KeyRecord;

/// Request metadata a Seal node sends with `Sign`: the GUN it signs for.
pub const GUN_HEADER: &str = "x-seal-gun";
/// Request metadata a Seal node sends with `Sign`: the role it signs for.
pub const ROLE_HEADER: &str = "x-seal-role";
/// Response metadata on a `NotNewer` refusal: the last version signed.
pub const HIGH_WATER_HEADER: &str = "x-seal-high-water";
/// Response metadata on an `Unavailable` answer that this signer gave
/// itself (value `backend`): it is up, but its key backend cannot sign now
/// (an HSM gone, too few threshold peers). A node tries another signer but
/// does not count this one as down; a transport failure carries no such
/// metadata.
pub const UNAVAILABLE_HEADER: &str = "x-seal-unavailable";

/// `Unavailable` from the signer itself, marked with [`UNAVAILABLE_HEADER`].
pub(crate) fn backend_unavailable(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(
        UNAVAILABLE_HEADER,
        tonic::metadata::MetadataValue::from_static("backend"),
    );
    status
}

fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId { id: r.key_id.clone() }),
        algorithm: Some(PbAlgorithm {
            algorithm: r.algorithm.clone(),
        }),
    }
}

/// A policy refusal as the gRPC status Seal's signers answer with:
/// `FailedPrecondition`, with the high-water mark in [`HIGH_WATER_HEADER`]
/// for a version refusal.
pub(crate) fn refusal_status(refusal: &policy::Refusal) -> Status {
    let mut status = Status::failed_precondition(format!("signing policy: {refusal}"));
    if let policy::Refusal::NotNewer { high_water, .. } = refusal {
        if let Ok(v) = high_water.to_string().parse() {
            status.metadata_mut().insert(HIGH_WATER_HEADER, v);
        }
    }
    status
}

/// The high-water mark a refusal carries in [`HIGH_WATER_HEADER`], if any.
pub(crate) fn high_water_of(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(HIGH_WATER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl From<Error> for Status {
    /// notary-signer's codes: an unknown key is `NotFound`, an unsupported
    /// algorithm `Unknown`, a policy refusal `FailedPrecondition` (with the
    /// high-water mark in [`HIGH_WATER_HEADER`]), a backend that cannot sign
    /// now `Unavailable` marked with [`UNAVAILABLE_HEADER`], anything else
    /// `Internal`.
    fn from(e: Error) -> Status {
        match e {
            Error::KeyNotFound(_) => Status::not_found(e.to_string()),
            Error::UnsupportedAlgorithm(_) => Status::unknown(e.to_string()),
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::Refused(refusal) => refusal_status(&refusal),
            Error::Backend(BackendError::NotFound(m)) => Status::not_found(m),
            Error::Backend(BackendError::Unavailable(m)) => backend_unavailable(m),
            Error::Threshold(t) => t.into_status(),
            other => Status::internal(other.to_string()),
        }
    }
}

/// The `KeyManagement` service.
#[derive(Clone)]
pub struct KeyManagementService(pub Arc<SignerCore>);

/// The `Signer` service.
#[derive(Clone)]
pub struct SignerService(pub Arc<SignerCore>);

#[tonic::async_trait]
impl KeyManagement for KeyManagementService {
    async fn create_key(&self, request: Request<CreateKeyRequest>) -> Result<Response<PbPublicKey>, Status> {
        let req = request.into_inner();
        let record = self.0.create_key(&req.algorithm, &req.gun, &req.role).await?;
        Ok(Response::new(PbPublicKey {
            key_info: Some(key_info(&record)),
            public_key: record.public,
        }))
    }

    async fn delete_key(&self, request: Request<KeyId>) -> Result<Response<Void>, Status> {
        // Server nodes never delete keys: a compromised node must not be able
        // to destroy every server-held key (and threshold high-water marks).
        let admins = self.0.admins();
        let admin = !admins.0.is_empty() && admins.check_request(&request).is_ok();
        if !admin {
            self.0.metrics().refused("delete_key_not_admin");
            tracing::warn!("DeleteKey refused: the caller is not in server.admin_client_names");
            return Err(Error::PermissionDenied(
                "DeleteKey is only for the certificates named in the signer's server.admin_client_names".to_owned(),
            )
            .into());
        }
        self.0.delete_key(&request.into_inner().id).await?;
        Ok(Response::new(Void {}))
    }

    async fn get_key_info(&self, request: Request<KeyId>) -> Result<Response<GetKeyInfoResponse>, Status> {
        let record = self.0.key(&request.into_inner().id)?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info(&record)),
            public_key: record.public.clone(),
            role: record.role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for SignerService {
    async fn sign(&self, request: Request<SignatureRequest>) -> Result<Response<PbSignature>, Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut claimed = Claimed {
            gun: header(GUN_HEADER),
            role: header(ROLE_HEADER),
            named: Default::default(),
        };
        let req = request.into_inner();
        claimed.named = req.named.into_iter().collect();
        let id = req.key_id.map(|k| k.id).unwrap_or_default();
        let signed = self.0.sign(&id, &claimed, &req.content).await?;
        Ok(Response::new(PbSignature {
            key_info: Some(key_info(&signed.record)),
            algorithm: Some(PbAlgorithm {
                algorithm: signed.method.to_owned(),
            }),
            content: signed.signature,
        }))
    }
}
