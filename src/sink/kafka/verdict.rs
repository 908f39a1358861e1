//! What a failed delivery means for the batch, with the message a user acts on: retry later,
//! stop for a human (naming the key to fix), dead-letter a record too large, or replace a
//! producer that librdkafka declared unusable.

use super::context::{ClientIssue, KafkaContext};
use super::settings::KafkaSettings;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What a failed delivery means for the batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Retry the batch later.
    Transient(String),
    /// Needs a human; the message says what to do.
    Fatal(String),
    /// The record is too large for the topic or the producer: dead-letter it.
    TooLarge(String),
    /// The producer is unusable (librdkafka fatal error): replace it, then retry.
    Broken(String),
}

/// What delivering to `topic` failing with `e` means, with what the client context saw lately.
pub(crate) fn classify(
    ctx: &KafkaContext,
    settings: &KafkaSettings,
    e: &KafkaError,
    topic: &str,
) -> Verdict {
    let brokers = &settings.brokers;
    let recent = ctx.recent_errors();
    let principal = settings
        .sasl
        .as_ref()
        .map_or("the client".to_string(), |s| {
            format!("user {:?}", s.username)
        });
    let Some(code) = e.rdkafka_error_code() else {
        return Verdict::Transient(format!("kafka producer error: {e}"));
    };
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => {
            Verdict::TooLarge(format!(
                "record too large for Kafka topic {topic:?} ({code}): raise the topic's max.message.bytes, or librdkafka_options message.max.bytes if the producer refused it"
            ))
        }
        C::UnknownTopic | C::UnknownTopicOrPartition => Verdict::Fatal(format!(
            "Kafka topic {topic:?} does not exist on {brokers} and the brokers do not create topics automatically: create it (kafka-topics.sh --create --topic {topic}) or change `topic`"
        )),
        C::InvalidTopic => Verdict::Fatal(format!(
            "the Kafka brokers {brokers} reject the topic name {topic:?}: change `topic`"
        )),
        C::TopicAuthorizationFailed => Verdict::Fatal(format!(
            "{principal} is not authorized to write to Kafka topic {topic:?} on {brokers}: grant it WRITE and DESCRIBE on the topic (kafka-acls.sh --add --allow-principal User:... --operation Write --operation Describe --topic {topic})"
        )),
        C::ClusterAuthorizationFailed => Verdict::Fatal(format!(
            "{principal} is not authorized for the IdempotentWrite cluster operation on {brokers}, which the idempotent producer needs on Kafka before 2.8: grant it (kafka-acls.sh --add --allow-principal User:... --operation IdempotentWrite --cluster)"
        )),
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState => Verdict::Fatal(sasl_message(settings, &recent)),
        C::SSL => {
            let issue = ctx.human_issue();
            let diagnosis = issue.as_ref().and_then(|i| i.diagnosis.as_deref());
            Verdict::Fatal(tls_message(settings, &recent, diagnosis))
        }
        C::InvalidTimestamp => Verdict::Fatal(format!(
            "Kafka topic {topic:?} rejects the records' timestamps (the events' own times, which may be months old during a backfill): raise the topic's message.timestamp.before.max.ms (message.timestamp.difference.max.ms before Kafka 3.6)"
        )),
        C::InvalidRecord | C::PolicyViolation | C::UnsupportedForMessageFormat => {
            Verdict::Fatal(format!(
                "Kafka topic {topic:?} on {brokers} rejects the records ({code}){recent}: check the topic's configuration"
            ))
        }
        C::Fatal => Verdict::Broken(format!(
            "the Kafka producer hit a fatal error and is being recreated{recent}; the batch will be retried"
        )),
        C::MessageTimedOut => match ctx.human_issue() {
            Some(issue) => classify_issue(settings, &issue, topic),
            None => Verdict::Transient(format!(
                "Kafka did not confirm delivery to topic {topic:?} within message_timeout ({}): brokers {brokers} unreachable or unhealthy{recent}; check `brokers`, DNS, firewalls and `security_protocol`",
                humantime::format_duration(settings.message_timeout)
            )),
        },
        C::PurgeQueue | C::PurgeInflight => {
            Verdict::Transient("kafka producer shut down before delivery".to_string())
        }
        other => Verdict::Transient(format!(
            "Kafka delivery to topic {topic:?} on {brokers} failed: {other}{recent}"
        )),
    }
}

fn sasl_message(settings: &KafkaSettings, recent: &str) -> String {
    match &settings.sasl {
        Some(s) => format!(
            "SASL authentication as {:?} ({}) failed at {}{recent}: check sasl_username, the password in sasl_password_file/sasl_password_env, and that the brokers enable {}",
            s.username,
            s.mechanism.as_str(),
            settings.brokers,
            s.mechanism.as_str()
        ),
        None => format!(
            "the Kafka brokers {} require SASL authentication{recent}: set security_protocol = \"sasl_ssl\" (or \"sasl_plaintext\") with sasl_mechanism, sasl_username and sasl_password_file",
            settings.brokers
        ),
    }
}

fn tls_message(settings: &KafkaSettings, recent: &str, diagnosis: Option<&str>) -> String {
    let brokers = &settings.brokers;
    if !settings.security_protocol.uses_tls() {
        return format!(
            "TLS error with the Kafka brokers {brokers}{recent}: check `security_protocol` against the brokers' listener"
        );
    }
    // OpenSSL's reason, as librdkafka quotes it, tells which of the usual mistakes this is.
    let reason = recent.to_ascii_lowercase();
    let remedy = if let Some(d) = diagnosis {
        d.to_string()
    } else if reason.contains("plaintext broker listener")
        || (reason.contains("state ssl_handshake") && reason.contains("disconnected"))
    {
        // librdkafka words it either way, depending on when the listener hangs up.
        "the listener cut the TLS handshake off, as one that does not speak TLS does: point `brokers` at the brokers' TLS listener, or set security_protocol to what that listener speaks".to_string()
    } else if reason.contains("certificate verify failed") {
        "the brokers' certificate could not be verified: check that tls_ca_file holds the CA that signed it (without tls_ca_file, the system trust store is used) and that it names the hosts in `brokers`".to_string()
    } else if reason.contains("certificate required")
        || (reason.contains("handshake failure") && settings.tls.cert_file.is_none())
    {
        "the brokers require a client certificate: set tls_cert_file and tls_key_file to a certificate their CA signed".to_string()
    } else if reason.contains("unknown ca") || reason.contains("bad certificate") {
        "the brokers refuse the client certificate: use one (tls_cert_file, tls_key_file) signed by a CA the brokers trust".to_string()
    } else {
        "check that tls_ca_file holds the CA that signed the brokers' certificates, that those certificates name the hosts in `brokers`, that the listener speaks TLS, and whether it requires a client certificate (tls_cert_file, tls_key_file)".to_string()
    };
    format!("TLS with the Kafka brokers {brokers} failed{recent}: {remedy}")
}

/// What a client-level error that needs a human means for delivery.
pub(crate) fn classify_issue(
    settings: &KafkaSettings,
    issue: &ClientIssue,
    topic: &str,
) -> Verdict {
    let recent = format!(" (librdkafka: {})", issue.reason);
    use RDKafkaErrorCode as C;
    match issue.code {
        Some(C::SSL) => Verdict::Fatal(tls_message(
            settings,
            &recent,
            issue.diagnosis.as_deref(),
        )),
        Some(C::TopicAuthorizationFailed) => Verdict::Fatal(format!(
            "not authorized to write to Kafka topic {topic:?} on {}{recent}: grant WRITE and DESCRIBE on the topic",
            settings.brokers
        )),
        Some(C::ClusterAuthorizationFailed) => Verdict::Fatal(format!(
            "not authorized for the IdempotentWrite cluster operation on {}{recent}: grant it, as the idempotent producer needs it on Kafka before 2.8",
            settings.brokers
        )),
        _ => Verdict::Fatal(sasl_message(settings, &recent)),
    }
}
