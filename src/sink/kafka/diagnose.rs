//! Why a broker's certificate fails verification. librdkafka (OpenSSL) reports a CA that did
//! not sign the certificate and a certificate for another host with the same words ("certificate
//! verify failed"), and their remedies differ; a handshake of our own with rustls, against the
//! same trust settings, tells them apart.

use crate::tls::TlsSettings;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, Error as TlsError};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long the diagnosis may take (it runs on the producer's poll thread, once per failure).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The broker `host:port` a librdkafka error is about: its reasons start with the broker's name,
/// `ssl://host:port/id: ...` (or `sasl_ssl://`).
pub(crate) fn broker_of(reason: &str) -> Option<(String, u16)> {
    let (_, rest) = reason.split_once("://")?;
    let addr = rest.split('/').next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// What is wrong with `host:port`'s certificate, with the remedy, as far as a rustls handshake
/// trusting `ca_file` (or the system roots) can tell; `None` when it cannot tell.
pub(crate) fn certificate_problem(
    host: &str,
    port: u16,
    ca_file: Option<&PathBuf>,
) -> Option<String> {
    let opts = TlsSettings {
        ca_file: ca_file.cloned(),
        ..TlsSettings::verified()
    };
    let config = crate::tls::client_config(&opts, "kafka").ok()?;
    let name = ServerName::try_from(host.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    sock.set_read_timeout(Some(TIMEOUT)).ok()?;
    sock.set_write_timeout(Some(TIMEOUT)).ok()?;
    // complete_io runs the handshake to its end or its first error; a TLS error comes back
    // wrapped in the io::Error.
    let error = match conn.complete_io(&mut sock) {
        Ok(_) => return None,
        Err(e) => e.into_inner()?.downcast::<TlsError>().ok()?,
    };
    let TlsError::InvalidCertificate(cert) = *error else {
        return None;
    };
    let trusted = match ca_file {
        Some(p) => format!("the CA in tls_ca_file ({})", p.display()),
        None => "the system trust store (tls_ca_file is not set)".to_string(),
    };
    Some(match cert {
        CertificateError::NotValidForName => format!(
            "the certificate of broker {host}:{port} does not name {host:?}: connect with a name the certificate holds (in `brokers`, and in the brokers' advertised listeners), or reissue the certificate with {host:?} in its subjectAltName"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the certificate of broker {host}:{port} does not name {host:?} (it names {}): connect with a name the certificate holds (in `brokers`, and in the brokers' advertised listeners), or reissue the certificate with {host:?} in its subjectAltName",
            presented.iter().map(|n| bare_name(n)).collect::<Vec<_>>().join(", ")
        ),
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate of broker {host}:{port} is not signed by {trusted}: set tls_ca_file to the PEM file of the CA that signed the brokers' certificates"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the certificate of broker {host}:{port} has expired: renew it on the broker"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the certificate of broker {host}:{port} is not valid yet: check the clocks of this host and the broker"
        ),
        _ => return None,
    })
}

/// `kafka.example.com` out of rustls's `DnsName("kafka.example.com")`.
fn bare_name(presented: &str) -> &str {
    match presented.split_once('(') {
        Some((_, inner)) => inner.trim_end_matches(')').trim_matches('"'),
        None => presented,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_read_from_librdkafka_reasons() {
        assert_eq!(
            broker_of("ssl://127.0.0.1:44297/bootstrap: SSL handshake failed: x"),
            Some(("127.0.0.1".into(), 44297))
        );
        assert_eq!(
            broker_of("sasl_ssl://kafka-1.example.com:9093/1: SSL handshake failed"),
            Some(("kafka-1.example.com".into(), 9093))
        );
        assert_eq!(
            broker_of("ssl://[::1]:9093/bootstrap: x"),
            Some(("::1".into(), 9093))
        );
        assert_eq!(broker_of("no broker here"), None);
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(
            bare_name("DnsName(\"kafka.example.com\")"),
            "kafka.example.com"
        );
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("broker"), "broker");
    }
}
