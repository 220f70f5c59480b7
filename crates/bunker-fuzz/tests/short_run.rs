//! The short fuzzing run CI does on every build: each target on its seed
//! corpus, then on a fixed number of deterministic mutations (seed 1), well
//! under a few seconds each. A panic fails with the input and how to
//! reproduce it. Longer runs: `docs/fuzzing.md`.

use std::time::Duration;

use bunker_fuzz::{default_corpus_root, fuzz, load_corpus, FuzzOptions, Target};

#[test]
fn every_decoder_survives_a_short_deterministic_fuzz_run() {
    let root = default_corpus_root();
    let opts = FuzzOptions {
        seed: 1,
        max_iterations: 20_000,
        max_time: Duration::from_secs(4),
        max_len: 64 << 10,
    };
    for target in Target::ALL {
        let corpus = load_corpus(&root, target);
        assert!(
            corpus.iter().any(|c| !c.is_empty()),
            "no seed corpus for {} in {}",
            target.name(),
            root.display()
        );
        match fuzz(target, &corpus, &opts) {
            Ok(stats) => eprintln!("{:<12} {} inputs", target.name(), stats.iterations),
            Err(crash) => panic!(
                "{} panicked at iteration {} (seed {}): {}\ninput ({} bytes): {:?}\n\
                 reproduce: cargo run -p bunker-fuzz -- --seed {} {}",
                target.name(),
                crash.iteration,
                opts.seed,
                crash.message,
                crash.input.len(),
                String::from_utf8_lossy(&crash.input),
                opts.seed,
                target.name()
            ),
        }
    }
}
