//! The one certificate helper of Seal's tests, seal-chaos and
//! `seal-node local-cluster`: a throw-away CA writing PEM files, whose
//! leaves work for mutual TLS between Seal's processes, and self-signed
//! server certificates.

use std::path::{Path, PathBuf};

/// A CA writing PEM files into a directory, and the leaves it signs.
pub struct TestPki {
    dir: PathBuf,
    name: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    /// A new CA named `name`; its certificate is `<dir>/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> TestPki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let pki = TestPki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca: rcgen::Issuer::new(params, key),
        };
        std::fs::create_dir_all(dir).expect("PKI directory");
        std::fs::write(pki.ca_file(), cert.pem()).expect("write CA");
        pki
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A leaf named `cn` for localhost and 127.0.0.1, usable as server and
    /// client; returns its certificate and key files (`<cn>.crt`, `<cn>.key`).
    pub fn leaf(&self, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let (c, k) = (self.dir.join(format!("{cn}.crt")), self.dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).expect("write leaf");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

/// A self-signed server certificate for `localhost`, as a node serving
/// HTTPS in a test uses it.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The certificate, DER (what a TLS client adds as its only root).
    pub der: Vec<u8>,
}

impl SelfSigned {
    /// A new certificate and key.
    pub fn localhost() -> SelfSigned {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed certificate");
        SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes the certificate and key to `cert` and `key`.
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write certificate");
        std::fs::write(key, &self.key_pem).expect("write key");
    }
}
