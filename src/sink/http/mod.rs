//! The HTTP transport shared by the HTTP sinks: the generic webhook (`type = "http"`, in
//! [`crate::sink::webhook`]), Splunk HEC ([`crate::sink::splunk_hec`]) and Elasticsearch `_bulk`
//! ([`crate::sink::elasticsearch`]).
//!
//! This module holds what the three share: the HTTP client (rustls via [`crate::tls`], no
//! redirects so credentials never follow a `Location`), secrets read from files or environment
//! variables, status classification, `Retry-After` parsing, body excerpts for error messages,
//! gzip, and splitting a batch into requests that respect `batch_max_bytes`.
//!
//! Rejected records are collected while a batch is sent and written to the dead-letter file
//! only once the whole batch is otherwise accepted: a batch that ends in a transient error is
//! offered again, and its rejects would otherwise be dead-lettered twice.

use super::{Record, SinkContext, SinkError};
use crate::secret::{Redactor, Secret};
use crate::tls::TlsSettings;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Deserializer};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Default request timeout (`timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `batch_max_bytes`: 1 MiB of uncompressed body per request (Vector's HEC default is
/// about the same, and it stays far below Elasticsearch's 100 MB `http.max_content_length`).
pub const DEFAULT_BATCH_MAX_BYTES: usize = 1024 * 1024;

/// Parses a humantime duration ("30s", "2m") for `deserialize_with`.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"30s\" or \"2m\""
            ))
        }),
    }
}

/// `compression = "none" | "gzip"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

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

/// Credentials ready to be put in an `Authorization` header.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(Secret),
    Basic {
        user: String,
        password: Secret,
    },
    /// Splunk HEC: `Authorization: Splunk <token>`.
    Splunk(Secret),
    /// Elasticsearch: `Authorization: ApiKey <base64(id:key)>` (the `encoded` value).
    ApiKey(Secret),
}

impl Auth {
    /// The header value, marked sensitive so hyper never logs it.
    pub fn header(&self) -> Result<Option<HeaderValue>, String> {
        let text = match self {
            Auth::None => return Ok(None),
            Auth::Bearer(s) => format!("Bearer {}", s.expose()),
            Auth::Basic { user, password } => {
                format!("Basic {}", basic_credentials(user, password))
            }
            Auth::Splunk(s) => format!("Splunk {}", s.expose()),
            Auth::ApiKey(s) => format!("ApiKey {}", s.expose()),
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
            Auth::Bearer(s) | Auth::Splunk(s) | Auth::ApiKey(s) => Redactor::of([s]),
            Auth::Basic { user, password } => {
                Redactor::of([password, &Secret::new(basic_credentials(user, password))])
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Auth::None => "no credentials",
            Auth::Bearer(_) => "bearer token",
            Auth::Basic { .. } => "basic auth",
            Auth::Splunk(_) => "HEC token",
            Auth::ApiKey(_) => "API key",
        }
    }
}

/// `base64(user:password)`, the credentials of a Basic `Authorization` header.
fn basic_credentials(user: &str, password: &Secret) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()))
}

/// Reads a secret from exactly one of a file or an environment variable; errors name the key.
/// With `read = false` (config validation) only the keys are checked and a placeholder is
/// returned: the file is read when the sink is built at start-up, so checking a configuration
/// does not need the secrets to be present.
pub fn load_secret(
    file: Option<&PathBuf>,
    env: Option<&String>,
    file_key: &str,
    env_key: &str,
    read: bool,
) -> Result<Option<Secret>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!("set `{file_key}` or `{env_key}`, not both")),
        (Some(_), None) | (None, Some(_)) if !read => Ok(Some(Secret::new(""))),
        (Some(path), None) => Secret::from_file(path)
            .map(Some)
            .map_err(|e| format!("`{file_key}`: {e}")),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            Ok(_) => Err(format!("`{env_key}`: environment variable {var} is empty")),
            Err(_) => Err(format!(
                "`{env_key}`: environment variable {var} is not set"
            )),
        },
        (None, None) => Ok(None),
    }
}

impl AuthConfig {
    /// Resolves the credentials, reading secret files when `read`. Errors name the key at fault.
    pub fn load(&self, read: bool) -> Result<Auth, String> {
        let bearer = load_secret(
            self.bearer_token_file.as_ref(),
            self.bearer_token_env.as_ref(),
            "auth.bearer_token_file",
            "auth.bearer_token_env",
            read,
        )?;
        let password = load_secret(
            self.password_file.as_ref(),
            self.password_env.as_ref(),
            "auth.password_file",
            "auth.password_env",
            read,
        )?;
        match (bearer, &self.user, password) {
            (Some(token), None, None) => Ok(Auth::Bearer(token)),
            (Some(_), _, _) => {
                Err("`auth`: use either a bearer token or user/password, not both".to_string())
            }
            (None, Some(user), Some(password)) => {
                if user.contains(':') {
                    return Err("`auth.user` must not contain ':' (basic auth separator)".into());
                }
                Ok(Auth::Basic {
                    user: user.clone(),
                    password,
                })
            }
            (None, Some(_), None) => {
                Err("`auth`: `user` needs `password_file` (or `password_env`)".to_string())
            }
            (None, None, Some(_)) => Err("`auth`: the password needs a `user`".to_string()),
            (None, None, None) => {
                Err("`auth` is empty: set bearer_token_file, or user and password_file".to_string())
            }
        }
    }
}

/// `url` when it sends in clear text to another machine (allowed by `allow_insecure_http`), for
/// a warning at every start.
pub fn cleartext_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    crate::httputil::cleartext_to_remote(&parsed).then(|| display_url(url))
}

/// The TLS settings of an HTTP sink: the URL's host is always the name verified (reqwest takes
/// no other), so `tls_server_name` is refused rather than ignored.
pub fn http_tls(
    table: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<TlsSettings, crate::config::FieldError> {
    let tls = TlsSettings::take_from(table)?;
    if tls.server_name.is_some() {
        return Err(crate::config::FieldError::new(
            "tls_server_name",
            "HTTP sinks verify the host of `url`; put the certificate's name in `url` instead",
        ));
    }
    Ok(tls)
}

/// Checks a sink URL: http or https, a host, no credentials in it (they belong in secret files),
/// TLS keys only with https, and plain http to another machine only with `allow_insecure_http`.
pub fn validate_url(
    url: &str,
    tls: &TlsSettings,
    allow_insecure_http: bool,
) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("`url`: {url:?} is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if tls.ca_file.is_some() || tls.cert_file.is_some() || !tls.verify {
                return Err(format!(
                    "`url`: {url:?} is plain http but TLS keys are set; use https:// or remove the tls_* keys"
                ));
            }
        }
        other => {
            return Err(format!(
                "`url`: scheme {other:?} is not supported; use https:// (or http:// on a trusted network)"
            ))
        }
    }
    if cleartext_to_remote(&parsed) && !allow_insecure_http {
        return Err(format!(
            "`url`: {} is plain http to another machine: credentials and audit records would cross the network unencrypted; use https://, or set allow_insecure_http = true if the network is trusted (a warning is then logged at every start)",
            display_url(url)
        ));
    }
    if !matches!(parsed.host_str(), Some(h) if !h.is_empty()) {
        return Err(format!("`url`: {url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "`url`: must not contain user:password; put credentials in a secret file (auth / token_file)"
                .to_string(),
        );
    }
    tls.validate().map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// `base` with `path` appended (keeps a proxy prefix such as `https://h/splunk`).
pub fn join(base: &reqwest::Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}

/// A URL safe to print: scheme, host, port and path, without the query string (which may carry
/// a token on some webhook services).
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

/// Builds the HTTP client: shared TLS settings, a timeout, no redirects.
pub fn build_client(
    url: &reqwest::Url,
    tls: &TlsSettings,
    timeout: Duration,
    sink: &str,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            env!("CARGO_PKG_NAME"),
            "/",
            env!("CARGO_PKG_VERSION")
        ));
    if url.scheme() == "https" {
        builder = builder.use_preconfigured_tls(crate::tls::client_config(tls, sink)?);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// What a response status means for the records of that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: accepted.
    Accepted,
    /// 408, 429, 5xx except 501: retry later.
    Retry,
    /// 413: split the request.
    TooLarge,
    /// 401, 403, 407: credentials or permissions; needs a human.
    Auth,
    /// 3xx, 404, 405, 501: the URL or method is wrong; needs a human (dead-lettering every
    /// record because the URL has a typo would bury the evidence).
    Endpoint,
    /// Any other 4xx: these records are rejected for good.
    Reject,
}

pub fn classify_status(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::Accepted,
        408 | 429 => StatusClass::Retry,
        413 => StatusClass::TooLarge,
        401 | 403 | 407 => StatusClass::Auth,
        404 | 405 | 501 => StatusClass::Endpoint,
        500..=599 => StatusClass::Retry,
        400..=499 => StatusClass::Reject,
        // 1xx/3xx (redirects are not followed).
        _ => StatusClass::Endpoint,
    }
}

pub use crate::httputil::{
    body_excerpt, cleartext_to_remote, parse_retry_after, read_body, EXCERPT_CHARS, MAX_RETRY_AFTER,
};

/// Gzips a request body.
pub fn gzip(body: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(body)
        .and_then(|_| enc.finish())
        .map_err(|e| SinkError::transient(format!("gzip failed: {e}")))
}

/// Largest reply read from a destination: far above any answer to one request (a bulk reply to
/// 100,000 documents is about 25 MB). A server sending more is misbehaving, and reading it
/// whole would take the agent's memory with it.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
    /// The credentials the request carried, which the server may have echoed.
    redactor: Redactor,
}

impl Reply {
    /// The start of the body for an error or a dead-letter reason, credentials blanked.
    pub fn excerpt(&self) -> String {
        body_excerpt(&self.body, &self.redactor)
    }
}

/// Sends a request and reads the response. Transport failures (refused, reset, timeout, TLS)
/// are transient errors naming the URL and a likely cause. `redactor` holds the credentials the
/// request carries: excerpts of the reply blank them.
pub async fn send(
    req: reqwest::RequestBuilder,
    url: &str,
    redactor: &Redactor,
) -> Result<Reply, SinkError> {
    send_limited(req, url, redactor, MAX_REPLY_BYTES).await
}

/// [`send`], reading at most `limit` bytes of reply: a longer one is a fatal error (the records
/// are not acknowledged, and the same request would get the same answer).
async fn send_limited(
    req: reqwest::RequestBuilder,
    url: &str,
    redactor: &Redactor,
    limit: usize,
) -> Result<Reply, SinkError> {
    let what = display_url(url);
    let resp = req.send().await.map_err(|e| transport_error(&what, e))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (body, complete) = read_body(resp, limit)
        .await
        .map_err(|e| transport_error(&what, e))?;
    if !complete {
        return Err(SinkError::fatal(format!(
            "{what} answered HTTP {status} with a reply larger than {limit} bytes; it was not read further and nothing was acknowledged: check that `url` points at the collector"
        )));
    }
    Ok(Reply {
        status,
        retry_after,
        body,
        redactor: redactor.clone(),
    })
}

fn transport_error(url: &str, e: reqwest::Error) -> SinkError {
    let hint = if e.is_timeout() {
        "timed out; the server is slow or unreachable (raise `timeout` if it is just slow)"
    } else if e.is_connect() {
        "cannot connect; check that the host and port are right, the service is up and no firewall is in the way (TLS problems also show here: check tls_ca_file)"
    } else {
        "the connection failed"
    };
    // reqwest's Display hides the cause ("connection refused", the TLS alert): append the chain.
    let mut chain = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    // `without_url`: we print the URL ourselves, without its query string.
    let head = e.without_url().to_string();
    SinkError::transient(format!("{url}: {hint} ({head}{chain})"))
}

/// Splits `sizes` (bytes per record in a request body) into consecutive ranges of at most
/// `max_bytes` each. A record larger than `max_bytes` goes alone (the server decides).
pub fn split_by_bytes(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut total = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && total + size > max_bytes {
            out.push(start..i);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Records rejected for good while a batch was sent, written once the batch is otherwise done.
#[derive(Debug, Default)]
pub struct Rejects(Vec<(usize, String)>);

impl Rejects {
    pub fn add(&mut self, index: usize, reason: impl Into<String>) {
        self.0.push((index, reason.into()));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Dead-letters every reject (indices into `batch`).
    pub async fn write(self, ctx: &SinkContext, batch: &[Record]) -> Result<(), SinkError> {
        if self.0.is_empty() {
            return Ok(());
        }
        tracing::warn!(sink = %ctx.name, rejected = self.0.len(), batch = batch.len(),
            path = %ctx.dead_letter.path().display(), "records rejected for good by the destination");
        for (i, reason) in self.0 {
            if let Some(r) = batch.get(i) {
                ctx.dead_letter(r, &reason).await?;
            }
        }
        Ok(())
    }
}

/// A random version-4 UUID (HEC channel id).
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::from_secs(0)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:07 1994", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn status_classes() {
        let c = |n: u16| classify_status(StatusCode::from_u16(n).unwrap());
        assert_eq!(c(200), StatusClass::Accepted);
        assert_eq!(c(204), StatusClass::Accepted);
        assert_eq!(c(408), StatusClass::Retry);
        assert_eq!(c(429), StatusClass::Retry);
        assert_eq!(c(500), StatusClass::Retry);
        assert_eq!(c(503), StatusClass::Retry);
        assert_eq!(c(501), StatusClass::Endpoint);
        assert_eq!(c(404), StatusClass::Endpoint);
        assert_eq!(c(302), StatusClass::Endpoint);
        assert_eq!(c(401), StatusClass::Auth);
        assert_eq!(c(403), StatusClass::Auth);
        assert_eq!(c(413), StatusClass::TooLarge);
        assert_eq!(c(400), StatusClass::Reject);
        assert_eq!(c(422), StatusClass::Reject);
    }

    /// A destination answering without end: the reply is cut at the limit, as a fatal error.
    #[tokio::test]
    async fn replies_are_read_up_to_a_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = sock.read(&mut [0u8; 4096]).await;
                    let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                    let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
                    let _ = sock.write_all(head.as_bytes()).await;
                    while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        let client = reqwest::Client::new();
        let none = Redactor::default();
        let err = send_limited(client.get(&url), &url, &none, 10_000)
            .await
            .unwrap_err();
        assert_eq!(err.kind, crate::sink::SinkErrorKind::Fatal);
        assert!(
            err.message.contains("larger than 10000 bytes") && err.message.contains("/in"),
            "{}",
            err.message
        );
    }

    #[test]
    fn splits_by_bytes_keeping_order() {
        assert_eq!(
            split_by_bytes(&[], 10),
            Vec::<std::ops::Range<usize>>::new()
        );
        assert_eq!(split_by_bytes(&[4, 4, 4], 10), vec![0..2, 2..3]);
        assert_eq!(split_by_bytes(&[4, 20, 4], 10), vec![0..1, 1..2, 2..3]);
        assert_eq!(split_by_bytes(&[5, 5], 10), vec![0..2]);
    }

    #[test]
    fn urls_are_checked() {
        let tls = TlsSettings::verified();
        assert!(validate_url("https://h.example/x", &tls, false).is_ok());
        assert!(validate_url("http://127.0.0.1:9", &tls, false).is_ok());
        assert!(validate_url("ftp://h", &tls, false)
            .unwrap_err()
            .contains("not supported"));
        assert!(validate_url("h.example", &tls, false)
            .unwrap_err()
            .contains("not a URL"));
        assert!(validate_url("https://u:p@h.example", &tls, false)
            .unwrap_err()
            .contains("secret file"));
        let off = TlsSettings::default();
        assert!(validate_url("http://h.example", &off, true)
            .unwrap_err()
            .contains("TLS keys are set"));
        assert!(validate_url("http://h.example/x?token=t", &tls, false)
            .unwrap_err()
            .contains("http://h.example/x is plain http to another machine"));
        assert!(validate_url("http://h.example/x", &tls, true).is_ok());
        assert_eq!(
            display_url("https://h.example/hook?token=abc"),
            "https://h.example/hook"
        );
    }

    #[test]
    fn auth_config_messages_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let basic = AuthConfig {
            user: Some("elastic".into()),
            password_file: Some(p.clone()),
            ..Default::default()
        };
        let auth = basic.load(true).unwrap();
        assert!(!format!("{auth:?}").contains("s3cret"));
        let h = auth.header().unwrap().unwrap();
        assert!(h.is_sensitive());
        // base64("elastic:s3cret")
        assert_eq!(h.to_str().unwrap(), "Basic ZWxhc3RpYzpzM2NyZXQ=");
        // An echo of the header, or of the password, is blanked.
        assert_eq!(
            auth.redactor()
                .redact("authorization: Basic ZWxhc3RpYzpzM2NyZXQ= (s3cret)"),
            "authorization: Basic [redacted] ([redacted])"
        );
        let no_pw = AuthConfig {
            user: Some("elastic".into()),
            ..Default::default()
        };
        assert!(no_pw.load(true).unwrap_err().contains("password_file"));
        let both = AuthConfig {
            bearer_token_file: Some(p.clone()),
            user: Some("u".into()),
            password_file: Some(p),
            ..Default::default()
        };
        assert!(both.load(true).unwrap_err().contains("not both"));
        let missing = AuthConfig {
            bearer_token_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let e = missing.load(true).unwrap_err();
        assert!(
            e.contains("auth.bearer_token_file") && e.contains("nope"),
            "{e}"
        );
        let env = AuthConfig {
            bearer_token_env: Some("CAF_TEST_SURELY_UNSET_VAR".into()),
            ..Default::default()
        };
        assert!(env.load(true).unwrap_err().contains("is not set"));
    }

    #[test]
    fn uuid_is_v4_shaped() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }

    #[test]
    fn the_documented_configuration_works_as_written() {
        let text = r#"
[agent]
state_dir = "/tmp/x"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "hook"
type = "http"
url = "https://hooks.example.com/codacy"
format = "json"
encoding = "ndjson"
headers = { "X-Team" = "sec" }
auth = { bearer_token_file = "/etc/codacy-audit-forwarder/hook-token" }
batch_max_events = 500
batch_max_bytes = 1048576
compression = "gzip"
timeout = "30s"
tls_verify = true

[[sinks]]
name = "splunk"
type = "splunk_hec"
url = "https://splunk.example.com:8088"
token_file = "/etc/codacy-audit-forwarder/hec-token"
format = "json"
sourcetype = "codacy:audit"
index = "security"
source = "codacy"
host = "fwd-1"
indexer_acknowledgement = true

[[sinks]]
name = "elastic"
type = "elasticsearch"
url = "https://es.example.com:9200"
api_key_file = "/etc/codacy-audit-forwarder/es-api-key"
format = "ecs"
data_stream = "logs-codacy.audit-default"
"#;
        let tokens = crate::config::TokenSources {
            env: Some("tok".into()),
            credentials_directory: None,
        };
        let c = crate::config::Config::from_toml(text, "t.toml", &tokens, false).unwrap();
        let kinds: Vec<&str> = c.sinks.iter().map(|s| s.type_name).collect();
        assert_eq!(kinds, ["http", "splunk_hec", "elasticsearch"]);
        let hec = c.sinks[1]
            .config
            .as_any()
            .downcast_ref::<crate::sink::splunk_hec::SplunkHecConfig>();
        assert!(hec.unwrap().indexer_acknowledgement);
        let bad = text.replace("logs-codacy.audit-default", "codacy-audit");
        let e = crate::config::Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
        assert!(e.to_string().contains("data_stream"), "{e}");
    }
}
