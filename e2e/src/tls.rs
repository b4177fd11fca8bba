//! A throwaway certificate authority and server certificate for the gateway's HTTPS listener,
//! generated at start like the guide's `default-gateway-tls` secret.

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use std::path::{Path, PathBuf};

/// PEM files of a generated CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The server certificate chain (leaf).
    pub cert_chain: PathBuf,
    /// The server private key.
    pub private_key: PathBuf,
}

impl TlsFiles {
    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.ca_cert)?)
    }
}

/// Generates a CA and a certificate for `localhost`, `127.0.0.1` and `::1` into `dir`.
pub fn generate(dir: &Path) -> Result<TlsFiles> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "infergate local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "infergate gateway");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("::1".parse()?));
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    std::fs::create_dir_all(dir)?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert_chain: dir.join("gateway.pem"),
        private_key: dir.join("gateway-key.pem"),
    };
    std::fs::write(&files.ca_cert, ca.pem())?;
    std::fs::write(&files.cert_chain, leaf.pem())?;
    std::fs::write(&files.private_key, leaf_key.serialize_pem())?;
    Ok(files)
}
