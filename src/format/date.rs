//! Dates written by hand, for the encoders that write one or two per record: the same text as
//! chrono's `to_rfc3339_opts(Millis, true)` (a property test compares them) without chrono's
//! formatting machinery, which cost more than the rest of a syslog header.

/// Appends `ms` as RFC 3339 UTC with milliseconds and `Z` (`2024-07-01T09:45:30.656Z`); writes
/// nothing and returns false outside years 0-9999, which RFC 3339 cannot write.
pub fn write_rfc3339_millis(out: &mut Vec<u8>, ms: i64) -> bool {
    const DAY_MS: i64 = 86_400_000;
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    if !(0..=9999).contains(&year) {
        return false;
    }
    let of_day = ms.rem_euclid(DAY_MS);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    // Each part's digits, right-aligned in its place (divisions by the constant 10 are cheap).
    let parts = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, of_day / 3_600_000),
        (14, 2, of_day / 60_000 % 60),
        (17, 2, of_day / 1000 % 60),
        (20, 3, of_day % 1000),
    ];
    for (at, width, mut value) in parts {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out.extend_from_slice(&text);
    true
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
