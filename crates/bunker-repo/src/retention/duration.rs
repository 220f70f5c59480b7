//! Calendar durations for `keep_within*` rules, as restic's `Duration`.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, FixedOffset, NaiveDate};
use std::fmt;

/// A calendar duration of years, months, days and hours, applied the way
/// restic (Go's `time.AddDate`) does: `1m` before March 31 is March 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KeepDuration {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepDurationError {
    /// A unit was expected but something else was found.
    #[error("invalid unit {unit:?} after number {number}")]
    BadUnit {
        /// The unit text.
        unit: String,
        /// The number before it.
        number: i64,
    },
    /// `m` is ambiguous in a policy file (minutes or months?).
    #[error("unit \"m\" is ambiguous here; write \"mo\" for months")]
    AmbiguousMinutes,
    /// No number where one was expected.
    #[error("no number found in {0:?}")]
    NoNumber(String),
    /// A number without a unit.
    #[error("no unit found after number {0}")]
    NoUnit(i64),
    /// The value does not fit.
    #[error("number too large")]
    Overflow,
    /// The string was empty.
    #[error("empty duration")]
    Empty,
}

impl KeepDuration {
    /// A duration of `n` days.
    pub fn days(n: i32) -> Self {
        KeepDuration {
            days: n,
            ..Self::default()
        }
    }

    /// True if all components are zero (restic treats this as "not set").
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Parses restic's syntax `1y5m7d2h` (`m` = months), as accepted by
    /// `restic forget --keep-within`.
    pub fn parse_restic(s: &str) -> Result<Self, KeepDurationError> {
        Self::parse_with(s, false)
    }

    /// Parses the policy-file syntax: numbers followed by `y`/`year(s)`,
    /// `mo`/`month(s)`, `w`/`week(s)` (7 days), `d`/`day(s)`, `h`/`hour(s)`,
    /// optionally separated by spaces, e.g. `30d`, `1y 6mo`, `2w`. A bare `m`
    /// is rejected as ambiguous.
    pub fn parse_policy(s: &str) -> Result<Self, KeepDurationError> {
        Self::parse_with(s, true)
    }

    fn parse_with(s: &str, policy: bool) -> Result<Self, KeepDurationError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeepDurationError::Empty);
        }
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let mut d = KeepDuration::default();
        while i < chars.len() {
            while policy && i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let neg = chars[i] == '-';
            if neg {
                i += 1;
            }
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(KeepDurationError::NoNumber(chars[start..].iter().collect()));
            }
            let digits: String = chars[start..i].iter().collect();
            let mut n: i64 = digits.parse().map_err(|_| KeepDurationError::Overflow)?;
            if neg {
                n = -n;
            }
            while policy && i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let ustart = i;
            if policy {
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    i += 1;
                }
            } else if i < chars.len() {
                i += 1;
            }
            let unit: String = chars[ustart..i].iter().collect();
            if unit.is_empty() {
                return Err(KeepDurationError::NoUnit(n));
            }
            let v = i32::try_from(n).map_err(|_| KeepDurationError::Overflow)?;
            match (unit.as_str(), policy) {
                ("y", _) | ("year" | "years", true) => d.years = v,
                ("m", false) | ("mo" | "month" | "months", true) => d.months = v,
                ("w" | "week" | "weeks", true) => {
                    d.days = v.checked_mul(7).ok_or(KeepDurationError::Overflow)?
                }
                ("d", _) | ("day" | "days", true) => d.days = v,
                ("h", _) | ("hour" | "hours", true) => d.hours = v,
                ("m", true) => return Err(KeepDurationError::AmbiguousMinutes),
                _ => return Err(KeepDurationError::BadUnit { unit, number: n }),
            }
        }
        Ok(d)
    }

    /// The rough length in hours, for comparing durations.
    pub fn approx_hours(&self) -> i64 {
        (i64::from(self.years) * 365 * 24)
            + (i64::from(self.months) * 30 * 24)
            + (i64::from(self.days) * 24)
            + i64::from(self.hours)
    }

    /// `t` minus this duration, computed like Go's
    /// `t.AddDate(-y, -m, -d).Add(-h hours)` in `t`'s own offset. `None` on
    /// overflow (the cut-off is then before any representable time).
    pub fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = t.naive_local();
        let months_total = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months_total.div_euclid(12)).ok()?;
        let month0 = u32::try_from(months_total.rem_euclid(12)).ok()?;
        let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
        let day_offset = i64::from(local.day()) - 1 - i64::from(self.days);
        let date = first.checked_add_signed(ChronoDuration::try_days(day_offset)?)?;
        let naive = date.and_time(local.time());
        let shifted = naive.and_local_timezone(*t.offset()).single()?;
        shifted.checked_sub_signed(ChronoDuration::try_hours(i64::from(self.hours))?)
    }
}

impl fmt::Display for KeepDuration {
    /// Formats like restic: `1y2m3d4h`, omitting zero parts (`m` = months).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.years != 0 {
            write!(f, "{}y", self.years)?;
        }
        if self.months != 0 {
            write!(f, "{}m", self.months)?;
        }
        if self.days != 0 {
            write!(f, "{}d", self.days)?;
        }
        if self.hours != 0 {
            write!(f, "{}h", self.hours)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("valid test time")
    }

    #[test]
    fn parses_restic_and_policy_syntax() {
        let d = KeepDuration::parse_restic("1y5m7d2h").expect("valid");
        assert_eq!((d.years, d.months, d.days, d.hours), (1, 5, 7, 2));
        assert_eq!(d.to_string(), "1y5m7d2h");
        assert_eq!(
            KeepDuration::parse_policy("30d"),
            Ok(KeepDuration::days(30))
        );
        assert_eq!(KeepDuration::parse_policy("2w"), Ok(KeepDuration::days(14)));
        let d = KeepDuration::parse_policy("1 year 6mo").expect("valid");
        assert_eq!((d.years, d.months), (1, 6));
        assert_eq!(
            KeepDuration::parse_policy("90m"),
            Err(KeepDurationError::AmbiguousMinutes)
        );
        assert!(matches!(
            KeepDuration::parse_restic("2w"),
            Err(KeepDurationError::BadUnit { .. })
        ));
        assert_eq!(
            KeepDuration::parse_restic("5"),
            Err(KeepDurationError::NoUnit(5))
        );
        assert_eq!(
            KeepDuration::parse_policy(""),
            Err(KeepDurationError::Empty)
        );
        assert!(KeepDuration::parse_policy("d").is_err());
        assert!(KeepDuration::parse_policy("99999999999d").is_err());
    }

    #[test]
    fn subtracts_like_go_add_date() {
        // March 31 minus one month normalises Feb 31 to March 3 (non-leap).
        let d = KeepDuration {
            months: 1,
            ..Default::default()
        };
        assert_eq!(
            d.before(t("2023-03-31T10:00:00+02:00")),
            Some(t("2023-03-03T10:00:00+02:00"))
        );
        // Leap year: Feb 31 2024 -> March 2.
        assert_eq!(
            d.before(t("2024-03-31T10:00:00Z")),
            Some(t("2024-03-02T10:00:00Z"))
        );
        // Days crossing a year, hours are absolute.
        let d = KeepDuration {
            days: 2,
            hours: 5,
            ..Default::default()
        };
        assert_eq!(
            d.before(t("2024-01-01T03:00:00Z")),
            Some(t("2023-12-29T22:00:00Z"))
        );
        let d = KeepDuration {
            years: 1,
            ..Default::default()
        };
        assert_eq!(
            d.before(t("2024-02-29T00:00:00Z")),
            Some(t("2023-03-01T00:00:00Z"))
        );
        let huge = KeepDuration {
            years: i32::MAX,
            ..Default::default()
        };
        assert_eq!(huge.before(t("2024-02-29T00:00:00Z")), None);
    }
}
