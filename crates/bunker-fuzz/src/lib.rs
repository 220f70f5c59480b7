//! Fuzz targets for every decoder of untrusted repository bytes, and a
//! small deterministic mutation fuzzer that runs them on the stable
//! toolchain (no sanitizers, no nightly flags, no extra tools).
//!
//! Each [`Target`] takes arbitrary bytes and feeds them to the real decoder
//! the repository code uses; a panic is a bug (decoders return errors on
//! bad input). Encrypted formats are fuzzed through their plaintext: the
//! harness encrypts the input with a fixed key and calls the decoder on the
//! ciphertext, so the mutations reach the parser behind the MAC (a mutated
//! ciphertext would only ever fail the MAC).
//!
//! The fuzzer ([`fuzz`]) mutates a seed corpus (real repository files,
//! decrypted, in `corpus/<target>/`) with a seeded PRNG: the same seed and
//! iteration count give the same inputs, so a CI failure reproduces
//! exactly. See `docs/fuzzing.md`.

mod mutate;
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use mutate::Rng;
pub use targets::{run, Target};

/// Limits of one fuzzing run of one target.
#[derive(Clone, Copy, Debug)]
pub struct FuzzOptions {
    /// PRNG seed: the same seed gives the same inputs.
    pub seed: u64,
    /// Stop after this many inputs...
    pub max_iterations: u64,
    /// ...or after this long, whichever comes first.
    pub max_time: Duration,
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            seed: 1,
            max_iterations: u64::MAX,
            max_time: Duration::from_secs(10),
            max_len: 64 << 10,
        }
    }
}

/// An input that made a target panic.
#[derive(Debug)]
pub struct Crash {
    pub target: Target,
    pub input: Vec<u8>,
    pub message: String,
    /// The iteration that produced it (with the seed, enough to reproduce).
    pub iteration: u64,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct FuzzStats {
    pub iterations: u64,
}

/// The seed corpus of `target` below `corpus_root` (`corpus/<target>/*`),
/// sorted by file name so the run is deterministic; an empty input when the
/// directory is missing or empty.
pub fn load_corpus(corpus_root: &Path, target: Target) -> Vec<Vec<u8>> {
    let dir = corpus_root.join(target.name());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// The corpus shipped in this crate.
pub fn default_corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Run `target` on every seed, then on mutations of them until a limit of
/// `opts` is reached. The first panic is returned as a [`Crash`].
pub fn fuzz(target: Target, corpus: &[Vec<u8>], opts: &FuzzOptions) -> Result<FuzzStats, Crash> {
    let quiet_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = fuzz_inner(target, corpus, opts);
    std::panic::set_hook(quiet_hook);
    result
}

fn fuzz_inner(target: Target, corpus: &[Vec<u8>], opts: &FuzzOptions) -> Result<FuzzStats, Crash> {
    let started = Instant::now();
    let mut rng = Rng::new(opts.seed ^ target.salt());
    let mut stats = FuzzStats::default();
    let try_one = |input: &[u8], iteration: u64| -> Result<(), Crash> {
        catch_unwind(AssertUnwindSafe(|| run(target, input))).map_err(|p| Crash {
            target,
            input: input.to_vec(),
            message: panic_text(&p),
            iteration,
        })
    };
    for seed in corpus {
        try_one(seed, 0)?;
    }
    while stats.iterations < opts.max_iterations && started.elapsed() < opts.max_time {
        stats.iterations += 1;
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate::mutate(base, corpus, &mut rng, opts.max_len);
        try_one(&input, stats.iterations)?;
    }
    Ok(stats)
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
