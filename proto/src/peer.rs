//! Who is calling: the names in a peer's TLS certificate, and allow-lists of
//! them. Mutual TLS proves a peer holds a certificate the CA signed; an
//! allow-list narrows that to the peers of the right kind (a signer accepts
//! only server nodes; Raft accepts only cluster nodes) when the same CA also
//! signs certificates for other services.

use x509_cert::der::Decode as _;

/// Names a peer certificate must carry (its subject CN or a DNS subject
/// alternative name): exact, or a prefix ending in `*`. Empty allows every
/// certificate the CA signed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNames(pub Vec<String>);

impl AllowedNames {
    /// Whether the certificate `der` carries an allowed name.
    pub fn permits(&self, der: &[u8]) -> bool {
        self.0.is_empty() || certificate_names(der).iter().any(|n| self.permits_name(n))
    }

    /// Whether `name` is allowed.
    pub fn permits_name(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
    }

    /// Checks the leaf certificate a gRPC request came with (tonic keeps
    /// the peer's chain, leaf first); `Err` says why it is refused.
    pub fn check_request<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first());
        match leaf {
            Some(leaf) if self.permits(leaf.as_ref()) => Ok(()),
            Some(leaf) => Err(tonic::Status::permission_denied(format!(
                "peer certificate names {:?} are not on the allow-list",
                certificate_names(leaf.as_ref())
            ))),
            None => Err(tonic::Status::permission_denied("no peer certificate")),
        }
    }
}

const OID_CN: &str = "2.5.4.3";

/// A certificate's subject common names and DNS alternative names (empty
/// when it does not parse).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    let tbs = &cert.tbs_certificate;
    let mut names = Vec::new();
    for atv in tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        if atv.oid.to_string() == OID_CN {
            if let Ok(s) = std::str::from_utf8(atv.value.value()) {
                names.push(s.to_owned());
            }
        }
    }
    if let Ok(Some((_, san))) = tbs.get::<x509_cert::ext::pkix::SubjectAltName>() {
        for n in san.0 {
            if let x509_cert::ext::pkix::name::GeneralName::DnsName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, dns: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_are_the_cn_and_dns_alternative_names() {
        let der = cert("node-1", &["node-1.cluster.example", "127.0.0.1"]);
        assert_eq!(certificate_names(&der), ["node-1", "node-1.cluster.example"]);
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn allow_lists_match_exactly_or_by_prefix() {
        let node = cert("node-1", &["localhost"]);
        let frontend = cert("registry-frontend", &["localhost"]);
        let allow = AllowedNames(vec!["node-*".into(), "signer".into()]);
        assert!(allow.permits(&node));
        assert!(!allow.permits(&frontend));
        assert!(allow.permits_name("signer") && !allow.permits_name("signer2"));
        assert!(AllowedNames::default().permits(&frontend));
        assert!(!allow.permits(b"garbage"));
    }
}
