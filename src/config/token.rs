//! Where the Codacy API token comes from: the environment, `codacy.api_token_file`, or the systemd
//! credential the packaged unit hands to the service (and, outside the service, the file that
//! credential is loaded from).

use super::{CREDENTIAL_SOURCE, TOKEN_ENV};
use crate::secret::{Secret, SecretSource};

/// The credential's name in the unit (`LoadCredential=api-token:...`).
const CREDENTIAL_NAME: &str = "api-token";

fn file_source(path: &Path) -> SecretSource {
    SecretSource::File {
        key: "codacy.api_token_file".to_string(),
        path: path.to_path_buf(),
    }
}

/// Reads `source`; the message names the file (the caller says which key chose it).
fn read(source: &SecretSource) -> Result<Secret, String> {
    source.read().map_err(|e| e.message)
}
use std::path::{Path, PathBuf};

/// Where the token may come from, in order of precedence (first wins).
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    pub env: Option<String>,
    pub credentials_directory: Option<PathBuf>,
}

impl TokenSources {
    /// The process environment: `CODACY_API_TOKEN` and systemd's `CREDENTIALS_DIRECTORY`.
    pub fn from_env() -> Self {
        TokenSources {
            env: std::env::var(TOKEN_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty()),
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

/// A token found, where it came from, and what was skipped on the way.
pub(super) struct FoundToken {
    pub(super) secret: Secret,
    pub(super) source: String,
    pub(super) warning: Option<String>,
}

/// Token precedence: env `CODACY_API_TOKEN`, then `api_token_file`, then
/// `$CREDENTIALS_DIRECTORY/api-token` (systemd `LoadCredential=`), or, outside the service (no
/// `$CREDENTIALS_DIRECTORY`), the credential's source file the unit names. An `api_token_file`
/// that cannot be read while a credential can is skipped with a warning: the packaged unit
/// gives the service user the credential, never the root-only file.
pub(super) fn resolve_token(
    file: Option<&Path>,
    sources: &TokenSources,
    credential_source: Option<&Path>,
) -> Result<FoundToken, String> {
    if let Some(t) = &sources.env {
        return Ok(FoundToken {
            secret: Secret::new(t.trim()),
            source: format!("environment variable {TOKEN_ENV}"),
            warning: None,
        });
    }
    let credential = || -> Option<Result<(Secret, String), String>> {
        match &sources.credentials_directory {
            Some(dir) => {
                let path = dir.join(CREDENTIAL_NAME);
                let source = SecretSource::Credential {
                    directory: dir.clone(),
                    name: CREDENTIAL_NAME.to_string(),
                };
                path.exists().then(|| {
                    read(&source).map(|s| (s, format!("systemd credential {}", path.display())))
                })
            }
            None => credential_source.filter(|p| p.exists()).map(|path| {
                read(&file_source(path))
                    .map_err(|e| {
                        // The file is root's (0600): the service user gets it only through systemd.
                        format!(
                            "{e}; it is the service's credential, readable by root only: run this command as root, or as the service user through systemd: sudo systemd-run --pipe --wait -p User=codacy-audit-forwarder -p LoadCredential=api-token:{} codacy-audit-forwarder ...",
                            path.display()
                        )
                    })
                    .map(|s| {
                    (
                        s,
                        format!(
                            "{} (the file the unit hands to the service as its systemd credential)",
                            path.display()
                        ),
                    )
                })
            }),
        }
    };
    let file_error = match file {
        Some(path) => match read(&file_source(path)) {
            Ok(secret) => {
                return Ok(FoundToken {
                    secret,
                    source: format!("file {} (codacy.api_token_file)", path.display()),
                    warning: None,
                })
            }
            Err(e) => Some(e),
        },
        None => None,
    };
    match (credential(), file_error) {
        (Some(Ok((secret, source))), warning) => Ok(FoundToken {
            warning: warning.map(|e| {
                format!("codacy.api_token_file: {e}; using the token from {source} instead (remove api_token_file to silence this)")
            }),
            secret,
            source,
        }),
        (_, Some(e)) => Err(e),
        (Some(Err(e)), None) => Err(e),
        (None, None) => Err(format!(
            "no API token: set {TOKEN_ENV}, or codacy.api_token_file, or LoadCredential=api-token:... in the systemd unit (outside the service, {} is read when it exists)",
            credential_source.map_or_else(|| CREDENTIAL_SOURCE.to_string(), |p| p.display().to_string())
        )),
    }
}
