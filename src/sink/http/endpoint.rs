//! The keys every HTTP sink takes (`url`, `batch_max_bytes`, `compression`, `timeout`,
//! `allow_insecure_http` and the `tls_*` keys), parsed and checked in one place.

use crate::config::{from_table, FieldError};
use crate::tls::TlsSettings;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::time::Duration;

/// Default request timeout (`timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `batch_max_bytes`: 1 MiB of uncompressed body per request (Vector's HEC default is
/// about the same, and it stays far below Elasticsearch's 100 MB `http.max_content_length`).
const DEFAULT_BATCH_MAX_BYTES: usize = 1024 * 1024;

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
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Bodies go as they are.
    #[default]
    None,
    /// Bodies are gzipped and sent with `Content-Encoding: gzip`.
    Gzip,
}

/// The keys of [`Endpoint`], taken out of a sink's table before the sink's own keys are parsed.
const ENDPOINT_KEYS: [&str; 5] = [
    "url",
    "batch_max_bytes",
    "compression",
    "timeout",
    "allow_insecure_http",
];

/// Where an HTTP sink sends and how: the keys the three HTTP sinks share.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The sink's URL (the collector or bulk paths are appended by the sink that needs them).
    pub url: String,
    /// Uncompressed body bytes per request (default 1 MiB); a batch is split to respect it.
    #[serde(default)]
    pub batch_max_bytes: Option<usize>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Accept `http://` to a host other than loopback (a warning is logged at every start).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The `tls_*` keys.
    #[serde(skip)]
    pub tls: TlsSettings,
}

/// Parses an HTTP sink's table: the shared keys into an [`Endpoint`], the rest into the sink's
/// own configuration `T` (which refuses keys it does not know).
pub(crate) fn parse_table<T: DeserializeOwned>(table: Value) -> Result<(Endpoint, T), FieldError> {
    let mut table = match table {
        Value::Object(map) => map,
        other => {
            return Err(FieldError::whole(format!(
                "expected a table, found {other}"
            )))
        }
    };
    let tls = http_tls(&mut table)?;
    let mut shared = Map::new();
    for key in ENDPOINT_KEYS {
        if let Some(v) = table.remove(key) {
            shared.insert(key.to_string(), v);
        }
    }
    let endpoint = Endpoint {
        tls,
        ..from_table(Value::Object(shared))?
    };
    Ok((endpoint, from_table(Value::Object(table))?))
}

/// The TLS settings of an HTTP sink: the URL's host is always the name verified (reqwest takes
/// no other), so `tls_server_name` is refused rather than ignored.
fn http_tls(table: &mut Map<String, Value>) -> Result<TlsSettings, FieldError> {
    let tls = TlsSettings::take_from(table)?;
    if tls.server_name.is_some() {
        return Err(FieldError::new(
            "tls_server_name",
            "HTTP sinks verify the host of `url`; put the certificate's name in `url` instead",
        ));
    }
    Ok(tls)
}

impl Endpoint {
    /// Checks the shared keys; the parsed URL on success.
    pub fn validate(&self) -> Result<reqwest::Url, FieldError> {
        let url = validate_url(&self.url, &self.tls, self.allow_insecure_http)?;
        if self.batch_max_bytes == Some(0) {
            return Err(FieldError::whole("`batch_max_bytes` must be positive"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(FieldError::whole("`timeout` must be longer than 0s"));
        }
        Ok(url)
    }

    /// `url` when it sends in clear text to another machine (allowed by `allow_insecure_http`),
    /// for a warning at every start.
    pub fn cleartext_url(&self) -> Option<String> {
        let parsed = reqwest::Url::parse(&self.url).ok()?;
        crate::httputil::cleartext_to_remote(&parsed).then(|| display_url(&self.url))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn max_bytes(&self) -> usize {
        self.batch_max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES)
    }
}

/// Checks a sink URL: http or https, a host, no credentials in it (they belong in secret files),
/// TLS keys only with https, and plain http to another machine only with `allow_insecure_http`.
/// Errors are about the sink as a whole and say "`url`:" themselves, as they always have.
pub fn validate_url(
    url: &str,
    tls: &TlsSettings,
    allow_insecure_http: bool,
) -> Result<reqwest::Url, FieldError> {
    let bad = |m: String| FieldError::whole(format!("`url`: {m}"));
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL ({e})")))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if tls.ca_file.is_some() || tls.cert_file.is_some() || !tls.verify {
                return Err(bad(format!(
                    "{url:?} is plain http but TLS keys are set; use https:// or remove the tls_* keys"
                )));
            }
        }
        other => {
            return Err(bad(format!(
                "scheme {other:?} is not supported; use https:// (or http:// on a trusted network)"
            )))
        }
    }
    if crate::httputil::cleartext_to_remote(&parsed) && !allow_insecure_http {
        return Err(bad(format!(
            "{} is plain http to another machine: credentials and audit records would cross the network unencrypted; use https://, or set allow_insecure_http = true if the network is trusted (a warning is then logged at every start)",
            display_url(url)
        )));
    }
    if !matches!(parsed.host_str(), Some(h) if !h.is_empty()) {
        return Err(bad(format!("{url:?} has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not contain user:password; put credentials in a secret file (auth / token_file)"
                .to_string(),
        ));
    }
    tls.validate()?;
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
