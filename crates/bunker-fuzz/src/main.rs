//! `bunker-fuzz`: run the fuzz targets for a while, or make a seed corpus
//! from a real repository. See `docs/fuzzing.md`.
//!
//!     bunker-fuzz [--seconds N] [--seed S] [TARGET...]
//!     bunker-fuzz seeds REPOSITORY PASSWORD_FILE CORPUS_DIR

mod seeds;

use std::process::ExitCode;
use std::time::Duration;

use bunker_fuzz::{default_corpus_root, fuzz, load_corpus, FuzzOptions, Target};

fn usage() -> ExitCode {
    eprintln!(
        "usage: bunker-fuzz [--seconds N] [--seed S] [TARGET...]\n       \
         bunker-fuzz seeds REPOSITORY PASSWORD_FILE CORPUS_DIR\n\
         targets: {}",
        Target::ALL.map(|t| t.name()).join(" ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seeds") {
        return match args.get(1..4) {
            Some([repo, pw, out]) => match seeds::write_seeds(repo, pw, out.as_ref()) {
                Ok(n) => {
                    println!("wrote {n} seed files");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bunker-fuzz: {e}");
                    ExitCode::FAILURE
                }
            },
            _ => usage(),
        };
    }
    let mut opts = FuzzOptions::default();
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => match it.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(s) => opts.max_time = Duration::from_secs(s),
                None => return usage(),
            },
            "--seed" => match it.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(s) => opts.seed = s,
                None => return usage(),
            },
            name => match Target::from_name(name) {
                Some(t) => targets.push(t),
                None => return usage(),
            },
        }
    }
    if targets.is_empty() {
        targets = Target::ALL.to_vec();
    }
    let root = default_corpus_root();
    for t in targets {
        let corpus = load_corpus(&root, t);
        match fuzz(t, &corpus, &opts) {
            Ok(stats) => println!("{:<12} {} inputs, no crash", t.name(), stats.iterations),
            Err(crash) => {
                let file = format!("crash-{}-{}.bin", t.name(), crash.iteration);
                let _ = std::fs::write(&file, &crash.input);
                eprintln!(
                    "{}: panic at iteration {} (seed {}): {}; input written to {file}",
                    t.name(),
                    crash.iteration,
                    opts.seed,
                    crash.message
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
