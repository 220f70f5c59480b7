//! `bunker notify test`: sends a test notice to the policy's notification
//! targets. Delivery is bunker-notify's ([`bunker_notify::Notifier`]).

use anyhow::{bail, Result};
use bunker_notify::{Delivery, Notice, Notifier};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output;

const LONG_ABOUT: &str = "\
Work with the notification targets of the policy (its `notifications:` section: webhooks, \
healthchecks ping URLs, email). `notify test` sends a test message to TARGET, or to every \
target when none is named, whatever the targets' event filters say, with the same retries and \
time limits as real notices (each target's `timeout` per attempt and `retry_for` in all). \
Healthchecks targets receive it on their `/log` URL, which records it without changing the \
check's state; a target whose URL contains {item} needs --item. Every target gets one line: \
`sent` or `FAILED` with the reason (secrets in URLs are shown as ***). The exit status is 0 \
when every delivery succeeded and 1 otherwise, with one line naming each failed target and why.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker notify test
    bunker notify test ops-mail --config /etc/bunker/bunker.yaml
    bunker notify test healthchecks --item db
    bunker notify test --json | jq '.results[] | select(.ok == false)'";

/// Send test notifications
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send a test message to one or every notification target
    #[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
    Test(TestArgs),
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The target to test (default: every target of the policy)
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// Send the test as about this item (for per-item healthchecks URLs)
    #[arg(long, value_name = "NAME")]
    pub item: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Serialize)]
struct JsonResult<'a> {
    target: &'a str,
    ok: bool,
    attempts: u32,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    message_type: &'static str,
    results: Vec<JsonResult<'a>>,
    failed: usize,
}

pub fn run(g: &GlobalOpts, args: NotifyArgs) -> Result<Status> {
    let NotifyCommand::Test(args) = args.command;
    let policy = args.policy.load()?;
    if policy.notifications.is_empty() {
        bail!(
            "policy {} has no notification targets; add a `notifications:` section (see docs/notifications.md)",
            args.policy.path().display()
        );
    }
    let notifier = Notifier::new(&policy.notifications)?;
    let mut notice = Notice::test(args.target.as_deref());
    if let Some(item) = &args.item {
        notice = notice.with_item(item);
    }
    let deliveries = match &args.target {
        Some(t) => vec![notifier.send_to(t, &notice)?],
        None => notifier.send_all(&notice),
    };
    let failed: Vec<&Delivery> = deliveries.iter().filter(|d| !d.ok).collect();
    if g.json {
        output::json_line(&JsonSummary {
            message_type: "notify_test",
            results: deliveries
                .iter()
                .map(|d| JsonResult {
                    target: &d.target,
                    ok: d.ok,
                    attempts: d.attempts,
                    error: d.error.as_deref(),
                })
                .collect(),
            failed: failed.len(),
        })?;
    } else {
        for d in &deliveries {
            let attempts = match d.attempts {
                1 => "1 attempt".to_string(),
                n => format!("{n} attempts"),
            };
            match &d.error {
                None => println!("sent    {} ({attempts})", d.target),
                Some(e) => println!("FAILED  {} ({attempts}): {e}", d.target),
            }
        }
    }
    match failed.as_slice() {
        [] => Ok(Status::Success),
        [one] => bail!(
            "notification target \"{}\" failed: {}",
            one.target,
            one.error.as_deref().unwrap_or("unknown error")
        ),
        many => {
            let each: Vec<String> = many
                .iter()
                .map(|d| {
                    format!(
                        "\"{}\" ({})",
                        d.target,
                        d.error.as_deref().unwrap_or("unknown error")
                    )
                })
                .collect();
            bail!(
                "{} of {} notification targets failed: {}",
                many.len(),
                deliveries.len(),
                each.join("; ")
            )
        }
    }
}
