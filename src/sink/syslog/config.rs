//! The syslog sink's keys, their start-up checks and its entry in the sink registry.

use super::format::{self, Facility, Protocol};
use super::transport::{Address, Scheme};
use super::SyslogSink;
use crate::config::{from_table, FieldError};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use crate::sink::{Sink, SinkContext, SinkError};
use crate::tls::TlsSettings;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Default APP-NAME (and RFC 3164 TAG).
pub(crate) const DEFAULT_APP_NAME: &str = "codacy-audit-forwarder";
/// rsyslog's default `maxMessageSize`.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 8192;
/// RFC 5424 6.1: every receiver must accept 480 octets.
pub(crate) const MIN_MAX_MESSAGE_BYTES: usize = 480;
/// Largest UDP payload over IPv4.
pub(crate) const UDP_MAX_MESSAGE_BYTES: usize = 65_507;
/// Upper bound for stream transports (rsyslog's `MaxFrameSize` default is 200000).
pub(crate) const STREAM_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// `framing = "octet-counting" | "lf"` (TCP only; TLS is always octet-counting, UDP unframed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// RFC 6587 3.4.1 `LEN SP MSG`: safe whatever the message contains.
    #[default]
    OctetCounting,
    /// RFC 6587 3.4.2 `MSG LF`: for receivers that only split on newlines.
    Lf,
}

/// The syslog sink's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `udp://host:port`, `tcp://host:port` or `tls://host:port`.
    pub address: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub framing: Option<Framing>,
    /// Default `user`.
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME / TAG (default `codacy-audit-forwarder`).
    #[serde(default)]
    pub app_name: Option<String>,
    /// HOSTNAME (default: this machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The `tls_*` keys, taken out of the table before the rest is parsed.
    #[serde(skip)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
}

pub const TYPE: SinkType = SinkType {
    name: "syslog",
    carries_host: true,
    parse: |table, _| Ok(Box::new(SyslogSinkConfig::from_keys(table)?)),
};

#[async_trait]
impl SinkConfig for SyslogSinkConfig {
    fn default_batch(&self) -> usize {
        STREAM_BATCH
    }

    fn validate(&self, _common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys()
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SyslogSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SyslogSinkConfig {
    /// Parses the sink's own keys (the `tls_*` keys through the shared TLS settings).
    pub fn from_keys(mut table: Map<String, Value>) -> Result<Self, FieldError> {
        let tls = TlsSettings::take_from(&mut table)?;
        Ok(SyslogSinkConfig {
            tls,
            ..from_table(Value::Object(table))?
        })
    }

    pub(crate) fn parsed_address(&self) -> Result<Address, FieldError> {
        self.address
            .parse()
            .map_err(|m: String| FieldError::new("address", m))
    }

    /// The framing asked for (validation refuses `lf` on TLS, which is always octet-counting).
    pub(crate) fn effective_framing(&self) -> Framing {
        self.framing.unwrap_or_default()
    }

    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    pub(crate) fn app_name(&self) -> &str {
        self.app_name.as_deref().unwrap_or(DEFAULT_APP_NAME)
    }

    /// Start-up checks; messages name the key and the fix.
    pub fn validate_keys(&self) -> Result<(), FieldError> {
        let addr = self.parsed_address()?;
        self.validate_transport(&addr)?;
        self.validate_max_message_bytes(addr.scheme)?;
        self.validate_header_fields()
    }

    /// `framing` and the `tls_*` keys against the address's scheme.
    fn validate_transport(&self, addr: &Address) -> Result<(), FieldError> {
        if addr.scheme == Scheme::Tls && self.framing == Some(Framing::Lf) {
            return Err(FieldError::new(
                "framing",
                "TLS syslog (RFC 5425) is always octet-counting; remove `framing` or use a tcp:// \
                 address for LF framing",
            ));
        }
        if addr.scheme != Scheme::Tls {
            if let Some(key) = self.tls.keys_given.first() {
                return Err(FieldError::new(
                    *key,
                    format!(
                        "TLS settings need a tls:// address, but `address` is {}; use tls://{}:PORT \
                         or remove the tls_* keys",
                        self.address, addr.host
                    ),
                ));
            }
            return Ok(());
        }
        self.tls.validate()
    }

    fn validate_max_message_bytes(&self, scheme: Scheme) -> Result<(), FieldError> {
        let max = self.max_message_bytes();
        let ceiling = if scheme == Scheme::Udp {
            UDP_MAX_MESSAGE_BYTES
        } else {
            STREAM_MAX_MESSAGE_BYTES
        };
        if (MIN_MAX_MESSAGE_BYTES..=ceiling).contains(&max) {
            return Ok(());
        }
        let why = if scheme == Scheme::Udp && max > ceiling {
            "; a UDP datagram carries at most 65507 bytes: use tcp:// or tls:// for larger records"
        } else {
            ""
        };
        Err(FieldError::new(
            "max_message_bytes",
            format!(
                "{max} is out of range {MIN_MAX_MESSAGE_BYTES} to {ceiling}{why} (keep it at or \
                 below the receiver's limit, rsyslog's maxMessageSize, 8k by default)"
            ),
        ))
    }

    /// APP-NAME and HOSTNAME go into the header as they are: printable, no spaces, bounded.
    fn validate_header_fields(&self) -> Result<(), FieldError> {
        let printable = |key: &str, s: &str, max: usize| {
            if !s.is_empty()
                && s != "-"
                && s.len() <= max
                && s.bytes().all(|b| b.is_ascii_graphic())
            {
                return Ok(());
            }
            Err(FieldError::new(
                key,
                format!("{s:?} must be 1 to {max} printable ASCII characters without spaces"),
            ))
        };
        printable("app_name", self.app_name(), format::APP_NAME_MAX)?;
        match &self.hostname {
            Some(h) => printable("hostname", h, format::HOSTNAME_MAX),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TokenSources};
    use crate::format::Format;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<SyslogSinkConfig, String> {
        let table = serde_json::from_value(v).map_err(|e| e.to_string())?;
        SyslogSinkConfig::from_keys(table).map_err(|e| e.to_string())
    }

    fn invalid(v: serde_json::Value) -> String {
        match parse(v) {
            Err(e) => e,
            Ok(c) => c.validate_keys().unwrap_err().to_string(),
        }
    }

    #[test]
    fn the_documented_example_parses_and_validates() {
        let c = parse(json!({
            "address": "tls://siem.example.com:6514",
            "protocol": "rfc5424",
            "framing": "octet-counting",
            "facility": "local4",
            "app_name": "codacy-audit",
            "hostname": "fwd01",
            "tls_verify": true,
            "max_message_bytes": 8192
        }))
        .unwrap();
        c.validate_keys().unwrap();
        assert_eq!(c.facility, Facility::LOCAL4);
        assert_eq!(c.protocol, Protocol::Rfc5424);
        let minimal = parse(json!({"address": "udp://127.0.0.1:514"})).unwrap();
        minimal.validate_keys().unwrap();
        assert_eq!(minimal.facility, Facility::USER);
        assert_eq!(minimal.effective_framing(), Framing::OctetCounting);
        assert_eq!(minimal.max_message_bytes(), 8192);
        assert_eq!(minimal.app_name(), DEFAULT_APP_NAME);
        let bsd = parse(json!({"address": "tcp://h:514", "protocol": "rfc3164", "framing": "lf"}))
            .unwrap();
        bsd.validate_keys().unwrap();
        assert_eq!(bsd.protocol, Protocol::Rfc3164);
    }

    /// The example from the documentation, through the real config loader.
    #[test]
    fn the_documented_toml_loads() {
        let text = r#"
[[sinks]]
name = "siem"
type = "syslog"
address = "tls://siem.example.com:6514"   # udp://host:port, tcp://host:port, tls://host:port
protocol = "rfc5424"                       # or "rfc3164"
framing = "octet-counting"                 # or "lf"; TLS always octet-counting; ignored for UDP
format = "cef"
facility = "local4"
app_name = "codacy-audit"
hostname = "fwd01"
tls_verify = true
max_message_bytes = 8192

[[organizations]]
provider = "gh"
name = "acme"
"#;
        let tokens = TokenSources {
            env: Some("tok".into()),
            ..Default::default()
        };
        let config = Config::from_toml(text, "t.toml", &tokens, false).unwrap();
        let spec = &config.sinks[0];
        assert_eq!(spec.format, Format::Cef);
        assert_eq!(spec.format_options.hostname, "fwd01");
        let c = spec
            .config
            .as_any()
            .downcast_ref::<SyslogSinkConfig>()
            .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("fwd01"));
        assert_eq!(c.facility, Facility::LOCAL4);
        assert_eq!(c.framing, Some(Framing::OctetCounting));
        assert_eq!(c.max_message_bytes(), 8192);

        let bad = text.replace("facility = \"local4\"", "facility = \"local44\"");
        let err = Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
        assert!(err.to_string().contains("local44"), "{err}");
        let bad = text.replace("framing = \"octet-counting\"", "framing = \"lf\"");
        let err = Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
        assert!(err.to_string().contains("octet-counting"), "{err}");
    }

    #[test]
    fn validation_messages_name_the_key_and_the_fix() {
        let cases = [
            (json!({"address": "siem:514"}), "key `address`"),
            (json!({"address": "http://siem:514"}), "unknown scheme"),
            (json!({"address": "tcp://siem"}), "no port"),
            (
                json!({"address": "tcp://h:1", "facility": "local9"}),
                "unknown facility \"local9\"",
            ),
            (
                json!({"address": "tcp://h:1", "framing": "nul"}),
                "key `framing`",
            ),
            (
                json!({"address": "tcp://h:1", "protocol": "rfc9999"}),
                "key `protocol`",
            ),
            (json!({"address": "tcp://h:1", "colour": "red"}), "colour"),
            (
                json!({"address": "tls://h:6514", "framing": "lf"}),
                "TLS syslog (RFC 5425) is always octet-counting",
            ),
            (
                json!({"address": "tcp://h:1", "tls_ca_file": "/x.pem"}),
                "key `tls_ca_file`: TLS settings need a tls:// address",
            ),
            (
                json!({"address": "udp://h:1", "tls_verify": false}),
                "key `tls_verify`",
            ),
            (
                json!({"address": "tls://h:1", "tls_ca_file": "/nonexistent/ca.pem"}),
                "/nonexistent/ca.pem",
            ),
            (
                json!({"address": "tls://h:1", "tls_cert_file": "/x.pem"}),
                "go together",
            ),
            (
                json!({"address": "udp://h:1", "max_message_bytes": 70000}),
                "at most 65507 bytes",
            ),
            (
                json!({"address": "tcp://h:1", "max_message_bytes": 100}),
                "key `max_message_bytes`: 100 is out of range 480",
            ),
            (
                json!({"address": "tcp://h:1", "app_name": "my app"}),
                "key `app_name`",
            ),
            (
                json!({"address": "tcp://h:1", "app_name": "a".repeat(49)}),
                "key `app_name`",
            ),
            (
                json!({"address": "tcp://h:1", "hostname": "fw 01"}),
                "key `hostname`",
            ),
        ];
        for (config, needle) in cases {
            let err = invalid(config.clone());
            assert!(err.contains(needle), "{config}: {err}");
        }
        // A large limit is fine over TCP.
        parse(json!({"address": "tcp://h:1", "max_message_bytes": 70000}))
            .unwrap()
            .validate_keys()
            .unwrap();
    }
}
