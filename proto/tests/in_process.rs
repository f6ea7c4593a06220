//! End to end over loopback: a tonic server built from the generated `KeyManagement` and `Signer`
//! traits (with toy key handling) and the `grpc.health.v1.Health` service, called through the
//! generated clients and through raw calls on Notary's method paths.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use seal_proto::health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
use seal_proto::signer::key_management_client::KeyManagementClient;
use seal_proto::signer::key_management_server::{KeyManagement, KeyManagementServer};
use seal_proto::signer::signer_client::SignerClient;
use seal_proto::signer::signer_server::{Signer, SignerServer};
use seal_proto::signer::{
    Algorithm, CreateKeyRequest, GetKeyInfoResponse, KeyId, KeyInfo, PublicKey, Signature, SignatureRequest, Void,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

/// A key the toy signer holds: its algorithm, role and "public key".
#[derive(Clone)]
struct ToyKey {
    algorithm: String,
    role: String,
    public: Vec<u8>,
}

/// Toy key store shared by both services: key IDs are counters, public keys are the GUN's bytes,
/// and a "signature" is the content reversed.
#[derive(Clone, Default)]
struct Toy {
    keys: Arc<Mutex<HashMap<String, ToyKey>>>,
}

impl Toy {
    fn key(&self, id: Option<&KeyId>) -> Result<(String, ToyKey), Status> {
        let id = id.map(|k| k.id.clone()).unwrap_or_default();
        let keys = self.keys.lock().expect("lock");
        let key = keys
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("key {id} not found")))?;
        Ok((id, key))
    }
}

fn info(id: &str, algorithm: &str) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId { id: id.to_owned() }),
        algorithm: Some(Algorithm {
            algorithm: algorithm.to_owned(),
        }),
    }
}

#[tonic::async_trait]
impl KeyManagement for Toy {
    async fn create_key(&self, request: Request<CreateKeyRequest>) -> Result<Response<PublicKey>, Status> {
        let req = request.into_inner();
        if req.algorithm != "ecdsa" && req.algorithm != "ed25519" {
            return Err(Status::unknown(format!(
                "algorithm {} not supported for create key",
                req.algorithm
            )));
        }
        let mut keys = self.keys.lock().expect("lock");
        let id = format!("key-{}", keys.len() + 1);
        let key = ToyKey {
            algorithm: req.algorithm,
            role: req.role,
            public: req.gun.into_bytes(),
        };
        keys.insert(id.clone(), key.clone());
        Ok(Response::new(PublicKey {
            key_info: Some(info(&id, &key.algorithm)),
            public_key: key.public,
        }))
    }

    async fn delete_key(&self, request: Request<KeyId>) -> Result<Response<Void>, Status> {
        self.keys.lock().expect("lock").remove(&request.into_inner().id);
        Ok(Response::new(Void {}))
    }

    async fn get_key_info(&self, request: Request<KeyId>) -> Result<Response<GetKeyInfoResponse>, Status> {
        let (id, key) = self.key(Some(request.get_ref()))?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(info(&id, &key.algorithm)),
            public_key: key.public,
            role: key.role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for Toy {
    async fn sign(&self, request: Request<SignatureRequest>) -> Result<Response<Signature>, Status> {
        let req = request.into_inner();
        let (id, key) = self.key(req.key_id.as_ref())?;
        let method = if key.algorithm == "ed25519" { "eddsa" } else { "ecdsa" };
        let mut content = req.content;
        content.reverse();
        Ok(Response::new(Signature {
            key_info: Some(info(&id, &key.algorithm)),
            algorithm: Some(Algorithm {
                algorithm: method.to_owned(),
            }),
            content,
        }))
    }
}

/// Serves the toy signer and the health service on 127.0.0.1:0 until the returned sender is
/// dropped or fired.
async fn serve() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let toy = Toy::default();
    let (_reporter, health) = seal_proto::signer_health_reporter().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .add_service(KeyManagementServer::new(toy.clone()))
        .add_service(SignerServer::new(toy))
        .add_service(health)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = stopped.await;
        });
    let task = tokio::spawn(async move { server.await.expect("server runs") });
    (addr, stop, task)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn generated_clients_talk_to_generated_servers() {
    let (addr, stop, task) = serve().await;
    let channel = channel(addr).await;
    let mut km = KeyManagementClient::new(channel.clone());
    let mut signer = SignerClient::new(channel);

    let created = km
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "g".into(),
            role: "timestamp".into(),
        })
        .await
        .expect("create key")
        .into_inner();
    assert_eq!(
        created,
        PublicKey {
            key_info: Some(info("key-1", "ecdsa")),
            public_key: b"g".to_vec()
        }
    );

    let err = km
        .create_key(CreateKeyRequest {
            algorithm: "rsa".into(),
            gun: "g".into(),
            role: "snapshot".into(),
        })
        .await
        .expect_err("rsa is refused");
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(err.message(), "algorithm rsa not supported for create key");

    let looked_up = km
        .get_key_info(KeyId { id: "key-1".into() })
        .await
        .expect("key info")
        .into_inner();
    assert_eq!(
        looked_up,
        GetKeyInfoResponse {
            key_info: Some(info("key-1", "ecdsa")),
            public_key: b"g".to_vec(),
            role: "timestamp".into()
        }
    );

    let sig = signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: "key-1".into() }),
            content: b"abc".to_vec(),
            named: Default::default(),
        })
        .await
        .expect("sign")
        .into_inner();
    assert_eq!(
        sig,
        Signature {
            key_info: Some(info("key-1", "ecdsa")),
            algorithm: Some(Algorithm {
                algorithm: "ecdsa".into()
            }),
            content: b"cba".to_vec(),
        }
    );

    assert_eq!(
        km.delete_key(KeyId { id: "key-1".into() })
            .await
            .expect("delete")
            .into_inner(),
        Void {}
    );
    let err = km
        .get_key_info(KeyId { id: "key-1".into() })
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "key key-1 not found");
    let err = signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: "key-1".into() }),
            content: b"abc".to_vec(),
            named: Default::default(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);

    stop.send(()).expect("server still running");
    task.await.expect("server task");
}

/// Calls the server on the literal method paths a Notary client uses, without the generated
/// clients, so a renamed package, service or method fails here.
#[tokio::test]
async fn notary_method_paths_are_served() {
    let (addr, stop, task) = serve().await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);

    async fn call<Req, Resp>(
        grpc: &mut tonic::client::Grpc<Channel>,
        path: &'static str,
        req: Req,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        Ok(grpc
            .unary(Request::new(req), PathAndQuery::from_static(path), codec)
            .await?
            .into_inner())
    }

    let created: PublicKey = call(
        &mut grpc,
        "/proto.KeyManagement/CreateKey",
        CreateKeyRequest {
            algorithm: "ed25519".into(),
            gun: "h".into(),
            role: "snapshot".into(),
        },
    )
    .await
    .expect("CreateKey");
    assert_eq!(created.key_info, Some(info("key-1", "ed25519")));

    let got: GetKeyInfoResponse = call(
        &mut grpc,
        "/proto.KeyManagement/GetKeyInfo",
        KeyId { id: "key-1".into() },
    )
    .await
    .expect("GetKeyInfo");
    assert_eq!(got.role, "snapshot");

    let sig: Signature = call(
        &mut grpc,
        "/proto.Signer/Sign",
        SignatureRequest {
            key_id: Some(KeyId { id: "key-1".into() }),
            content: b"xy".to_vec(),
            named: Default::default(),
        },
    )
    .await
    .expect("Sign");
    assert_eq!(
        sig.algorithm,
        Some(Algorithm {
            algorithm: "eddsa".into()
        })
    );
    assert_eq!(sig.content, b"yx");

    let _: Void = call(
        &mut grpc,
        "/proto.KeyManagement/DeleteKey",
        KeyId { id: "key-1".into() },
    )
    .await
    .expect("DeleteKey");

    let err = call::<KeyId, Void>(&mut grpc, "/seal.KeyManagement/DeleteKey", KeyId::default())
        .await
        .expect_err("another package is not served");
    assert_eq!(err.code(), Code::Unimplemented);

    stop.send(()).expect("server still running");
    task.await.expect("server task");
}

/// The health service answers like notary-signer's: both signer names and the empty name are
/// SERVING, Notary's client-side "Overall" name is unknown.
#[tokio::test]
async fn health_service_reports_notary_names() {
    let (addr, stop, task) = serve().await;
    let mut health = HealthClient::new(channel(addr).await);

    for name in seal_proto::HEALTH_SERVICES.iter().copied().chain([""]) {
        let resp = health
            .check(HealthCheckRequest {
                service: name.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("check {name:?}: {e}"))
            .into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "{name:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: seal_proto::HEALTH_CHECK_OVERALL.to_owned(),
        })
        .await
        .expect_err("Overall is not registered");
    assert_eq!(err.code(), Code::NotFound);

    stop.send(()).expect("server still running");
    task.await.expect("server task");
}
