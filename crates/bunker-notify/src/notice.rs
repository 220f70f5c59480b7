//! [`Notice`]: one message about one event, independent of how it is
//! delivered.

use bunker_policy::{EventKind, Priority};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// One message about one event, ready to be delivered to every target
/// whose filter accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub kind: EventKind,
    /// The item it is about, if any.
    pub item: Option<String>,
    /// The repository it is about, if any (checks; a backup's target).
    pub target: Option<String>,
    /// The item's priority, if known.
    pub priority: Option<Priority>,
    /// A one-line summary (email subject, push title).
    pub title: String,
    /// The details (error text, ages); may span lines.
    pub message: String,
    /// When it happened.
    pub time: DateTime<Utc>,
}

impl Notice {
    /// A notice of `kind` about nothing in particular; fill in the rest with
    /// the `with_*` methods or the public fields.
    pub fn new(
        kind: EventKind,
        title: impl Into<String>,
        message: impl Into<String>,
        time: DateTime<Utc>,
    ) -> Notice {
        Notice {
            kind,
            item: None,
            target: None,
            priority: None,
            title: title.into(),
            message: message.into(),
            time,
        }
    }

    /// The message `bunker notify test` sends.
    pub fn test(target_name: Option<&str>) -> Notice {
        let to = match target_name {
            Some(t) => format!(" to notification target \"{t}\""),
            None => String::new(),
        };
        Notice::new(
            EventKind::Test,
            "bunker: test notification",
            format!(
                "This is a test message from bunker{to}. If you read it, delivery works; no action is needed."
            ),
            Utc::now(),
        )
    }

    /// A backup of `item` started now.
    pub fn start(item: &str) -> Notice {
        Notice::new(
            EventKind::Start,
            format!("bunker: backup of {item} started"),
            format!("The backup of item \"{item}\" started."),
            Utc::now(),
        )
        .with_item(item)
    }

    /// A backup of `item` succeeded.
    pub fn success(item: &str, priority: Priority, time: DateTime<Utc>) -> Notice {
        Notice::new(
            EventKind::Success,
            format!("bunker: backup of {item} succeeded"),
            format!("The backup of item \"{item}\" succeeded."),
            time,
        )
        .with_item(item)
        .with_priority(priority)
    }

    /// A backup of `item` failed with `error`.
    pub fn failure(item: &str, priority: Priority, error: &str, time: DateTime<Utc>) -> Notice {
        Notice::new(
            EventKind::Failure,
            format!("bunker: backup of {item} failed"),
            format!("The backup of item \"{item}\" failed: {error}"),
            time,
        )
        .with_item(item)
        .with_priority(priority)
    }

    /// Something about `item` (or nothing in particular) that is worth
    /// knowing but is not a failure.
    pub fn warning(item: Option<&str>, message: &str, time: DateTime<Utc>) -> Notice {
        let about = item.map(|i| format!(" about {i}")).unwrap_or_default();
        let mut n = Notice::new(
            EventKind::Warning,
            format!("bunker: warning{about}"),
            message,
            time,
        );
        n.item = item.map(str::to_string);
        n
    }

    /// Sets the item.
    pub fn with_item(mut self, item: &str) -> Notice {
        self.item = Some(item.to_string());
        self
    }

    /// Sets the repository.
    pub fn with_target(mut self, repository: &str) -> Notice {
        self.target = Some(repository.to_string());
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Notice {
        self.priority = Some(priority);
        self
    }

    /// What a healthchecks `{item}` stands for: the item, else the
    /// repository.
    pub fn subject(&self) -> Option<&str> {
        self.item.as_deref().or(self.target.as_deref())
    }

    /// Whether the event is bad news (for push priorities and tags).
    pub fn is_bad(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Failure
                | EventKind::RpoBreach
                | EventKind::CheckFailed
                | EventKind::DrillFailed
        )
    }
}

/// A duration rounded to whole seconds, as `3h 5m`.
pub(crate) fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
