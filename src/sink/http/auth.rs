//! Credentials of the HTTP sinks: where their secrets come from (through [`SecretSource`], like
//! every secret of the agent) and the `Authorization` header they make.

use crate::config::FieldError;
use crate::secret::{Redactor, Secret, SecretSource};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use std::path::PathBuf;

/// `auth = { bearer_token_file = ".." }` or `auth = { user = "..", password_file = ".." }`
/// (`*_env` variants name an environment variable instead of a file).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub bearer_token_file: Option<PathBuf>,
    pub bearer_token_env: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

/// Credentials for an `Authorization` header: `S` is where the secret is read from
/// ([`SecretSource`], what the configuration says) or the secret itself ([`Secret`], read at
/// start-up).
#[derive(Debug, Clone)]
pub enum Auth<S = Secret> {
    None,
    /// `Authorization: <scheme> <secret>`: `Bearer`, Splunk HEC's `Splunk`, Elasticsearch's
    /// `ApiKey` (the key's `encoded` value).
    Token {
        scheme: &'static str,
        secret: S,
    },
    Basic {
        user: String,
        password: S,
    },
}

/// A `<x>_file` / `<x>_env` pair of keys: the source it names, if any. `prefix` is the table
/// the keys sit in (`auth.`), for messages.
pub(crate) fn source_of(
    file: &Option<PathBuf>,
    env: &Option<String>,
    keys: (&str, &str),
) -> Result<Option<SecretSource>, FieldError> {
    SecretSource::from_keys(file.as_deref(), env.as_deref(), keys.0, keys.1)
}

impl AuthConfig {
    /// Where the credentials come from, without reading them (checking a configuration does not
    /// need the secrets to be present). Errors name the key at fault.
    pub fn sources(&self) -> Result<Auth<SecretSource>, FieldError> {
        let bearer = source_of(
            &self.bearer_token_file,
            &self.bearer_token_env,
            ("auth.bearer_token_file", "auth.bearer_token_env"),
        )?;
        let password = source_of(
            &self.password_file,
            &self.password_env,
            ("auth.password_file", "auth.password_env"),
        )?;
        match (bearer, &self.user, password) {
            (Some(secret), None, None) => Ok(Auth::Token {
                scheme: "Bearer",
                secret,
            }),
            (Some(_), _, _) => Err(FieldError::new(
                "auth",
                "use either a bearer token or user/password, not both",
            )),
            (None, Some(user), Some(password)) => {
                if user.contains(':') {
                    return Err(FieldError::new(
                        "auth.user",
                        "must not contain ':' (basic auth separator)",
                    ));
                }
                Ok(Auth::Basic {
                    user: user.clone(),
                    password,
                })
            }
            (None, Some(_), None) => Err(FieldError::new(
                "auth",
                "`user` needs `password_file` (or `password_env`)",
            )),
            (None, None, Some(_)) => Err(FieldError::new("auth", "the password needs a `user`")),
            (None, None, None) => Err(FieldError::new(
                "auth",
                "is empty: set bearer_token_file, or user and password_file",
            )),
        }
    }
}

impl Auth<SecretSource> {
    /// Reads the secrets.
    pub fn read(&self) -> Result<Auth, FieldError> {
        Ok(match self {
            Auth::None => Auth::None,
            Auth::Token { scheme, secret } => Auth::Token {
                scheme,
                secret: secret.read()?,
            },
            Auth::Basic { user, password } => Auth::Basic {
                user: user.clone(),
                password: password.read()?,
            },
        })
    }
}

impl Auth {
    /// The header value, marked sensitive so hyper never logs it.
    pub fn header(&self) -> Result<Option<HeaderValue>, String> {
        let text = match self {
            Auth::None => return Ok(None),
            Auth::Token { scheme, secret } => format!("{scheme} {}", secret.expose()),
            Auth::Basic { user, password } => {
                format!("Basic {}", basic_credentials(user, password))
            }
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            "the credential contains characters that cannot go in an HTTP header (a line break or control character inside the secret file?)".to_string()
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// The secrets this credential sends, in every form a server could echo: the password also
    /// as the base64 `user:password` of the Basic header.
    pub fn redactor(&self) -> Redactor {
        match self {
            Auth::None => Redactor::default(),
            Auth::Token { secret, .. } => Redactor::of([secret]),
            Auth::Basic { user, password } => {
                Redactor::of([password, &Secret::new(basic_credentials(user, password))])
            }
        }
    }
}

/// `base64(user:password)`, the credentials of a Basic `Authorization` header.
fn basic_credentials(user: &str, password: &Secret) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()))
}
