//! Go's `time.Time` JSON representation (RFC 3339 with nanoseconds).
//!
//! Go formats with layout `2006-01-02T15:04:05.999999999Z07:00`: the fraction
//! has its trailing zeros trimmed (and is omitted when zero), the offset is
//! `Z` for UTC and `+hh:mm`/`-hh:mm` otherwise. restic additionally clamps the
//! year of node timestamps into 0..=9999 before encoding (`fixTime`).

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, Offset, TimeZone, Timelike, Utc};

use crate::error::FormatError;

/// Go's zero time, `0001-01-01T00:00:00Z`.
pub fn zero() -> DateTime<FixedOffset> {
    let utc = Utc.fix();
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| utc.from_utc_datetime(&n))
        .unwrap_or_else(|| DateTime::<Utc>::MIN_UTC.fixed_offset())
}

/// True if `t` is Go's zero time.
pub fn is_zero(t: &DateTime<FixedOffset>) -> bool {
    t.naive_utc() == zero().naive_utc()
}

/// The current local time with its offset (like Go's `time.Now()`).
pub fn now_local() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

/// restic's `fixTime`: years below 0 or above 9999 are moved into range,
/// everything else unchanged.
pub fn fix_year(t: &DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let year = t.year();
    let target = if year < 0 {
        0
    } else if year > 9999 {
        9999
    } else {
        return *t;
    };
    // Go's AddDate normalizes Feb 29 in a non-leap year to Mar 1.
    t.with_year(target)
        .or_else(|| {
            t.with_day(1)
                .and_then(|d| d.with_month(3))
                .and_then(|d| d.with_year(target))
        })
        .unwrap_or(*t)
}

/// Formats like Go's `time.Time.MarshalJSON` (without the quotes).
pub fn format(t: &DateTime<FixedOffset>) -> String {
    let mut out = String::with_capacity(35);
    format_into(t, &mut out);
    out
}

fn format_into(t: &DateTime<FixedOffset>, out: &mut String) {
    use std::fmt::Write;
    let year = t.year();
    let _ = if year < 0 {
        write!(out, "-{:04}", -year)
    } else {
        write!(out, "{:04}", year)
    };
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // chrono represents a leap second as nanosecond >= 1e9; Go has none.
    let nanos = t.nanosecond().min(999_999_999);
    if nanos != 0 {
        let mut frac = format!("{:09}", nanos);
        while frac.ends_with('0') {
            frac.pop();
        }
        out.push('.');
        out.push_str(&frac);
    }
    let off = t.offset().local_minus_utc();
    if off == 0 {
        out.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let abs = off.unsigned_abs();
        let _ = write!(out, "{}{:02}:{:02}", sign, abs / 3600, (abs / 60) % 60);
    }
}

/// Parses an RFC 3339 timestamp as Go writes it (any fraction length).
pub fn parse(s: &str) -> Result<DateTime<FixedOffset>, FormatError> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| FormatError::invalid("timestamp", format!("{s:?}: {e}")))
}

/// `#[serde(with = "crate::gotime::rfc3339")]` for `DateTime<FixedOffset>`
/// fields, encoding like Go (restic's year clamp applied).
pub mod rfc3339 {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(&super::fix_year(t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_format_examples() {
        for s in [
            "2015-01-02T18:10:50.895208559+01:00",
            "2014-12-06T17:50:23.34513538+01:00",
            "2023-07-25T20:01:44.007465374-02:30",
            "0001-01-01T00:00:00Z",
            "2020-02-29T12:00:00.1Z",
        ] {
            let t = parse(s).unwrap();
            assert_eq!(format(&t), s);
        }
        assert_eq!(
            format(&parse("2020-01-01T00:00:00.500000000+00:00").unwrap()),
            "2020-01-01T00:00:00.5Z"
        );
        assert!(is_zero(&zero()));
        assert!(parse("yesterday").is_err());
    }

    #[test]
    fn year_clamp() {
        let t = parse("9999-12-31T23:59:59Z").unwrap() + chrono::Duration::days(400);
        assert_eq!(fix_year(&t).year(), 9999);
        let t = parse("0000-03-01T00:00:00Z").unwrap() - chrono::Duration::days(800);
        assert!(t.year() < 0);
        assert_eq!(fix_year(&t).year(), 0);
    }
}
