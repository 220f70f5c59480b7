//! Progress display: an indicatif bar on a terminal, JSON status lines with
//! `--json -v`, or nothing. Warnings always reach standard error.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bunker_repo::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::output;

/// How often JSON status lines are printed at most.
const JSON_EVERY: Duration = Duration::from_secs(1);
/// Redraws per second of the bar.
const BAR_HZ: u8 = 4;

#[derive(Default)]
struct Counters {
    total_items: AtomicU64,
    total_bytes: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    warnings: AtomicU64,
}

enum Display {
    None,
    Bar(ProgressBar),
    Json {
        last: Mutex<Instant>,
        current: Mutex<String>,
    },
}

/// The CLI's implementation of the engine's progress hooks.
pub struct Reporter {
    counts: Arc<Counters>,
    display: Display,
    json: bool,
    start: Instant,
    /// `during` of JSON error messages ("archival", "restore", "check").
    during: &'static str,
    /// Prefix of warnings on a terminal ("warning", or "error" for check).
    label: &'static str,
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    message_type: &'static str,
    seconds_elapsed: u64,
    percent_done: f64,
    total_files: u64,
    files_done: u64,
    total_bytes: u64,
    bytes_done: u64,
    error_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    current_files: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    message_type: &'static str,
    error: JsonErrorMessage<'a>,
    during: &'a str,
    item: &'a str,
}

#[derive(Serialize)]
struct JsonErrorMessage<'a> {
    message: &'a str,
}

fn pct(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

impl Reporter {
    /// A reporter following the global options. `unit` names the items ("files", "packs").
    pub fn new(g: &GlobalOpts, unit: &'static str, during: &'static str) -> Reporter {
        let counts = Arc::new(Counters::default());
        let display = if g.json {
            if g.verbose > 0 && !g.quiet {
                Display::Json {
                    last: Mutex::new(Instant::now()),
                    current: Mutex::new(String::new()),
                }
            } else {
                Display::None
            }
        } else if g.quiet || g.no_progress || !std::io::stderr().is_terminal() {
            Display::None
        } else {
            Display::Bar(make_bar(&counts, unit))
        };
        Reporter {
            counts,
            display,
            json: g.json,
            start: Instant::now(),
            during,
            label: "warning",
        }
    }

    /// Print reported problems with this prefix instead of "warning".
    pub fn with_label(mut self, label: &'static str) -> Reporter {
        self.label = label;
        self
    }

    /// Remove the bar before printing a summary.
    pub fn finish(&self) {
        if let Display::Bar(b) = &self.display {
            b.finish_and_clear();
        }
    }

    fn maybe_json_status(&self) {
        let Display::Json { last, current } = &self.display else {
            return;
        };
        {
            let Ok(mut l) = last.lock() else { return };
            if l.elapsed() < JSON_EVERY {
                return;
            }
            *l = Instant::now();
        }
        let c = &self.counts;
        let (tb, b) = (
            c.total_bytes.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
        );
        let cur = current.lock().map(|s| s.clone()).unwrap_or_default();
        let status = JsonStatus {
            message_type: "status",
            seconds_elapsed: self.start.elapsed().as_secs(),
            percent_done: pct(b, tb),
            total_files: c.total_items.load(Ordering::Relaxed),
            files_done: c.items.load(Ordering::Relaxed),
            total_bytes: tb,
            bytes_done: b,
            error_count: c.warnings.load(Ordering::Relaxed),
            current_files: if cur.is_empty() {
                vec![]
            } else {
                vec![cur.as_str()]
            },
        };
        let _ = output::json_line(&status);
    }
}

fn make_bar(counts: &Arc<Counters>, unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(BAR_HZ));
    let c = counts.clone();
    let style = ProgressStyle::with_template(
        "[{elapsed}] {percent:>3}% {items} {bytes_done} {rate} ETA {eta} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "items",
        move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let done = c.items.load(Ordering::Relaxed);
            let total = c.total_items.load(Ordering::Relaxed);
            let _ = if total > 0 {
                write!(w, "{done}/{total} {unit}")
            } else {
                write!(w, "{done} {unit}")
            };
        },
    )
    .with_key(
        "bytes_done",
        |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = match s.len() {
                Some(len) if len > 0 => {
                    write!(w, "{} / {}", output::bytes(s.pos()), output::bytes(len))
                }
                _ => write!(w, "{}", output::bytes(s.pos())),
            };
        },
    )
    .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}/s", output::bytes(s.per_sec() as u64));
    })
    .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = if s.len().unwrap_or(0) > 0 {
            write!(w, "{}", output::duration(s.eta()))
        } else {
            write!(w, "-")
        };
    });
    bar.set_style(style);
    bar
}

impl Progress for Reporter {
    fn set_total(&self, items: u64, bytes: u64) {
        self.counts.total_items.store(items, Ordering::Relaxed);
        self.counts.total_bytes.store(bytes, Ordering::Relaxed);
        if let Display::Bar(b) = &self.display {
            b.set_length(bytes);
        }
        self.maybe_json_status();
    }

    fn add_items(&self, n: u64) {
        self.counts.items.fetch_add(n, Ordering::Relaxed);
        if let Display::Bar(b) = &self.display {
            b.tick();
        }
        self.maybe_json_status();
    }

    fn add_bytes(&self, n: u64) {
        self.counts.bytes.fetch_add(n, Ordering::Relaxed);
        if let Display::Bar(b) = &self.display {
            b.inc(n);
        }
        self.maybe_json_status();
    }

    fn current(&self, what: &str) {
        match &self.display {
            Display::Bar(b) => b.set_message(what.to_string()),
            Display::Json { current, .. } => {
                if let Ok(mut c) = current.lock() {
                    c.clear();
                    c.push_str(what);
                }
            }
            Display::None => {}
        }
    }

    fn wants_totals(&self) -> bool {
        !matches!(self.display, Display::None)
    }

    fn warn(&self, msg: &str) {
        self.counts.warnings.fetch_add(1, Ordering::Relaxed);
        if self.json {
            let (item, message) = msg.split_once(": ").unwrap_or(("", msg));
            let e = JsonError {
                message_type: "error",
                error: JsonErrorMessage { message },
                during: self.during,
                item,
            };
            if let Ok(line) = serde_json::to_string(&e) {
                eprintln!("{line}");
            }
            return;
        }
        match &self.display {
            Display::Bar(b) => b.suspend(|| eprintln!("{}: {msg}", self.label)),
            _ => eprintln!("{}: {msg}", self.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(json: bool, verbose: u8) -> GlobalOpts {
        GlobalOpts {
            repo: None,
            password_file: None,
            password_command: None,
            json,
            quiet: false,
            verbose,
            no_progress: true,
            compression: None,
            pack_size: None,
            cache_dir: None,
            no_cache: false,
            no_lock: false,
            options: vec![],
        }
    }

    #[test]
    fn counts_hooks_without_a_display() {
        let r = Reporter::new(&g(false, 0), "files", "archival");
        r.set_total(10, 1000);
        r.add_items(3);
        r.add_bytes(300);
        r.warn("/x: permission denied");
        assert_eq!(r.counts.items.load(Ordering::Relaxed), 3);
        assert_eq!(r.counts.bytes.load(Ordering::Relaxed), 300);
        assert_eq!(r.counts.warnings.load(Ordering::Relaxed), 1);
        assert!(matches!(r.display, Display::None));
        assert!(!r.wants_totals());
    }

    #[test]
    fn json_status_only_with_verbose() {
        assert!(matches!(
            Reporter::new(&g(true, 0), "files", "x").display,
            Display::None
        ));
        assert!(matches!(
            Reporter::new(&g(true, 1), "files", "x").display,
            Display::Json { .. }
        ));
        assert!(Reporter::new(&g(true, 1), "files", "x").wants_totals());
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(pct(5, 0), 0.0);
        assert_eq!(pct(5, 10), 0.5);
        assert_eq!(pct(20, 10), 1.0);
    }
}
