//! `bunker recover --time T`: every policy item back to one point in time.
//! The work is the engine's ([`bunker_engine::recover::recover_to_time`]);
//! this renders its summary.

use anyhow::{bail, Context, Result};
use bunker_engine::pool::RepoPool;
use bunker_engine::recover::{recover_to_time, RecoverOptions, RecoverState};

use super::recover::RecoverArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output::{self, Table};

pub fn run(g: &GlobalOpts, args: RecoverArgs) -> Result<Status> {
    let text = args.time.clone().unwrap_or_default();
    let time = bunker_repo::pg::restore::parse_target_time(&text)?;
    let target = args.target.clone().context("--time needs --target DIR")?;
    let policy = args.policy.load()?;
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, false)?, &sink);
    let opts = RecoverOptions {
        time,
        items: args.items.clone(),
        target: std::path::absolute(&target).unwrap_or(target),
        start: args.start,
        timeout: args.timeout,
        bunker_exe: std::env::current_exe().ok(),
        cancel: crate::interrupt::token(),
    };
    let rows = recover_to_time(&mut pool, &opts, &sink)?;
    if g.json {
        output::json_line(&serde_json::json!({
            "message_type": "recover_time",
            "time": time.to_rfc3339(),
            "items": rows,
        }))?;
    } else if !g.quiet {
        println!(
            "recovering to {} into {}",
            time.to_rfc3339(),
            opts.target.display()
        );
        let mut t = Table::new(&[
            "Item",
            "Kind",
            "State",
            "Snapshot",
            "Snapshot time",
            "Before T",
            "Path",
        ]);
        for r in &rows {
            t.row(vec![
                vec![r.item.clone()],
                vec![r.kind.clone()],
                vec![serde_json::to_value(r.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()],
                vec![r
                    .snapshots
                    .iter()
                    .map(|s| s[..8.min(s.len())].to_string())
                    .collect::<Vec<_>>()
                    .join(",")],
                vec![r
                    .snapshot_time
                    .as_ref()
                    .map(output::local_time)
                    .unwrap_or_else(|| "-".into())],
                vec![r
                    .rpo_seconds
                    .map(|s| {
                        humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64))
                            .to_string()
                    })
                    .unwrap_or_else(|| "-".into())],
                vec![r.path.display().to_string()],
            ]);
        }
        print!("{}", t.render());
        for r in &rows {
            if let Some(p) = r.port {
                println!(
                    "{}: the recovered server runs on 127.0.0.1:{p} (socket in {})",
                    r.item,
                    r.path.display()
                );
            }
            if let Some(n) = &r.note {
                println!("{}: {n}", r.item);
            }
            if let Some(e) = &r.error {
                println!("{}: {e}", r.item);
            }
        }
    }
    let failed = rows
        .iter()
        .filter(|r| r.state == RecoverState::Failed)
        .count();
    if failed > 0 {
        bail!("{failed} of {} item(s) could not be recovered", rows.len());
    }
    if rows.iter().any(|r| r.state == RecoverState::NoSnapshot) {
        return Ok(Status::Incomplete);
    }
    Ok(Status::Success)
}
