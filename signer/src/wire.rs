//! What Seal adds to notary-signer's gRPC protocol on the wire, shared by
//! every edge that speaks it (the signer's services, the threshold peer
//! service, the client nodes use): the request metadata a node sends with
//! `Sign`, the response metadata a signer answers with, and the statuses
//! carrying them.

use tonic::Status;

use crate::policy;

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
pub fn backend_unavailable(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(
        UNAVAILABLE_HEADER,
        tonic::metadata::MetadataValue::from_static("backend"),
    );
    status
}

/// A policy refusal as the gRPC status Seal's signers answer with:
/// `FailedPrecondition`, with the high-water mark in [`HIGH_WATER_HEADER`]
/// for a version refusal.
pub fn refusal_status(refusal: &policy::Refusal) -> Status {
    let mut status = Status::failed_precondition(format!("signing policy: {refusal}"));
    if let policy::Refusal::NotNewer { high_water, .. } = refusal {
        if let Ok(v) = high_water.to_string().parse() {
            status.metadata_mut().insert(HIGH_WATER_HEADER, v);
        }
    }
    status
}

/// The high-water mark a refusal carries in [`HIGH_WATER_HEADER`], if any.
pub fn high_water_of(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(HIGH_WATER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
