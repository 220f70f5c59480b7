//! `bunker`: the command-line front end of the bunker backup tool.
//!
//! One module per verb lives in [`commands`]; [`cli`] holds the global options
//! and the manual-page texts, [`exit`] the exit statuses and the single mapping
//! from errors to them, [`password`] where passwords come from, [`repo`] how
//! repositories are opened and locked, [`progress`] the progress display and
//! [`interrupt`] the SIGINT/SIGTERM handling, [`events`] the rendering of
//! the engine's events. The work itself is the libraries' (`bunker-engine`
//! runs policies, `bunker-repo` owns repository operations).

mod audit_trail;
mod cli;
mod commands;
mod events;
mod exit;
mod interrupt;
mod output;
mod password;
mod progress;
mod repo;

use std::process::ExitCode;

use clap::Parser;

/// Log filter: `BUNKER_LOG`, else `RUST_LOG`, else from -q / -v.
fn init_logging(g: &cli::GlobalOpts) {
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let spec = std::env::var("BUNKER_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| default.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let style = LogStyle::detect();
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(g.verbose > 1)
        .with_ansi(style.color);
    let _ = if style.timestamps {
        fmt.try_init()
    } else {
        fmt.without_time().try_init()
    };
}

/// How log lines look: colour only on a terminal and without `NO_COLOR`
/// (any non-empty value, see no-color.org); timestamps only on a terminal
/// (a log file or the journal has its own, and a script reading stderr
/// wants the plain `WARN message`).
struct LogStyle {
    color: bool,
    timestamps: bool,
}

impl LogStyle {
    fn detect() -> LogStyle {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        LogStyle {
            color: tty && !no_color,
            timestamps: tty,
        }
    }
}

fn main() -> ExitCode {
    exit::install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors are fatal (1).
            let code = if e.use_stderr() {
                exit::FATAL
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The daemon logs and handles its signals itself.
    if let commands::Command::Daemon(a) = &cli.command {
        commands::daemon::init_logging(&cli.global, a);
    } else {
        init_logging(&cli.global);
        interrupt::install();
    }
    match commands::run(&cli.global, cli.command) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            let code = exit::code_for(&err);
            // An interrupted command already said so; its error is the interruption.
            if code != exit::INTERRUPTED {
                eprintln!("bunker: error: {}", exit::one_line(&err));
            }
            ExitCode::from(code)
        }
    }
}
