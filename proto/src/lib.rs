//! seal-proto: Seal's gRPC interfaces, as `.proto` files and the tonic code generated from them.
//!
//! It holds the signer API, the threshold peer API between signers, the Raft transport and
//! cluster administration.
//!
//! * [`signer`]: the signer API of notary-signer v0.7 (`signer.proto`, protobuf package `proto`),
//!   byte-compatible with Notary so that a Notary server can use a Seal signer and a Seal node can
//!   use a notary-signer. Services `proto.KeyManagement` (`CreateKey`, `DeleteKey`, `GetKeyInfo`)
//!   and `proto.Signer` (`Sign`); the generated servers are in `signer::key_management_server` and
//!   `signer::signer_server`, the clients in `signer::key_management_client` and
//!   `signer::signer_client`, the messages (`CreateKeyRequest`, `PublicKey`, `KeyId`, ...) at
//!   `signer::*`.
//! * [`raft`]: the transport between the Raft nodes of one cluster (`raft.proto`, protobuf package
//!   `seal.raft.v1`): service `seal.raft.v1.Raft` with `AppendEntries`, `Vote`,
//!   `InstallSnapshot` (one call per snapshot chunk) and `InstallSnapshotStream` (a snapshot's
//!   chunks in one call, each chunk's bytes beside its request). The messages frame openraft's own requests and
//!   responses, encoded by `seal-raft` (see [`raft::PayloadFormat`]); the server is
//!   `raft::raft_server`, the client `raft::raft_client`. The same file declares the cluster admin
//!   service `seal.raft.v1.ClusterAdmin` and the write-forwarding service `seal.raft.v1.Forwarding`.
//! * [`threshold`]: the peer protocol between threshold-configured signers (`threshold.proto`,
//!   package `seal.threshold.v1`): FROST DKG and signing rounds carrying frost-ed25519's
//!   serialized packages.
//! * [`health`]: the standard `grpc.health.v1.Health` service (a re-export of `tonic-health`),
//!   and [`HEALTH_SERVICES`]: the service names a Notary-compatible signer reports under it.
//! * [`peer`]: allow-lists of the names in a peer's certificate; [`listen`]: the bounded accept
//!   loop (connection cap, accept errors retried with backoff) the Raft port and the signer share.
//!
//! # Health service names
//!
//! notary-signer v0.7 (`cmd/notary-signer/config.go`, `setupGRPCServer`) registers
//! `grpc.health.v1.Health` and sets two service names to `SERVING`, both defined in Notary's
//! `const.go`: [`HEALTH_SERVICE_KEY_MANAGEMENT`] (`"grpc.health.v1.Health.KeyManagement"`) and
//! [`HEALTH_SERVICE_SIGNER`] (`"grpc.health.v1.Health.Signer"`). Notary's health server also
//! answers `SERVING` for the empty name (the whole server) and `NotFound` for any other name.
//!
//! notary-server (`signer/client/signer_trust.go`, `NotarySigner::CheckHealth`) probes those two
//! names; it also knows [`HEALTH_CHECK_OVERALL`] (`"grpc.health.v1.Health.Overall"`), but only as
//! a client-side shorthand for "check both": no signer registers it, and a signer asked for it
//! answers `NotFound`. [`signer_health_reporter`] builds a health service that behaves the same.
//!
//! # Behaviour notary-signer shows on the wire (for implementers)
//!
//! * `CreateKey` with an algorithm the signer does not support fails with code `Unknown`; a
//!   failed key creation with `Internal`.
//! * `GetKeyInfo` and `Sign` for an unknown key ID fail with `NotFound`; other failures with
//!   `Internal`.
//! * `Sign` gets the canonical JSON bytes to sign in `content` and hashes them itself; the answer
//!   carries the key's ID and key algorithm in `key_info` and the signature method (`ecdsa`,
//!   `eddsa`, `rsapss`) in `algorithm`.
//! * The transport is TLS, with mutual TLS when the signer is given a client CA; the generated
//!   code here is transport-agnostic and the TLS setup lives in `seal-signer` and `seal-node`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod listen;
pub mod peer;

pub mod signer {
    //! Notary-signer v0.7 signer API (protobuf package `proto`), generated from `signer.proto`.
    //!
    //! The full method paths are `/proto.KeyManagement/CreateKey`, `/proto.KeyManagement/DeleteKey`,
    //! `/proto.KeyManagement/GetKeyInfo` and `/proto.Signer/Sign`. Protobuf names are turned into
    //! Rust ones by prost: message `KeyID` is [`KeyId`], fields `keyID`, `ID` and `publicKey` are
    //! `key_id`, `id` and `public_key`.
    // Generated: what is documented is documented in the .proto file.
    #![allow(missing_docs)]
    tonic::include_proto!("proto");
}

pub mod raft {
    //! Seal's Raft transport (protobuf package `seal.raft.v1`), generated from `raft.proto`.
    //!
    //! The full method paths are `/seal.raft.v1.Raft/AppendEntries`, `/seal.raft.v1.Raft/Vote` and
    //! `/seal.raft.v1.Raft/InstallSnapshot`. Every call carries a [`RaftRequest`] (the encoded
    //! openraft request, its [`PayloadFormat`], the target node id and the sender's) and answers a
    //! [`RaftReply`] holding either the encoded response or the encoded Raft error.
    //!
    //! The same package holds the cluster's administration service `seal.raft.v1.ClusterAdmin`
    //! (`Init`, `AddLearner`, `Promote`, `Remove`, `Status`; server `cluster_admin_server`, client
    //! `cluster_admin_client`) and `seal.raft.v1.Forwarding` (`Forward`: a client's HTTP request
    //! sent from a follower to the leader; `forwarding_server`, `forwarding_client`), both served on
    //! the Raft port.
    // Generated: what is documented is documented in the .proto file.
    #![allow(missing_docs)]
    tonic::include_proto!("seal.raft.v1");
}

pub mod threshold {
    //! Seal's threshold peer protocol (protobuf package `seal.threshold.v1`), generated from
    //! `threshold.proto`: service `seal.threshold.v1.ThresholdPeer` between seal-signer nodes
    //! (FROST DKG rounds, signing rounds 1 and 2, status). The server is
    //! `threshold::threshold_peer_server`, the client `threshold::threshold_peer_client`.
    // Generated: what is documented is documented in the .proto file.
    #![allow(missing_docs)]
    tonic::include_proto!("seal.threshold.v1");
}

/// The standard `grpc.health.v1.Health` service (server, client and messages): `tonic-health`.
pub use tonic_health as health;

/// Health service name under which a signer reports its `KeyManagement` service (Notary's
/// `HealthCheckKeyManagement`).
pub const HEALTH_SERVICE_KEY_MANAGEMENT: &str = "grpc.health.v1.Health.KeyManagement";

/// Health service name under which a signer reports its `Signer` service (Notary's
/// `HealthCheckSigner`).
pub const HEALTH_SERVICE_SIGNER: &str = "grpc.health.v1.Health.Signer";

/// Every health service name a Notary-compatible signer registers and sets to `SERVING`.
pub const HEALTH_SERVICES: &[&str] = &[HEALTH_SERVICE_KEY_MANAGEMENT, HEALTH_SERVICE_SIGNER];

/// Notary's client-side name for "check every signer service"; never registered by a signer, so a
/// `Check` for it answers `NotFound` (Notary's `HealthCheckOverall`).
pub const HEALTH_CHECK_OVERALL: &str = "grpc.health.v1.Health.Overall";

/// A health service set up as notary-signer sets up its own: the empty name and every name in
/// [`HEALTH_SERVICES`] are `SERVING`; the reporter changes their status later (for example to
/// `NOT_SERVING` while the key store is unavailable).
pub async fn signer_health_reporter() -> (
    health::server::HealthReporter,
    health::pb::health_server::HealthServer<impl health::pb::health_server::Health>,
) {
    let (reporter, service) = health::server::health_reporter();
    for name in HEALTH_SERVICES {
        reporter.set_service_status(*name, health::ServingStatus::Serving).await;
    }
    (reporter, service)
}

#[cfg(test)]
mod tests {
    use super::signer::*;
    use prost::Message;

    fn key_info(id: &str, algorithm: &str) -> KeyInfo {
        KeyInfo {
            key_id: Some(KeyId { id: id.to_owned() }),
            algorithm: Some(Algorithm {
                algorithm: algorithm.to_owned(),
            }),
        }
    }

    /// Encodes `msg`, checks the bytes, and decodes them back to an equal message.
    fn check<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
        let bytes = msg.encode_to_vec();
        assert_eq!(bytes, expected, "encoding of {msg:?}");
        assert_eq!(&M::decode(bytes.as_slice()).expect("decodes"), msg);
    }

    // Every expected byte string below is written by hand from the field numbers and wire types of
    // notary-signer v0.7's proto/signer.proto: a key byte is (field number << 3) | wire type, wire
    // type 2 (length-delimited) for strings, bytes and embedded messages. A renumbered field or a
    // changed type fails here.

    #[test]
    fn create_key_request_bytes() {
        let msg = CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "g".into(),
            role: "timestamp".into(),
        };
        let mut expected = vec![0x0a, 5];
        expected.extend_from_slice(b"ecdsa");
        expected.extend_from_slice(&[0x12, 1, b'g', 0x1a, 9]);
        expected.extend_from_slice(b"timestamp");
        check(&msg, &expected);
    }

    #[test]
    fn signature_request_bytes() {
        let msg = SignatureRequest {
            key_id: Some(KeyId { id: "abc".into() }),
            content: b"{}".to_vec(),
            named: Default::default(),
        };
        // keyID = 1 (message holding ID = 1), content = 2.
        check(&msg, &[0x0a, 5, 0x0a, 3, b'a', b'b', b'c', 0x12, 2, b'{', b'}']);
    }

    #[test]
    fn key_id_and_algorithm_bytes() {
        check(&KeyId { id: "k".into() }, &[0x0a, 1, b'k']);
        check(
            &Algorithm {
                algorithm: "ed25519".into(),
            },
            b"\x0a\x07ed25519",
        );
    }

    #[test]
    fn key_info_bytes() {
        // keyID = 1, algorithm = 2.
        check(&key_info("k", "ecdsa"), b"\x0a\x03\x0a\x01k\x12\x07\x0a\x05ecdsa");
    }

    #[test]
    fn public_key_bytes() {
        let msg = PublicKey {
            key_info: Some(key_info("k", "ecdsa")),
            public_key: vec![0xde, 0xad],
        };
        // keyInfo = 1 (the 14 bytes of key_info_bytes), publicKey = 2.
        check(&msg, b"\x0a\x0e\x0a\x03\x0a\x01k\x12\x07\x0a\x05ecdsa\x12\x02\xde\xad");
    }

    #[test]
    fn get_key_info_response_bytes() {
        let msg = GetKeyInfoResponse {
            key_info: Some(key_info("k", "ecdsa")),
            public_key: vec![0xde, 0xad],
            role: "snapshot".into(),
        };
        // keyInfo = 1, publicKey = 2, role = 3.
        check(
            &msg,
            b"\x0a\x0e\x0a\x03\x0a\x01k\x12\x07\x0a\x05ecdsa\x12\x02\xde\xad\x1a\x08snapshot",
        );
    }

    #[test]
    fn signature_bytes() {
        let msg = Signature {
            key_info: Some(key_info("k", "ed25519")),
            algorithm: Some(Algorithm {
                algorithm: "eddsa".into(),
            }),
            content: vec![1, 2, 3],
        };
        // keyInfo = 1 (16 bytes), algorithm = 2, content = 3.
        check(
            &msg,
            b"\x0a\x10\x0a\x03\x0a\x01k\x12\x09\x0a\x07ed25519\x12\x07\x0a\x05eddsa\x1a\x03\x01\x02\x03",
        );
    }

    #[test]
    fn void_is_empty() {
        check(&Void {}, &[]);
    }

    #[test]
    fn defaults_encode_to_nothing() {
        // proto3: a field holding its default value is not sent, exactly as Go's protobuf does.
        check(&CreateKeyRequest::default(), &[]);
        check(&SignatureRequest::default(), &[]);
        check(&Signature::default(), &[]);
        check(&GetKeyInfoResponse::default(), &[]);
        check(&PublicKey::default(), &[]);
        check(&KeyInfo::default(), &[]);
    }

    #[test]
    fn round_trip_every_message() {
        fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: M) {
            let bytes = msg.encode_to_vec();
            assert_eq!(M::decode(bytes.as_slice()).expect("decodes"), msg);
        }
        round_trip(CreateKeyRequest {
            algorithm: "ed25519".into(),
            gun: "docker.io/library/x".into(),
            role: "snapshot".into(),
        });
        round_trip(key_info("0123abcd", "ecdsa"));
        round_trip(KeyId { id: "0123abcd".into() });
        round_trip(Algorithm {
            algorithm: "ecdsa".into(),
        });
        round_trip(GetKeyInfoResponse {
            key_info: Some(key_info("a", "ecdsa")),
            public_key: vec![4; 65],
            role: "timestamp".into(),
        });
        round_trip(PublicKey {
            key_info: Some(key_info("a", "ed25519")),
            public_key: vec![7; 32],
        });
        round_trip(Signature {
            key_info: Some(key_info("a", "ecdsa")),
            algorithm: Some(Algorithm {
                algorithm: "ecdsa".into(),
            }),
            content: vec![9; 64],
        });
        round_trip(SignatureRequest {
            key_id: Some(KeyId { id: "a".into() }),
            content: br#"{"_type":"timestamp"}"#.to_vec(),
            named: [("snapshot".to_owned(), b"{}".to_vec())].into(),
        });
        round_trip(Void {});
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // A newer peer may add fields; an old decoder must skip them, as Go's does.
        let mut bytes = KeyId { id: "k".into() }.encode_to_vec();
        bytes.extend_from_slice(&[0x7a, 2, b'x', b'y']); // field 15, length-delimited
        assert_eq!(
            KeyId::decode(bytes.as_slice()).expect("decodes"),
            KeyId { id: "k".into() }
        );
    }

    #[test]
    fn service_names_match_notary() {
        use tonic::server::NamedService;
        assert_eq!(key_management_server::SERVICE_NAME, "proto.KeyManagement");
        assert_eq!(signer_server::SERVICE_NAME, "proto.Signer");
        assert_eq!(
            <signer_server::SignerServer<()> as NamedService>::NAME,
            "proto.Signer",
            "the name tonic routes on"
        );
    }

    #[test]
    fn raft_service_name_and_message_bytes() {
        use super::raft::{raft_reply, raft_server, PayloadFormat, RaftReply, RaftRequest};
        use tonic::server::NamedService;
        assert_eq!(raft_server::SERVICE_NAME, "seal.raft.v1.Raft");
        assert_eq!(<raft_server::RaftServer<()> as NamedService>::NAME, "seal.raft.v1.Raft");
        // payload = 1 (bytes), format = 2, target = 3, sender = 4 (varints).
        check(
            &RaftRequest {
                payload: vec![7, 8],
                format: PayloadFormat::PostcardOpenraftV09 as i32,
                target: 2,
                sender: 300,
                chunk: Vec::new(),
            },
            &[0x0a, 2, 7, 8, 0x10, 1, 0x18, 2, 0x20, 0xac, 0x02],
        );
        // A snapshot chunk's bytes beside the request: chunk = 5 (bytes), format 2.
        check(
            &RaftRequest {
                payload: vec![7],
                format: PayloadFormat::PostcardOpenraftV09ChunkApart as i32,
                target: 2,
                sender: 3,
                chunk: vec![5, 6],
            },
            &[0x0a, 1, 7, 0x10, 2, 0x18, 2, 0x20, 3, 0x2a, 2, 5, 6],
        );
        // The reply's oneof: ok = 1, error = 2; a member is sent even when empty.
        check(
            &RaftReply {
                result: Some(raft_reply::Result::Ok(vec![1])),
            },
            &[0x0a, 1, 1],
        );
        check(
            &RaftReply {
                result: Some(raft_reply::Result::Error(Vec::new())),
            },
            &[0x12, 0],
        );
        // An unset format decodes as unspecified, which a receiver refuses.
        assert_eq!(RaftRequest::default().format(), PayloadFormat::Unspecified);
    }

    #[test]
    fn health_names_match_notary() {
        assert_eq!(
            super::HEALTH_SERVICES,
            &["grpc.health.v1.Health.KeyManagement", "grpc.health.v1.Health.Signer"]
        );
        assert!(!super::HEALTH_SERVICES.contains(&super::HEALTH_CHECK_OVERALL));
    }
}
