//! What Splunk HEC's answers mean: its status codes, and an event reply judged for the
//! transport.

use crate::sink::http::{classify_status, Outcome, Reply, StatusClass};
use crate::sink::SinkError;
use serde::Deserialize;

/// What a HEC status code asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecAction {
    /// 0: accepted (wait for the ack when acknowledgement is on).
    Accepted,
    /// 8 (internal error), 9 (busy): retry with backoff.
    Retry,
    /// 1-4: token disabled, missing, malformed or invalid.
    Token,
    /// 7: the index is not allowed for this token.
    Index,
    /// 10, 11, 14: channel / acknowledgement set-up.
    AckConfig,
    /// 5, 6, 12, 13, 15: the data was refused; a bug or a bad record.
    Data,
    /// 16 and unknown codes: needs a human.
    Other,
}

pub fn classify_code(code: i64) -> HecAction {
    match code {
        0 => HecAction::Accepted,
        8 | 9 => HecAction::Retry,
        1..=4 => HecAction::Token,
        7 => HecAction::Index,
        10 | 11 | 14 => HecAction::AckConfig,
        5 | 6 | 12 | 13 | 15 => HecAction::Data,
        _ => HecAction::Other,
    }
}

/// HEC's JSON reply: `{"text":"Success","code":0,"ackId":7}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct HecReply {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
}

impl HecReply {
    /// The HEC reply in `reply`; one that is not (a proxy's page, an empty body) has no code,
    /// and the HTTP status decides.
    pub fn of(reply: &Reply) -> HecReply {
        serde_json::from_slice(&reply.body).unwrap_or_default()
    }

    /// HEC's text, else the start of the body.
    pub fn text_or_excerpt(&self, reply: &Reply) -> String {
        self.text.clone().unwrap_or_else(|| reply.excerpt())
    }
}

pub(super) fn fatal_for(action: HecAction, code: i64, text: &str, url: &str) -> SinkError {
    let remedy = match action {
        HecAction::Token => match code {
            1 => "the HEC token is disabled: enable it in Splunk (Settings > Data inputs > HTTP Event Collector)",
            2 => "no token was sent: check token_file",
            3 => "the Authorization header was not accepted: check that token_file holds only the token (no \"Splunk \" prefix)",
            _ => "the HEC token is not valid on this Splunk: copy it again into token_file (and check the URL points at the right Splunk)",
        },
        HecAction::Index => "the token may not write to `index`: add the index to the token's allowed indexes in Splunk, or change `index`",
        HecAction::AckConfig => "indexer acknowledgement is misconfigured: enable it on the HEC token to use indexer_acknowledgement = true, or set indexer_acknowledgement = false",
        _ => "see Splunk's HEC status codes; the batch is kept and will be retried",
    };
    SinkError::fatal(format!("{url}: Splunk HEC code {code} ({text}): {remedy}"))
}

/// Judges the reply to an event request. With acknowledgement on (`ack_ids` given), the reply's
/// `ackId` is collected.
pub(super) fn classify_event_reply(reply: &Reply, ack_ids: Option<&mut Vec<u64>>) -> Outcome {
    let (shown, status) = (&reply.url, reply.status);
    let parsed = HecReply::of(reply);
    let text = parsed.text_or_excerpt(reply);
    let action = match parsed.code {
        Some(code) => classify_code(code),
        None => match classify_status(status) {
            StatusClass::Accepted => HecAction::Accepted,
            StatusClass::Retry => HecAction::Retry,
            StatusClass::Auth => HecAction::Token,
            StatusClass::Reject | StatusClass::TooLarge => HecAction::Data,
            StatusClass::Endpoint => {
                return Outcome::Fail(SinkError::fatal(format!(
                    "{shown} answered HTTP {status}: is `url` the HEC base URL (port 8088 by default) with HEC enabled? {}",
                    reply.excerpt()
                )))
            }
        },
    };
    let code = parsed.code.unwrap_or(-1);
    match action {
        HecAction::Accepted if status.is_success() => match (ack_ids, parsed.ack_id) {
            (None, _) => Outcome::Accepted,
            (Some(ids), Some(id)) => {
                ids.push(id);
                Outcome::Accepted
            }
            (Some(_), None) => Outcome::Fail(SinkError::fatal(format!(
                "{shown}: indexer_acknowledgement = true but Splunk returned no ackId: enable indexer acknowledgement on the HEC token, or set indexer_acknowledgement = false"
            ))),
        },
        HecAction::Accepted | HecAction::Retry => reply.retry_later(format!(
            "{shown}: HTTP {status}, HEC code {code} ({text}); will retry"
        )),
        // HEC may have indexed the events before the bad one, so resending halves can
        // duplicate them; dedupe on fields.event_id.
        HecAction::Data => Outcome::Split {
            note: "Splunk refused the data; bisecting the request to isolate the bad record",
            reason: format!("Splunk HEC refused the event: HTTP {status}, code {code} ({text})"),
        },
        HecAction::Token if parsed.code.is_none() => Outcome::Fail(SinkError::fatal(format!(
            "{shown}: HTTP {status}: the HEC token was refused; check token_file: {text}"
        ))),
        other => Outcome::Fail(fatal_for(other, code, &text, shown)),
    }
}
