//! Lock files (stored in the unpacked encoding under `locks/`).

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// A lock older than this is stale, whatever its owner.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(30);

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// restic's lock document, with its JSON names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    #[serde(with = "crate::gotime::rfc3339")]
    pub time: DateTime<FixedOffset>,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub pid: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub gid: u32,
}

impl LockFile {
    /// True if the lock was created more than [`STALE_AFTER`] before `now`.
    /// (restic also considers same-host locks of dead processes stale; that
    /// check needs the OS and is left to the caller.)
    pub fn is_stale(&self, now: DateTime<FixedOffset>) -> bool {
        now.signed_duration_since(self.time) > STALE_AFTER
    }

    /// True if this lock conflicts with a lock of kind `exclusive`.
    pub fn conflicts_with(&self, exclusive: bool) -> bool {
        self.exclusive || exclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gotime;

    #[test]
    fn json_like_restic() {
        let l = LockFile {
            time: gotime::parse("2015-06-27T12:18:51.759239612+02:00").unwrap(),
            exclusive: false,
            hostname: "kasimir".into(),
            username: "fd0".into(),
            pid: 13607,
            uid: 1000,
            gid: 100,
        };
        let j = crate::gojson::to_vec(&l).unwrap();
        assert_eq!(
            String::from_utf8(j.clone()).unwrap(),
            r#"{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":false,"hostname":"kasimir","username":"fd0","pid":13607,"uid":1000,"gid":100}"#
        );
        assert_eq!(serde_json::from_slice::<LockFile>(&j).unwrap(), l);
        let root = LockFile {
            uid: 0,
            gid: 0,
            ..l.clone()
        };
        assert!(!String::from_utf8(crate::gojson::to_vec(&root).unwrap())
            .unwrap()
            .contains("uid"));
        assert!(l.is_stale(l.time + chrono::Duration::minutes(31)));
        assert!(!l.is_stale(l.time + chrono::Duration::minutes(29)));
        assert!(l.conflicts_with(true) && !l.conflicts_with(false));
    }
}
