//! Pure syslog formatting: RFC 5424 and RFC 3164 messages. No sockets here; RFC 6587 framing is
//! [`crate::format::framing`]'s.
//!
//! Why not the `syslog` crate (named on the design card): it always stamps "now" (an audit record
//! must carry the event's own time), pads the 3164 day with a zero (`Jul 01`, RFC 3164 wants
//! `Jul  1`), has a numeric MSGID, no BOM, no field-length limits, no TCP framing at all (frames
//! cannot be split by the receiver) and no TLS. What we need is ~150 lines, written here.
//!
//! # Severity mapping
//! Records carry the catalog severity on the CEF 0-10 scale. CEF groups it as Low 0-3, Medium 4-6,
//! High 7-8, Very-High 9-10; syslog levels follow those bands so a SIEM rule written against
//! either scale selects the same events:
//!
//! | catalog (CEF) | syslog severity | why |
//! |---|---|---|
//! | 9-10 | 2 critical | very high: e.g. an organization or its security settings removed |
//! | 7-8  | 3 error    | high |
//! | 5-6  | 4 warning  | medium-high, e.g. a failed/rejected attempt (the catalog adds 2 on failure) |
//! | 4    | 5 notice   | medium, a normal but significant change |
//! | 0-3  | 6 informational | low, routine activity |
//!
//! 0 emergency and 1 alert are never used (an audit record never means the system is unusable),
//! and neither is 7 debug (compliance evidence is never debug output).
//!
//! # Structured data
//! Every RFC 5424 message carries `[codacy@32473 event_id="..." organization="gh/acme"]`. 32473
//! is the example Private Enterprise Number reserved for documentation by RFC 5612; a deployment
//! that needs a registered PEN can filter on the SD-ID name `codacy`. PARAM-VALUE escapes `"`,
//! `\` and `]` (RFC 5424 6.3.3); ASCII control characters (never present in ids or organization
//! names) are replaced by `_` so that no value can break LF framing.

use crate::format::date::{civil_from_days, write_rfc3339_millis};
use crate::sink::Record;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;

/// The documentation PEN from RFC 5612, used in our private SD-ID.
pub const PEN: u32 = 32473;
/// The SD-ID of the element every RFC 5424 message carries.
pub const SD_ID: &str = "codacy@32473";
/// RFC 5424 header field limits (octets).
pub const HOSTNAME_MAX: usize = 255;
pub const APP_NAME_MAX: usize = 48;
pub const PROCID_MAX: usize = 128;
pub const MSGID_MAX: usize = 32;
/// RFC 3164 TAG limit.
pub const TAG_MAX: usize = 32;
/// UTF-8 byte order mark: RFC 5424 MSG is `BOM UTF-8-STRING` when it is text.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `protocol = "rfc5424" | "rfc3164"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// Syslog facilities (RFC 5424 table 1) by their usual names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Facility(u8);

const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

impl Facility {
    pub const USER: Facility = Facility(1);
    pub const LOCAL4: Facility = Facility(20);

    pub fn code(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        FACILITY_NAMES[usize::from(self.0)]
    }
}

impl Default for Facility {
    /// `user`: the facility for ordinary programs. Sites that route audit records separately
    /// (Sentinel recommends a facility of its own for CEF) set one of `local0`..`local7`.
    fn default() -> Self {
        Facility::USER
    }
}

impl std::str::FromStr for Facility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        FACILITY_NAMES
            .iter()
            .position(|n| *n == lower)
            .map(|i| Facility(i as u8))
            .ok_or_else(|| {
                format!(
                    "unknown facility {s:?}; expected one of {}",
                    FACILITY_NAMES.join(", ")
                )
            })
    }
}

impl TryFrom<String> for Facility {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Catalog severity (CEF 0-10) to syslog severity; see the table in the module docs.
pub fn syslog_severity(catalog: u8) -> u8 {
    match catalog {
        9.. => 2,
        7..=8 => 3,
        5..=6 => 4,
        4 => 5,
        _ => 6,
    }
}

/// PRI value: facility * 8 + severity (0..=191).
pub fn pri(facility: Facility, severity: u8) -> u8 {
    facility.code() * 8 + severity.min(7)
}

/// An RFC 5424 header field: printable US-ASCII (33..=126) only, others replaced by `_`, cut to
/// `max` octets; empty becomes the NILVALUE `-`.
pub fn header_field(s: &str, max: usize) -> String {
    let mut out = Vec::with_capacity(s.len().min(max));
    push_header_field(&mut out, s, max);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`header_field`] appended to `out` (once per record for the MSGID: no string of its own).
fn push_header_field(out: &mut Vec<u8>, s: &str, max: usize) {
    let start = out.len();
    out.extend(
        s.chars()
            .map(|c| if c.is_ascii_graphic() { c as u8 } else { b'_' })
            .take(max),
    );
    if out.len() == start {
        out.push(b'-');
    }
}

/// A token for RFC 3164 (hostname, tag): letters, digits, `.`, `_`, `-` only (what rsyslog's
/// 3164 parser accepts there), others replaced by `_`, cut to `max`.
fn bsd_token(s: &str, max: usize, empty: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if out.is_empty() {
        empty.to_string()
    } else {
        out
    }
}

/// Appends an SD PARAM-VALUE with `"`, `\`, `]` escaped and control characters replaced.
pub fn escape_param_value(s: &str, out: &mut Vec<u8>) {
    // Ids and organization names never need it: copy them whole.
    let plain = |b: &u8| !matches!(b, b'"' | b'\\' | b']' | 0..=0x1f | 0x7f);
    if s.as_bytes().iter().all(plain) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            c if c.is_ascii_control() => out.push(b'_'),
            c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
}

/// The parts of a message that do not change per record, sanitised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub facility: Facility,
    /// RFC 5424 HOSTNAME.
    pub hostname: String,
    /// RFC 5424 APP-NAME.
    pub app_name: String,
    /// RFC 5424 PROCID.
    pub procid: String,
    /// RFC 3164 HOSTNAME.
    pub bsd_hostname: String,
    /// RFC 3164 TAG (the app name, cut to 32).
    pub tag: String,
}

impl Header {
    pub fn new(facility: Facility, hostname: &str, app_name: &str, pid: u32) -> Self {
        Header {
            facility,
            hostname: header_field(hostname, HOSTNAME_MAX),
            app_name: header_field(app_name, APP_NAME_MAX),
            procid: header_field(&pid.to_string(), PROCID_MAX),
            bsd_hostname: bsd_token(hostname, HOSTNAME_MAX, "localhost"),
            tag: bsd_token(app_name, TAG_MAX, "codacy"),
        }
    }
}

/// `<PRI>`, written without a formatter.
fn push_pri(out: &mut Vec<u8>, h: &Header, record: &Record) {
    out.push(b'<');
    let pri = pri(h.facility, syslog_severity(record.severity));
    out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
    out.push(b'>');
}

/// `Mmm dd hh:mm:ss` in UTC with a space-padded day. RFC 3164 has no zone (nor year): we send UTC
/// so the value never depends on the forwarder's time zone; receivers should treat it as UTC.
/// An instant chrono cannot represent is sent as the epoch, as before.
fn push_rfc3164_timestamp(out: &mut Vec<u8>, ms: i64) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    const DAY_MS: i64 = 86_400_000;
    let ms = if DateTime::<Utc>::from_timestamp_millis(ms).is_some() {
        ms
    } else {
        0
    };
    let (_, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let of_day = ms.rem_euclid(DAY_MS);
    out.extend_from_slice(MONTHS[(month - 1) as usize]);
    out.push(b' ');
    out.push(if day < 10 {
        b' '
    } else {
        b'0' + (day / 10) as u8
    });
    out.push(b'0' + (day % 10) as u8);
    for (before, value) in [
        (b' ', of_day / 3_600_000),
        (b':', of_day / 60_000 % 60),
        (b':', of_day / 1000 % 60),
    ] {
        out.push(before);
        out.push(b'0' + (value / 10) as u8);
        out.push(b'0' + (value % 10) as u8);
    }
}

/// Appends one RFC 5424 message (no framing) for `record`: written piece by piece, since a
/// formatter and chrono's date formatting per record cost more than the payload's copy.
pub fn rfc5424(h: &Header, record: &Record, out: &mut Vec<u8>) {
    push_pri(out, h, record);
    out.extend_from_slice(b"1 ");
    // RFC 3339 UTC with milliseconds and `Z`; the NILVALUE when the year has no four digits.
    if !write_rfc3339_millis(out, record.timestamp_ms) {
        out.push(b'-');
    }
    for field in [&h.hostname, &h.app_name, &h.procid] {
        out.push(b' ');
        out.extend_from_slice(field.as_bytes());
    }
    out.push(b' ');
    push_header_field(out, &record.action, MSGID_MAX);
    out.extend_from_slice(b" [");
    out.extend_from_slice(SD_ID.as_bytes());
    out.extend_from_slice(b" event_id=\"");
    escape_param_value(record.event_id.as_str(), out);
    out.extend_from_slice(b"\" organization=\"");
    escape_param_value(record.org.provider.as_str(), out);
    out.push(b'/');
    escape_param_value(&record.org.name, out);
    out.extend_from_slice(b"\"] ");
    out.extend_from_slice(BOM);
    out.extend_from_slice(&record.payload);
}

/// Appends one RFC 3164 message (no framing): `<PRI>Mmm dd hh:mm:ss host tag[pid]: payload`.
pub fn rfc3164(h: &Header, record: &Record, out: &mut Vec<u8>) {
    push_pri(out, h, record);
    push_rfc3164_timestamp(out, record.timestamp_ms);
    out.push(b' ');
    out.extend_from_slice(h.bsd_hostname.as_bytes());
    out.push(b' ');
    out.extend_from_slice(h.tag.as_bytes());
    out.push(b'[');
    out.extend_from_slice(h.procid.as_bytes());
    out.extend_from_slice(b"]: ");
    out.extend_from_slice(&record.payload);
}

/// Appends one message in `protocol`.
pub fn message(protocol: Protocol, h: &Header, record: &Record, out: &mut Vec<u8>) {
    match protocol {
        Protocol::Rfc5424 => rfc5424(h, record, out),
        Protocol::Rfc3164 => rfc3164(h, record, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, OrgRef, Provider};
    use crate::format::framing;
    use proptest::prelude::*;
    use std::sync::Arc;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // 2024-07-01T09:45:30.656Z
    const TS: i64 = 1_719_827_130_656;

    fn record(org: &str, action: &str, severity: u8, ts: i64, payload: &str) -> Record {
        Record {
            event_id: EventId::from_hex(ID).unwrap(),
            org: Arc::new(OrgRef::new(Provider::Gh, org)),
            timestamp_ms: ts,
            action: action.into(),
            severity,
            payload: payload.as_bytes().into(),
        }
    }

    fn header() -> Header {
        Header::new(Facility::LOCAL4, "fwd01", "codacy-audit", 4242)
    }

    fn s(v: &[u8]) -> String {
        String::from_utf8(v.to_vec()).unwrap()
    }

    #[test]
    fn rfc5424_is_byte_exact() {
        let mut out = Vec::new();
        rfc5424(
            &header(),
            &record("acme", "repositories.tokens.create", 3, TS, "CEF:0|a|b"),
            &mut out,
        );
        let expected = format!(
            "<166>1 2024-07-01T09:45:30.656Z fwd01 codacy-audit 4242 repositories.tokens.create \
             [codacy@32473 event_id=\"{ID}\" organization=\"gh/acme\"] \u{feff}CEF:0|a|b"
        );
        assert_eq!(s(&out), expected);
        // The BOM is exactly EF BB BF, right after the SP following STRUCTURED-DATA.
        let bom_at = out.len() - "CEF:0|a|b".len() - 3;
        assert_eq!(&out[bom_at..bom_at + 3], [0xEF, 0xBB, 0xBF]);
    }

    #[test]
    fn rfc3164_is_byte_exact_with_a_space_padded_day() {
        let mut out = Vec::new();
        rfc3164(
            &header(),
            &record("acme", "a", 9, TS, "CEF:0|a|b"),
            &mut out,
        );
        assert_eq!(
            s(&out),
            "<162>Jul  1 09:45:30 fwd01 codacy-audit[4242]: CEF:0|a|b"
        );
        let mut out = Vec::new();
        // 2024-12-24T23:59:59Z: two-digit day, no padding.
        rfc3164(
            &header(),
            &record("acme", "a", 0, 1_735_084_799_000, "x"),
            &mut out,
        );
        assert_eq!(s(&out), "<166>Dec 24 23:59:59 fwd01 codacy-audit[4242]: x");
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let mut out = Vec::new();
        rfc5424(
            &header(),
            &record("a\"b\\c]d\ne ü", "x", 3, TS, ""),
            &mut out,
        );
        assert!(
            s(&out).contains(r#"organization="gh/a\"b\\c\]d_e ü"]"#),
            "{}",
            s(&out)
        );
    }

    #[test]
    fn header_fields_are_printable_ascii_and_cut_at_their_limits() {
        let long_action = "a.".repeat(40);
        let h = Header::new(
            Facility::USER,
            &"h".repeat(300),
            &format!("app name ü{}", "x".repeat(60)),
            1,
        );
        assert_eq!(h.hostname.len(), HOSTNAME_MAX);
        assert_eq!(h.app_name.len(), APP_NAME_MAX);
        assert!(h.app_name.starts_with("app_name__xx"));
        assert_eq!(h.tag.len(), TAG_MAX);
        assert_eq!(header_field(&long_action, MSGID_MAX), &long_action[..32]);
        assert_eq!(header_field("", MSGID_MAX), "-");
        assert_eq!(header_field("rés ok\t", MSGID_MAX), "r_s_ok_");
        assert_eq!(
            Header::new(Facility::USER, "a b/c", "x:y", 1).bsd_hostname,
            "a_b_c"
        );
        assert_eq!(Header::new(Facility::USER, "", "x:y", 1).tag, "x_y");
    }

    #[test]
    fn timestamps_outside_four_digit_years_are_nil() {
        let mut out = Vec::new();
        rfc5424(
            &header(),
            &record("a", "x", 3, -62_198_755_200_000, ""),
            &mut out,
        );
        assert!(s(&out).starts_with("<166>1 - fwd01 "), "{}", s(&out));
    }

    #[test]
    fn pri_and_severity_mapping() {
        let expect = [6, 6, 6, 6, 5, 4, 4, 3, 3, 2, 2];
        for (catalog, sev) in expect.iter().enumerate() {
            assert_eq!(syslog_severity(catalog as u8), *sev, "catalog {catalog}");
        }
        assert_eq!(syslog_severity(200), 2);
        assert_eq!(pri(Facility::LOCAL4, 6), 166);
        assert_eq!(pri("kern".parse().unwrap(), 2), 2);
        assert_eq!(pri("local7".parse().unwrap(), 7), 191);
        assert_eq!(pri("user".parse().unwrap(), 3), 11);
        assert_eq!("LOCAL0".parse::<Facility>().unwrap().code(), 16);
        let err = "local9".parse::<Facility>().unwrap_err();
        assert!(err.contains("local9") && err.contains("local7"), "{err}");
    }

    /// RFC 6587 counts octets, not characters.
    #[test]
    fn framing() {
        let mut out = Vec::new();
        framing::octet_counted("<1>1 - - - - - - \u{feff}é".as_bytes(), &mut out);
        assert_eq!(s(&out), "22 <1>1 - - - - - - \u{feff}é");
        let mut out = Vec::new();
        framing::line(b"<1>x", &mut out);
        assert_eq!(out, b"<1>x\n");
    }

    /// Splits a 5424 message back into header fields, SD params (unescaped) and MSG.
    fn parse_5424(msg: &[u8]) -> (Vec<String>, Vec<(String, String)>, Vec<u8>) {
        let mut fields = Vec::new();
        let mut rest = msg;
        for _ in 0..6 {
            let sp = rest.iter().position(|&b| b == b' ').expect("header field");
            fields.push(String::from_utf8(rest[..sp].to_vec()).unwrap());
            rest = &rest[sp + 1..];
        }
        assert_eq!(rest[0], b'[');
        let text = std::str::from_utf8(rest).unwrap();
        let mut chars = text[1..].char_indices();
        let mut sd_id = String::new();
        for (_, c) in chars.by_ref() {
            if c == ' ' {
                break;
            }
            sd_id.push(c);
        }
        assert_eq!(sd_id, SD_ID);
        let mut params = Vec::new();
        let end;
        loop {
            let mut name = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                name.push(c);
            }
            assert_eq!(chars.next().map(|x| x.1), Some('"'));
            let mut value = String::new();
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().unwrap().1),
                    '"' => break,
                    ']' => panic!("unescaped ] in a value"),
                    c => value.push(c),
                }
            }
            params.push((name, value));
            match chars.next().unwrap() {
                (_, ' ') => continue,
                (i, ']') => {
                    end = i + 1;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let after = &rest[1 + end..];
        assert_eq!(after[0], b' ');
        (fields, params, after[1..].to_vec())
    }

    proptest! {
        /// The dates are written by hand: the same text as chrono's formats, which wrote them before.
        #[test]
        fn timestamps_are_chronos_text(ts in -70_000_000_000_000i64..260_000_000_000_000) {
            use chrono::Datelike;
            let t = DateTime::<Utc>::from_timestamp_millis(ts).unwrap();
            let r = record("a", "x", 3, ts, "");
            let mut msg = Vec::new();
            rfc5424(&header(), &r, &mut msg);
            let want = if (0..=9999).contains(&t.year()) {
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            } else {
                "-".to_string()
            };
            prop_assert!(s(&msg).starts_with(&format!("<166>1 {want} fwd01 ")), "{}", s(&msg));
            let mut msg = Vec::new();
            rfc3164(&header(), &r, &mut msg);
            let want = t.format("%b %e %H:%M:%S").to_string();
            prop_assert!(s(&msg).starts_with(&format!("<166>{want} fwd01 ")), "{}", s(&msg));
        }

        #[test]
        fn rfc5424_frames_parse_back(
            host in "\\PC{0,300}",
            app in "\\PC{0,80}",
            action in "\\PC{0,60}",
            org in "[^\\p{Cc}]{1,60}",
            payload in "\\PC{0,200}",
            severity in 0u8..=10,
            ts in -1_000_000_000_000_000i64..1_000_000_000_000_000,
            pid in any::<u32>(),
        ) {
            let h = Header::new(Facility::LOCAL4, &host, &app, pid);
            let r = record(&org, &action, severity, ts, &payload);
            let mut msg = Vec::new();
            rfc5424(&h, &r, &mut msg);
            let mut framed = Vec::new();
            framing::octet_counted(&msg, &mut framed);
            let sp = framed.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&framed[..sp]).unwrap().parse().unwrap();
            prop_assert_eq!(len, framed.len() - sp - 1);

            let (fields, params, body) = parse_5424(&msg);
            let pri_version = &fields[0];
            prop_assert_eq!(pri_version, &format!("<{}>1", 160 + syslog_severity(severity)));
            for (field, max) in [(&fields[2], HOSTNAME_MAX), (&fields[3], APP_NAME_MAX),
                                 (&fields[4], PROCID_MAX), (&fields[5], MSGID_MAX)] {
                prop_assert!(!field.is_empty() && field.len() <= max, "{:?}", field);
                prop_assert!(field.bytes().all(|b| (33..=126).contains(&b)), "{:?}", field);
            }
            prop_assert!(fields[1] == "-" || chrono::DateTime::parse_from_rfc3339(&fields[1]).is_ok());
            if fields[1] != "-" {
                let parsed = chrono::DateTime::parse_from_rfc3339(&fields[1]).unwrap();
                prop_assert_eq!(parsed.timestamp_millis(), ts);
            }
            prop_assert_eq!(params, vec![
                ("event_id".to_string(), ID.to_string()),
                ("organization".to_string(), format!("gh/{org}")),
            ]);
            let mut expected_body = BOM.to_vec();
            expected_body.extend_from_slice(payload.as_bytes());
            prop_assert_eq!(body, expected_body);
        }
    }
}
