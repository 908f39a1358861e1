//! TLS client settings shared by every sink that speaks TLS (syslog over TLS, HTTP sinks, and the
//! Codacy client): rustls with the system roots plus an optional CA file, an optional client
//! certificate, and hostname verification on by default.

use crate::config::{from_table, FieldError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `tls_*` keys, spelled the same by every sink that speaks TLS.
pub const TLS_KEYS: [&str; 5] = [
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_server_name",
    "tls_verify",
];

/// TLS client settings: one struct for every sink (and the Codacy client), read from the same
/// `tls_*` keys by [`TlsSettings::take_from`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
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
    /// The `tls_*` keys the configuration gave, in [`TLS_KEYS`] order (sinks that speak TLS only
    /// on some addresses refuse them elsewhere).
    pub keys_given: Vec<&'static str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsKeys {
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    tls_verify: Option<bool>,
}

impl TlsSettings {
    pub fn verified() -> Self {
        TlsSettings {
            verify: true,
            ..Default::default()
        }
    }

    /// Takes the `tls_*` keys out of a sink's table, so the sink's own keys are parsed apart.
    pub fn take_from(table: &mut Map<String, Value>) -> Result<TlsSettings, FieldError> {
        let mut given = Map::new();
        let mut keys_given = Vec::new();
        for key in TLS_KEYS {
            if let Some(v) = table.remove(key) {
                given.insert(key.to_string(), v);
                keys_given.push(key);
            }
        }
        let keys: TlsKeys = from_table(Value::Object(given))?;
        Ok(TlsSettings {
            ca_file: keys.tls_ca_file,
            cert_file: keys.tls_cert_file,
            key_file: keys.tls_key_file,
            server_name: keys.tls_server_name,
            verify: keys.tls_verify.unwrap_or(true),
            keys_given,
        })
    }

    /// The files exist and the client certificate has its key; messages name the key.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            let key = if self.cert_file.is_some() {
                "tls_key_file"
            } else {
                "tls_cert_file"
            };
            return Err(FieldError::new(
                key,
                "tls_cert_file and tls_key_file go together: set both or neither",
            ));
        }
        let files = [
            ("tls_ca_file", &self.ca_file),
            ("tls_cert_file", &self.cert_file),
            ("tls_key_file", &self.key_file),
        ];
        for (key, path) in files {
            if let Some(p) = path.as_ref().filter(|p| !p.exists()) {
                return Err(FieldError::new(
                    key,
                    format!("TLS file {} does not exist", p.display()),
                ));
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
pub fn client_config(opts: &TlsSettings, context: &str) -> Result<rustls::ClientConfig, String> {
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
pub fn server_name(opts: &TlsSettings, host: &str) -> Result<ServerName<'static>, String> {
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
        let o = TlsSettings {
            cert_file: Some("/x".into()),
            ..TlsSettings::verified()
        };
        assert!(o.validate().unwrap_err().message.contains("go together"));
    }

    #[test]
    fn the_tls_keys_are_taken_out_of_a_sink_table() {
        let mut table =
            serde_json::json!({"url": "u", "tls_verify": false, "tls_server_name": "x"});
        let t = TlsSettings::take_from(table.as_object_mut().unwrap()).unwrap();
        assert!(!t.verify);
        assert_eq!(t.server_name.as_deref(), Some("x"));
        assert_eq!(t.keys_given, ["tls_server_name", "tls_verify"]);
        assert_eq!(table, serde_json::json!({"url": "u"}));
        let mut bad = serde_json::json!({"tls_verify": "no"});
        let e = TlsSettings::take_from(bad.as_object_mut().unwrap()).unwrap_err();
        assert_eq!(e.key, "tls_verify");
        let none = TlsSettings::take_from(&mut Map::new()).unwrap();
        assert_eq!(none, TlsSettings::verified());
    }

    #[test]
    fn builds_with_system_roots_and_without_verification() {
        assert!(client_config(&TlsSettings::verified(), "t").is_ok());
        let off = TlsSettings::default();
        assert!(client_config(&off, "t").is_ok());
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let o = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSettings::verified()
        };
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("key `tls_ca_file`: TLS file /nonexistent/ca.pem"));
    }
}
