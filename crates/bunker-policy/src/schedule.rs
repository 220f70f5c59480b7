//! When an item is due: fixed intervals, cron expressions, or on change.

use chrono::{DateTime, Local, Utc};
use std::fmt;
use std::time::Duration;

/// An item's schedule.
// `Cron` holds croner's parsed pattern by value as the public contract.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Schedule {
    /// Run when this much time has passed since the last success.
    Every(Duration),
    /// Run at the times matched by a cron expression, evaluated in the
    /// machine's local time zone (5 fields, or 6 with leading seconds).
    Cron(croner::Cron),
    /// Run when the source changed; change detection is up to the caller,
    /// so time-based due-ness is only "never ran yet".
    OnChange,
}

/// Why a schedule string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `every <duration>` with an invalid duration.
    #[error("invalid duration {0:?} in schedule")]
    Duration(String),
    /// An invalid cron expression.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// What the cron parser said.
        reason: String,
    },
}

/// Parses a human duration such as `24h`, `90m`, `30d`, `1w`, `2h30m`.
/// Zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("duration must be greater than zero".to_string());
    }
    Ok(d)
}

impl Schedule {
    /// Parses `every 2h`, `on_change`, or a cron expression.
    pub fn parse(s: &str) -> Result<Schedule, ScheduleError> {
        let t = s.trim();
        if t == "on_change" {
            return Ok(Schedule::OnChange);
        }
        if let Some(rest) = t.strip_prefix("every ") {
            return parse_duration(rest)
                .map(Schedule::Every)
                .map_err(|_| ScheduleError::Duration(rest.trim().to_string()));
        }
        Self::parse_cron(t)
    }

    /// Parses a cron expression (5 fields, 6 with seconds, or `@daily`-style
    /// nicknames) and checks that it ever fires.
    pub fn parse_cron(expr: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError::Cron {
            expr: expr.to_string(),
            reason,
        };
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(err(format!("expected 5 or 6 fields, found {fields}")));
        }
        let cron = croner::Cron::new(expr)
            .with_seconds_optional()
            .parse()
            .map_err(|e| err(e.to_string()))?;
        let probe = DateTime::<Utc>::UNIX_EPOCH;
        cron.find_next_occurrence(&probe, false)
            .map_err(|_| err("it never matches".to_string()))?;
        Ok(Schedule::Cron(cron))
    }

    /// The first run time strictly after `t`. Cron expressions are
    /// evaluated in local time. `OnChange` (and a cron that has no further
    /// match) returns `DateTime::<Utc>::MAX_UTC`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| t.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Schedule::Cron(c) => c
                .find_next_occurrence(&t.with_timezone(&Local), false)
                .map(|l| l.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Schedule::OnChange => DateTime::<Utc>::MAX_UTC,
        }
    }

    /// Whether a run is due at `now` given the last successful run. Never
    /// having run means due.
    pub fn is_due(&self, last_success: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match last_success {
            None => true,
            Some(last) => match self {
                Schedule::OnChange => false,
                _ => self.next_after(last) <= now,
            },
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "{}", c.pattern),
            Schedule::OnChange => write!(f, "on_change"),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            (Schedule::Cron(a), Schedule::Cron(b)) => {
                a.pattern.to_string() == b.pattern.to_string()
            }
            (Schedule::OnChange, Schedule::OnChange) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            Schedule::parse("every 2h"),
            Ok(Schedule::Every(Duration::from_secs(7200)))
        );
        assert_eq!(
            Schedule::parse("every 90m"),
            Ok(Schedule::Every(Duration::from_secs(5400)))
        );
        assert_eq!(Schedule::parse("on_change"), Ok(Schedule::OnChange));
        assert!(matches!(
            Schedule::parse("0 3 * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("30 0 3 * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(Schedule::parse("@daily"), Ok(Schedule::Cron(_))));
        assert!(matches!(
            Schedule::parse("every 2 hourz"),
            Err(ScheduleError::Duration(_))
        ));
        assert!(matches!(
            Schedule::parse("every 0s"),
            Err(ScheduleError::Duration(_))
        ));
        assert!(matches!(
            Schedule::parse("61 * * * *"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("* * *"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 30 2 *"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("daily"),
            Err(ScheduleError::Cron { .. })
        ));
    }

    #[test]
    fn every_due_ness() {
        let s = Schedule::Every(Duration::from_secs(2 * 3600));
        let last = utc("2024-05-01T10:00:00Z");
        assert!(s.is_due(None, last));
        assert!(!s.is_due(Some(last), utc("2024-05-01T11:59:59Z")));
        assert!(s.is_due(Some(last), utc("2024-05-01T12:00:00Z")));
        assert_eq!(s.next_after(last), utc("2024-05-01T12:00:00Z"));
    }

    #[test]
    fn cron_runs_in_local_time() {
        let s = Schedule::parse("0 3 * * *").expect("valid cron");
        let t = utc("2024-05-01T10:17:00Z");
        let next = s.next_after(t);
        assert!(next > t);
        assert!(next - t <= chrono::Duration::hours(25));
        let local = next.with_timezone(&Local);
        assert_eq!((local.hour(), local.minute(), local.second()), (3, 0, 0));
        // due once the next 03:00 local has passed
        assert!(!s.is_due(Some(t), next - chrono::Duration::seconds(1)));
        assert!(s.is_due(Some(t), next));
        // the following run is a day later (modulo DST changes)
        let after = s.next_after(next);
        let gap = after - next;
        assert!(gap >= chrono::Duration::hours(23) && gap <= chrono::Duration::hours(25));
    }

    #[test]
    fn cron_with_seconds_and_exact_boundary() {
        let s = Schedule::parse("15 */10 * * * *").expect("valid cron");
        let base = Local
            .with_ymd_and_hms(2024, 1, 10, 8, 0, 15)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc);
        // strictly after: the matching instant itself is not returned
        let next = s.next_after(base);
        assert_eq!(next - base, chrono::Duration::minutes(10));
    }

    #[test]
    fn on_change_only_due_when_never_run() {
        let s = Schedule::OnChange;
        let now = utc("2024-05-01T10:00:00Z");
        assert!(s.is_due(None, now));
        assert!(!s.is_due(Some(now - chrono::Duration::days(400)), now));
        assert_eq!(s.next_after(now), DateTime::<Utc>::MAX_UTC);
    }
}
