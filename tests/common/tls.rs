//! A throw-away PKI for tests, made with the openssl CLI: certificate authorities and the server
//! and client certificates they sign (P-256 keys, valid two days).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its unencrypted private key (PEM files).
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed certificate authority kept in `dir` as `<name>.pem` / `<name>.key`.
#[derive(Debug, Clone)]
pub struct Ca {
    dir: PathBuf,
    name: String,
    pub cert: PathBuf,
    key: PathBuf,
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509"];
        args.extend(EC);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args);
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// A certificate for `name` (its file names and CN) with the given subjectAltName
    /// (`DNS:localhost,IP:127.0.0.1`), for a server or, with `client`, a client.
    pub fn issue(&self, name: &str, san: &str, client: bool) -> CertKey {
        let (cert, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        let mut args = vec!["req"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&self.dir, &args);
        let usage = if client { "clientAuth" } else { "serverAuth" };
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
        )
        .expect("write the extensions file");
        let (ca_cert, ca_key) = (format!("{}.pem", self.name), format!("{}.key", self.name));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        CertKey {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}

/// A CA and a server certificate it signed for `localhost` / 127.0.0.1.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn generate(dir: &Path) -> TlsFiles {
        let ca = Ca::new(dir, "ca");
        let server = ca.issue("server", "DNS:localhost,IP:127.0.0.1", false);
        TlsFiles {
            ca: ca.cert,
            cert: server.cert,
            key: server.key,
        }
    }
}
