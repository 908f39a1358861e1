//! `format = "cef"` (skeleton; the formats work implements the full mapping).

use super::FormatOptions;
use crate::event::IdentifiedEvent;

pub fn encode(event: &IdentifiedEvent, _options: &FormatOptions, out: &mut Vec<u8>) {
    out.extend_from_slice(b"CEF:0|Codacy|Codacy|");
    out.extend_from_slice(super::AGENT_VERSION.as_bytes());
    out.push(b'|');
    out.extend_from_slice(
        event
            .event
            .action
            .replace(['\\', '|', '\r', '\n'], "_")
            .as_bytes(),
    );
    out.extend_from_slice(b"|audit|3|externalId=");
    out.extend_from_slice(&event.id.as_str().as_bytes()[..40]);
}
