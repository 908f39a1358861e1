//! Framing: how encoded records are put one after another on a stream or in a request body.
//! Encoders make one record; sinks choose a framing here and never frame by hand.

/// A record followed by a line feed: NDJSON files and webhook bodies, CEF/CSV lines, RFC 6587
/// non-transparent syslog framing. Encoders never emit a raw line feed in json, ecs or cef; a
/// csv record may (inside quotes), which is why only file sinks take csv.
pub fn line(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record);
    out.push(b'\n');
}

/// RFC 6587 octet counting, `MSG-LEN SP MSG`: safe whatever the message contains.
pub fn octet_counted(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(record);
}

/// `[r1,r2,...]`: JSON-object records as one JSON array.
pub fn json_array<'a>(records: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, r) in records.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn framings_can_be_split_back_into_the_records(
            records in proptest::collection::vec("[^\n]{0,40}", 0..8),
        ) {
            let mut lines = Vec::new();
            let mut counted = Vec::new();
            for r in &records {
                line(r.as_bytes(), &mut lines);
                octet_counted(r.as_bytes(), &mut counted);
            }
            let back: Vec<&str> = std::str::from_utf8(&lines).unwrap().split_terminator('\n').collect();
            prop_assert_eq!(&back, &records);
            let mut rest = counted.as_slice();
            for r in &records {
                let sp = rest.iter().position(|&b| b == b' ').unwrap();
                let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                prop_assert_eq!(&rest[sp + 1..sp + 1 + len], r.as_bytes());
                rest = &rest[sp + 1 + len..];
            }
            prop_assert!(rest.is_empty());
        }
    }

    #[test]
    fn a_json_array_of_records() {
        let mut out = Vec::new();
        json_array([&b"{\"a\":1}"[..], b"{}"], &mut out);
        assert_eq!(out, b"[{\"a\":1},{}]");
        let mut empty = Vec::new();
        json_array(std::iter::empty(), &mut empty);
        assert_eq!(empty, b"[]");
    }
}
