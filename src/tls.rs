//! TLS client settings shared by every sink that speaks TLS (syslog over TLS, HTTP sinks, and the
//! Codacy client): rustls with the system roots plus an optional CA file, an optional client
//! certificate, and hostname verification on by default.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TLS keys a sink accepts (flattened into its own config by listing them there).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct TlsOptions {
    /// PEM bundle of extra CAs trusted on top of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the host of the address).
    pub server_name: Option<String>,
    /// Verify the server certificate and host name (default true). Turning it off is logged as a
    /// warning at every start.
    pub verify: bool,
}

impl TlsOptions {
    pub fn verified() -> Self {
        TlsOptions {
            verify: true,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls_cert_file and tls_key_file go together: set both or neither".into());
        }
        for p in [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
        {
            if !p.exists() {
                return Err(format!("TLS file {} does not exist", p.display()));
            }
        }
        Ok(())
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs =
        certs.map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("{} is not a PEM private key: {e}", path.display()))?
        .ok_or_else(|| format!("{} holds no PEM private key", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a rustls client configuration. `context` names the sink in warnings.
pub fn client_config(opts: &TlsOptions, context: &str) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if opts.verify {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(ca) = &opts.ca_file {
            for cert in read_pem_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
            }
        }
        if roots.is_empty() {
            return Err("no trusted CA certificates: install the system CA bundle (ca-certificates) or set tls_ca_file".into());
        }
        builder.with_root_certificates(roots)
    } else {
        tracing::warn!(sink = context, "TLS certificate verification is OFF (tls_verify = false): the connection is encrypted but the server is not authenticated");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    };
    match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_pem_certs(cert)?, read_pem_key(key)?)
            .map_err(|e| {
                format!(
                    "client certificate {} / key {}: {e}",
                    cert.display(),
                    key.display()
                )
            }),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The `ServerName` to verify: `server_name` when set, else the address's host.
pub fn server_name(opts: &TlsOptions, host: &str) -> Result<ServerName<'static>, String> {
    let name = opts.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a valid TLS server name: {e}"))
}

/// Accepts any certificate (tls_verify = false) but still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_without_key_is_rejected() {
        let o = TlsOptions {
            cert_file: Some("/x".into()),
            ..TlsOptions::verified()
        };
        assert!(o.validate().unwrap_err().contains("go together"));
    }

    #[test]
    fn builds_with_system_roots_and_without_verification() {
        assert!(client_config(&TlsOptions::verified(), "t").is_ok());
        let off = TlsOptions::default();
        assert!(client_config(&off, "t").is_ok());
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let o = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::verified()
        };
        assert!(o.validate().unwrap_err().contains("/nonexistent/ca.pem"));
    }
}
