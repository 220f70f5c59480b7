//! Fault injection layer for tests: transient errors, truncated reads, flipped bits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::{DynStorage, Storage};

/// Environment variable read by [`FaultConfig::from_env`], e.g. `error=0.05,flip=0.01,seed=7`.
pub const FAULTS_ENV: &str = "BUNKER_FAULTS";

/// Probabilities (0..=1) of each injected fault, per operation, and the RNG seed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Retryable `Unavailable` error. For writes/removes half of these happen
    /// *after* the inner operation succeeded.
    pub error_rate: f64,
    /// Retryable `Timeout` error (same before/after split as `error_rate`).
    pub timeout_rate: f64,
    /// A successful read returns a strict prefix of the data.
    pub truncate_rate: f64,
    /// A successful read returns the data with exactly one bit flipped.
    pub flip_rate: f64,
    /// Seed: the same seed and call sequence inject the same faults.
    pub seed: u64,
}

impl FaultConfig {
    /// Parses `key=value` pairs separated by commas: `error`, `timeout`, `truncate`,
    /// `flip` (probabilities) and `seed`.
    pub fn parse(spec: &str) -> Result<Self, StorageError> {
        let bad = |why: String| StorageError::invalid(FAULTS_ENV, why);
        let mut c = FaultConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("expected key=value, got {part:?}")))?;
            let (k, v) = (k.trim(), v.trim());
            if k == "seed" {
                c.seed = v
                    .parse()
                    .map_err(|_| bad(format!("seed {v:?} is not an integer")))?;
                continue;
            }
            let p: f64 = v
                .parse()
                .map_err(|_| bad(format!("{k}={v:?} is not a number")))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(format!("{k}={v} must be between 0 and 1")));
            }
            match k {
                "error" => c.error_rate = p,
                "timeout" => c.timeout_rate = p,
                "truncate" => c.truncate_rate = p,
                "flip" => c.flip_rate = p,
                _ => {
                    return Err(bad(format!(
                        "unknown key {k:?} (expected error, timeout, truncate, flip, seed)"
                    )))
                }
            }
        }
        if c.error_rate + c.timeout_rate > 1.0 {
            return Err(bad("error + timeout rates exceed 1".into()));
        }
        Ok(c)
    }

    /// Reads [`FAULTS_ENV`]; `Ok(None)` when unset or empty.
    pub fn from_env() -> Result<Option<Self>, StorageError> {
        match std::env::var(FAULTS_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

/// Counts of injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Injected `Unavailable` errors (including those after a successful write).
    pub errors: u64,
    /// Injected `Timeout` errors (including those after a successful write).
    pub timeouts: u64,
    /// Errors reported although the inner write/remove succeeded.
    pub errors_after_write: u64,
    /// Reads returned truncated.
    pub truncations: u64,
    /// Reads returned with one flipped bit.
    pub flips: u64,
}

#[derive(Debug, Default)]
struct Counters {
    errors: AtomicU64,
    timeouts: AtomicU64,
    after_write: AtomicU64,
    truncations: AtomicU64,
    flips: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Error,
    Timeout,
}

/// Wraps a storage and injects faults according to a [`FaultConfig`].
#[derive(Debug)]
pub struct FaultStorage {
    inner: DynStorage,
    config: FaultConfig,
    rng: Mutex<StdRng>,
    counters: Counters,
    after_write: bool,
}

impl FaultStorage {
    /// Wraps `inner`.
    pub fn new(inner: DynStorage, config: FaultConfig) -> Self {
        FaultStorage {
            inner,
            config,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            counters: Counters::default(),
            after_write: true,
        }
    }

    /// Whether injected write/remove errors may happen after the inner operation
    /// succeeded (default true). Disable to inject only "nothing happened" errors.
    pub fn errors_after_write(mut self, enabled: bool) -> Self {
        self.after_write = enabled;
        self
    }

    /// What has been injected so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        FaultStats {
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            errors_after_write: c.after_write.load(Ordering::Relaxed),
            truncations: c.truncations.load(Ordering::Relaxed),
            flips: c.flips.load(Ordering::Relaxed),
        }
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut guard = match self.rng.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn roll(&self) -> Fault {
        let r: f64 = self.with_rng(|r| r.gen());
        if r < self.config.error_rate {
            Fault::Error
        } else if r < self.config.error_rate + self.config.timeout_rate {
            Fault::Timeout
        } else {
            Fault::None
        }
    }

    fn injected(&self, fault: Fault, path: &str, after: bool) -> StorageError {
        let when = if after {
            " after the operation succeeded"
        } else {
            ""
        };
        let (kind, what) = if fault == Fault::Timeout {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            (ErrorKind::Timeout, "timeout")
        } else {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            (ErrorKind::Unavailable, "error")
        };
        if after {
            self.counters.after_write.fetch_add(1, Ordering::Relaxed);
        }
        StorageError::new(
            kind,
            format!("faults({})", self.inner.location()),
            path,
            format!("injected {what}{when}"),
        )
    }

    /// Read-like operation: fault before calling the inner storage.
    fn before<T>(
        &self,
        path: &str,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match self.roll() {
            Fault::None => f(),
            fault => Err(self.injected(fault, path, false)),
        }
    }

    /// Mutating operation: a fault happens before, or (half the time) after the inner call.
    fn mutate(
        &self,
        path: &str,
        f: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let fault = self.roll();
        if fault == Fault::None {
            return f();
        }
        if self.after_write && self.with_rng(|r| r.gen_bool(0.5)) {
            f()?;
            return Err(self.injected(fault, path, true));
        }
        Err(self.injected(fault, path, false))
    }

    /// Possibly truncates or flips one bit of successfully read data.
    fn corrupt(&self, data: Bytes) -> Bytes {
        if data.is_empty() {
            return data;
        }
        let (truncate, flip) = self.with_rng(|r| {
            let truncate = r
                .gen_bool(self.config.truncate_rate)
                .then(|| r.gen_range(0..data.len()));
            let flip = r
                .gen_bool(self.config.flip_rate)
                .then(|| (r.gen_range(0..data.len()), r.gen_range(0..8u8)));
            (truncate, flip)
        });
        if let Some(len) = truncate {
            self.counters.truncations.fetch_add(1, Ordering::Relaxed);
            return data.slice(0..len);
        }
        if let Some((idx, bit)) = flip {
            self.counters.flips.fetch_add(1, Ordering::Relaxed);
            let mut v = data.to_vec();
            if let Some(b) = v.get_mut(idx) {
                *b ^= 1 << bit;
            }
            return Bytes::from(v);
        }
        data
    }
}

impl Storage for FaultStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), StorageError> {
        self.mutate("", || self.inner.create())
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.before(t.dir(), || self.inner.list(t))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        let data = self.before(&t.path(name), || self.inner.read(t, name))?;
        Ok(self.corrupt(data))
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        let data = self.before(&t.path(name), || {
            self.inner.read_range(t, name, offset, length)
        })?;
        Ok(self.corrupt(data))
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.mutate(&t.path(name), || self.inner.write(t, name, data))
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.mutate(&t.path(name), || self.inner.write_new(t, name, data))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        self.mutate(&t.path(name), || self.inner.remove(t, name))
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        self.before(&t.path(name), || self.inner.stat(t, name))
    }

    fn list_temp(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        self.before("", || self.inner.list_temp())
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        self.mutate(path, || self.inner.remove_temp(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{into_dyn, OpendalStorage, Options};

    fn memory_with(data: &Bytes) -> DynStorage {
        let s = into_dyn(OpendalStorage::service("memory", &Options::default()).expect("memory"));
        s.write(FileType::Pack, "abcd", data.clone())
            .expect("seed data");
        s
    }

    fn sample() -> Bytes {
        Bytes::from(
            (0..2048u32)
                .map(|i| (i * 7 % 256) as u8)
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn flip_changes_exactly_one_bit() {
        let data = sample();
        let f = FaultStorage::new(
            memory_with(&data),
            FaultConfig {
                flip_rate: 1.0,
                seed: 1,
                ..Default::default()
            },
        );
        for _ in 0..100 {
            let got = f.read(FileType::Pack, "abcd").expect("read");
            assert_eq!(got.len(), data.len());
            let diff: u32 = got
                .iter()
                .zip(data.iter())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1);
            let got = f
                .read_range(FileType::Pack, "abcd", 10, 100)
                .expect("range");
            let diff: u32 = got
                .iter()
                .zip(data[10..110].iter())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1);
        }
        assert_eq!(f.stats().flips, 200);
    }

    #[test]
    fn truncation_returns_a_strict_prefix() {
        let data = sample();
        let f = FaultStorage::new(
            memory_with(&data),
            FaultConfig {
                truncate_rate: 1.0,
                seed: 5,
                ..Default::default()
            },
        );
        for _ in 0..50 {
            let got = f.read(FileType::Pack, "abcd").expect("read");
            assert!(got.len() < data.len());
            assert_eq!(got, data.slice(0..got.len()));
        }
        assert_eq!(f.stats().truncations, 50);
    }

    fn trace(seed: u64) -> (Vec<String>, FaultStats) {
        let data = sample();
        let f = FaultStorage::new(
            memory_with(&data),
            FaultConfig {
                error_rate: 0.2,
                timeout_rate: 0.1,
                truncate_rate: 0.1,
                flip_rate: 0.1,
                seed,
            },
        );
        let mut out = Vec::new();
        for i in 0..200 {
            let r = match i % 3 {
                0 => f
                    .read(FileType::Pack, "abcd")
                    .map(|b| format!("{}:{:x}", b.len(), b.iter().map(|&x| x as u64).sum::<u64>())),
                1 => f
                    .write(FileType::Index, &format!("i{i}"), data.clone())
                    .map(|_| "w".to_string()),
                _ => f.stat(FileType::Pack, "abcd").map(|s| format!("{s:?}")),
            };
            out.push(match r {
                Ok(s) => s,
                Err(e) => format!("{:?}/{}", e.kind, e.message),
            });
        }
        (out, f.stats())
    }

    #[test]
    fn deterministic_with_seed() {
        let (a, sa) = trace(7);
        let (b, sb) = trace(7);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert!(
            sa.errors > 0 && sa.timeouts > 0 && sa.flips > 0 && sa.truncations > 0,
            "{sa:?}"
        );
        let (c, _) = trace(8);
        assert_ne!(a, c);
    }

    #[test]
    fn errors_after_write_really_wrote() {
        let inner = memory_with(&sample());
        let f = FaultStorage::new(
            inner.clone(),
            FaultConfig {
                error_rate: 1.0,
                seed: 11,
                ..Default::default()
            },
        );
        let mut after = 0;
        for i in 0..40 {
            let name = format!("k{i}");
            let e = f
                .write(FileType::Key, &name, Bytes::from_static(b"key"))
                .unwrap_err();
            assert!(e.is_retryable());
            let written = inner.stat(FileType::Key, &name).expect("stat").is_some();
            assert_eq!(written, e.message.contains("after"), "{e}");
            after += written as u64;
        }
        assert!(after > 5 && after < 35, "{after}");
        assert_eq!(f.stats().errors_after_write, after);
        assert_eq!(f.stats().errors, 40);
    }

    #[test]
    fn parse_spec() {
        let c = FaultConfig::parse("error=0.05, flip=0.01,seed=7").expect("parse");
        assert_eq!(
            c,
            FaultConfig {
                error_rate: 0.05,
                flip_rate: 0.01,
                seed: 7,
                ..Default::default()
            }
        );
        let c = FaultConfig::parse("timeout=0.5,truncate=1").expect("parse");
        assert_eq!((c.timeout_rate, c.truncate_rate), (0.5, 1.0));
        for bad in [
            "error",
            "error=2",
            "error=x",
            "bogus=0.1",
            "seed=-1",
            "error=0.7,timeout=0.7",
        ] {
            assert!(FaultConfig::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            FaultConfig::parse("").expect("empty"),
            FaultConfig::default()
        );
    }
}
