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
use crate::policy::Claimed;
use crate::store::KeyRecord;
use crate::tls::AllowedNames;
use crate::wire::{backend_unavailable, refusal_status, GUN_HEADER, ROLE_HEADER};

fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId { id: r.key_id.clone() }),
        algorithm: Some(PbAlgorithm {
            algorithm: r.algorithm.clone(),
        }),
    }
}

impl From<Error> for Status {
    /// notary-signer's codes: an unknown key is `NotFound`, an unsupported
    /// algorithm `Unknown`, a policy refusal `FailedPrecondition` (with the
    /// high-water mark in `x-seal-high-water`), a backend that cannot sign
    /// now `Unavailable` marked with `x-seal-unavailable`, anything else
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
pub struct KeyManagementService {
    core: Arc<SignerCore>,
    // Who may call DeleteKey (`server.admin_client_names`); empty: nobody.
    admins: AllowedNames,
}

impl KeyManagementService {
    /// The service over `core`, letting the certificates carrying one of
    /// `admins` delete keys.
    pub fn new(core: Arc<SignerCore>, admins: AllowedNames) -> KeyManagementService {
        KeyManagementService { core, admins }
    }
}

/// The `Signer` service.
#[derive(Clone)]
pub struct SignerService(pub Arc<SignerCore>);

#[tonic::async_trait]
impl KeyManagement for KeyManagementService {
    async fn create_key(&self, request: Request<CreateKeyRequest>) -> Result<Response<PbPublicKey>, Status> {
        let req = request.into_inner();
        let record = self.core.create_key(&req.algorithm, &req.gun, &req.role).await?;
        Ok(Response::new(PbPublicKey {
            key_info: Some(key_info(&record)),
            public_key: record.public,
        }))
    }

    async fn delete_key(&self, request: Request<KeyId>) -> Result<Response<Void>, Status> {
        // Server nodes never delete keys: a compromised node must not be able
        // to destroy every server-held key (and threshold high-water marks).
        let admin = !self.admins.0.is_empty() && self.admins.check_request(&request).is_ok();
        if !admin {
            self.core.metrics().refused("delete_key_not_admin");
            tracing::warn!("DeleteKey refused: the caller is not in server.admin_client_names");
            return Err(Error::PermissionDenied(
                "DeleteKey is only for the certificates named in the signer's server.admin_client_names".to_owned(),
            )
            .into());
        }
        self.core.delete_key(&request.into_inner().id).await?;
        Ok(Response::new(Void {}))
    }

    async fn get_key_info(&self, request: Request<KeyId>) -> Result<Response<GetKeyInfoResponse>, Status> {
        let record = self.core.key(&request.into_inner().id)?;
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
