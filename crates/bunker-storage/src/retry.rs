//! Retry layer: jittered exponential backoff bounded by total elapsed time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::{DynStorage, Storage};

/// Backoff parameters of [`RetryStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Delay before the first retry (before jitter).
    pub initial_delay: Duration,
    /// Upper bound of a single delay.
    pub max_delay: Duration,
    /// Give up once another wait would exceed this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

/// Retries [`StorageError::is_retryable`] failures (timeouts, unavailability, short
/// reads) with jittered exponential backoff. Never retries NotFound, AlreadyExists,
/// permission or authentication errors.
///
/// An attempt may fail after its side effect happened. `write_new` reconciles this:
/// after an earlier retryable failure, AlreadyExists counts as success if the stored
/// content equals the data being written. `remove` does not: a retry may report
/// NotFound for a file an earlier attempt removed (callers may ignore NotFound).
///
/// **Fail fast at open.** Until the backend has answered once (any success,
/// or an error other than a time-out or unavailability), a refused
/// connection or a name that does not resolve ([`StorageError::is_unreachable`])
/// is returned at once instead of retried for minutes: the address is
/// wrong or the service is down, and waiting does not help. The error keeps
/// its kind (callers may still fall back to another repository). Once the
/// backend answered, the same errors are transient and retried.
///
/// Retries are logged: at info level, and at warn level once an operation
/// has been retried for [`RetryStorage::TELL_AFTER`] (what, where, why,
/// and for how much longer).
#[derive(Debug)]
pub struct RetryStorage {
    inner: DynStorage,
    config: RetryConfig,
    retries: AtomicU64,
    /// The backend answered at least once.
    reached: AtomicBool,
}

impl RetryStorage {
    /// Wraps `inner` with the default backoff (100 ms doubling to 10 s, 5 min total).
    pub fn new(inner: DynStorage) -> Self {
        Self::with_config(inner, RetryConfig::default())
    }

    /// Wraps `inner` with explicit backoff parameters.
    pub fn with_config(inner: DynStorage, config: RetryConfig) -> Self {
        RetryStorage {
            inner,
            config,
            retries: AtomicU64::new(0),
            reached: AtomicBool::new(false),
        }
    }

    /// How long an operation is retried quietly (info level) before each
    /// retry is reported at warn level.
    pub const TELL_AFTER: Duration = Duration::from_secs(5);

    /// Number of retries performed so far (all operations).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &DynStorage {
        &self.inner
    }

    /// Runs `f` until it succeeds, fails permanently, or the time budget is spent.
    /// `f` receives whether an earlier attempt failed retryably.
    fn run<T>(
        &self,
        op: &str,
        what: &str,
        mut f: impl FnMut(bool) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let start = Instant::now();
        let mut delay = self.config.initial_delay;
        let mut attempts = 1u32;
        let mut failed_before = false;
        loop {
            let err = match f(failed_before) {
                Ok(v) => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if !e.is_retryable() => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) if e.is_unreachable() && !self.reached.load(Ordering::Relaxed) => {
                    let mut e = e;
                    e.message = format!(
                        "{} (not retried: the endpoint has not answered yet; check its address \
                         and that the service runs)",
                        e.message
                    );
                    return Err(e);
                }
                Err(e) => e,
            };
            failed_before = true;
            let wait = delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
            let elapsed = start.elapsed();
            if elapsed + wait > self.config.max_elapsed {
                let mut err = err;
                err.message = format!(
                    "{} (gave up after {attempts} attempts in {:.1}s)",
                    err.message,
                    elapsed.as_secs_f64()
                );
                return Err(err);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            let left = self.config.max_elapsed.saturating_sub(elapsed);
            let line = format!(
                "retrying {op} {what} at {} (attempt {}, {:.1}s so far, giving up in {}s): {}",
                err.backend,
                attempts + 1,
                elapsed.as_secs_f64(),
                left.as_secs(),
                err
            );
            if elapsed >= Self::TELL_AFTER {
                tracing::warn!("{line}");
            } else {
                tracing::info!("{line}");
            }
            std::thread::sleep(wait);
            attempts += 1;
            delay = (delay * 2).min(self.config.max_delay);
        }
    }
}

impl Storage for RetryStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), StorageError> {
        self.run("create", "", |_| self.inner.create())
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.run("list", t.dir(), |_| self.inner.list(t))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        self.run("read", name, |_| self.inner.read(t, name))
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        self.run("read_range", name, |_| {
            let data = self.inner.read_range(t, name, offset, length)?;
            if data.len() as u64 != length {
                return Err(StorageError::new(
                    ErrorKind::Unavailable,
                    self.inner.location(),
                    t.path(name),
                    format!(
                        "short read: got {} of {length} bytes at offset {offset}",
                        data.len()
                    ),
                ));
            }
            Ok(data)
        })
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.run("write", name, |_| self.inner.write(t, name, data.clone()))
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.run("write_new", name, |failed_before| {
            match self.inner.write_new(t, name, data.clone()) {
                Err(e) if failed_before && e.kind == ErrorKind::AlreadyExists => {
                    // An earlier attempt may have written it before failing.
                    match self.inner.read(t, name) {
                        Ok(existing) if existing == data => Ok(()),
                        Ok(_) => Err(e),
                        Err(read_err) if read_err.is_retryable() => Err(read_err),
                        Err(_) => Err(e),
                    }
                }
                other => other,
            }
        })
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        self.run("remove", name, |_| self.inner.remove(t, name))
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        self.run("stat", name, |_| self.inner.stat(t, name))
    }

    fn list_temp(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        self.run("list", "temporary files", |_| self.inner.list_temp())
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        self.run("remove", path, |_| self.inner.remove_temp(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{FaultConfig, FaultStorage};
    use crate::{conformance, into_dyn, OpendalStorage, Options};
    use std::sync::Arc;

    fn memory() -> DynStorage {
        into_dyn(OpendalStorage::service("memory", &Options::default()).expect("memory"))
    }

    fn fast() -> RetryConfig {
        RetryConfig {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_elapsed: Duration::from_secs(30),
        }
    }

    #[test]
    fn retries_succeed_at_thirty_percent_errors() {
        let faults = Arc::new(FaultStorage::new(
            memory(),
            FaultConfig {
                error_rate: 0.2,
                timeout_rate: 0.1,
                seed: 42,
                ..FaultConfig::default()
            },
        ));
        let retry = RetryStorage::with_config(faults.clone(), fast());
        retry.create().expect("create");
        for i in 0..100u32 {
            let name = format!("{i:04x}");
            let data = Bytes::from(format!("pack number {i}").repeat(10));
            retry
                .write(FileType::Pack, &name, data.clone())
                .expect("write");
            assert_eq!(retry.read(FileType::Pack, &name).expect("read"), data);
            assert_eq!(
                retry
                    .read_range(FileType::Pack, &name, 5, 20)
                    .expect("range"),
                data.slice(5..25)
            );
            retry
                .write_new(FileType::Lock, &name, data.clone())
                .expect("write_new");
            match retry.remove(FileType::Lock, &name) {
                // An injected error after a successful remove makes the retry see NotFound.
                Err(e) if !e.is_not_found() => panic!("remove: {e}"),
                _ => {}
            }
        }
        assert_eq!(retry.list(FileType::Pack).expect("list").len(), 100);
        assert!(retry.list(FileType::Lock).expect("list").is_empty());
        let stats = faults.stats();
        assert!(stats.errors + stats.timeouts > 50, "{stats:?}");
        assert!(stats.errors_after_write > 0, "{stats:?}");
        assert_eq!(retry.retries(), stats.errors + stats.timeouts);
    }

    #[test]
    fn retry_layer_passes_conformance_over_faults() {
        // Errors only before the operation: conformance checks exact remove outcomes.
        let faults = FaultStorage::new(
            memory(),
            FaultConfig {
                error_rate: 0.2,
                timeout_rate: 0.1,
                seed: 3,
                ..FaultConfig::default()
            },
        )
        .errors_after_write(false);
        let retry = RetryStorage::with_config(into_dyn(faults), fast());
        conformance::run(&retry).expect("conformance through faults");
    }

    #[test]
    fn truncated_range_reads_are_retried() {
        let faults = Arc::new(FaultStorage::new(
            memory(),
            FaultConfig {
                truncate_rate: 0.5,
                seed: 9,
                ..FaultConfig::default()
            },
        ));
        let retry = RetryStorage::with_config(faults.clone(), fast());
        let data = Bytes::from(vec![7u8; 4096]);
        retry
            .write(FileType::Pack, "abab", data.clone())
            .expect("write");
        for _ in 0..50 {
            let got = retry
                .read_range(FileType::Pack, "abab", 100, 1000)
                .expect("range");
            assert_eq!(got, data.slice(100..1100));
        }
        assert!(faults.stats().truncations > 10);
        assert!(retry.retries() >= faults.stats().truncations);
    }

    #[derive(Debug)]
    struct AlwaysFails {
        kind: ErrorKind,
        calls: AtomicU64,
    }

    impl AlwaysFails {
        fn fail<T>(&self) -> Result<T, StorageError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Err(StorageError::new(self.kind, "test", "p", "boom"))
        }
    }

    impl Storage for AlwaysFails {
        fn location(&self) -> String {
            "test".into()
        }
        fn create(&self) -> Result<(), StorageError> {
            self.fail()
        }
        fn list(&self, _: FileType) -> Result<Vec<FileInfo>, StorageError> {
            self.fail()
        }
        fn read(&self, _: FileType, _: &str) -> Result<Bytes, StorageError> {
            self.fail()
        }
        fn read_range(&self, _: FileType, _: &str, _: u64, _: u64) -> Result<Bytes, StorageError> {
            self.fail()
        }
        fn write(&self, _: FileType, _: &str, _: Bytes) -> Result<(), StorageError> {
            self.fail()
        }
        fn write_new(&self, _: FileType, _: &str, _: Bytes) -> Result<(), StorageError> {
            self.fail()
        }
        fn remove(&self, _: FileType, _: &str) -> Result<(), StorageError> {
            self.fail()
        }
        fn stat(&self, _: FileType, _: &str) -> Result<Option<u64>, StorageError> {
            self.fail()
        }
    }

    #[test]
    fn non_retryable_errors_are_not_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::PermissionDenied,
            ErrorKind::Unauthenticated,
            ErrorKind::Invalid,
            ErrorKind::NoSpace,
        ] {
            let inner = Arc::new(AlwaysFails {
                kind,
                calls: AtomicU64::new(0),
            });
            let retry = RetryStorage::with_config(inner.clone(), fast());
            let e = retry.read(FileType::Index, "x").unwrap_err();
            assert_eq!(e.kind, kind);
            assert_eq!(inner.calls.load(Ordering::Relaxed), 1, "{kind:?}");
            assert_eq!(retry.retries(), 0);
        }
    }

    #[test]
    fn retrying_is_bounded_in_time() {
        let inner = Arc::new(AlwaysFails {
            kind: ErrorKind::Unavailable,
            calls: AtomicU64::new(0),
        });
        let config = RetryConfig {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_elapsed: Duration::from_millis(300),
        };
        let retry = RetryStorage::with_config(inner.clone(), config);
        let start = Instant::now();
        let e = retry.stat(FileType::Key, "k").unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("gave up after"), "{e}");
        assert!(
            took <= Duration::from_millis(300) + Duration::from_millis(100),
            "{took:?}"
        );
        let calls = inner.calls.load(Ordering::Relaxed);
        assert!(calls >= 4, "only {calls} attempts");
        assert_eq!(retry.retries(), calls - 1);
    }

    /// Issue 25 item 3: a refused connection at open failed only after
    /// five minutes of silent retries.
    #[test]
    fn connection_refused_is_not_retried_until_the_backend_answered() {
        #[derive(Debug)]
        struct Refused {
            calls: AtomicU64,
            answer_from: u64,
        }
        impl Storage for Refused {
            fn location(&self) -> String {
                "s3:http://127.0.0.1:1/b".into()
            }
            fn create(&self) -> Result<(), StorageError> {
                Ok(())
            }
            fn list(&self, _: FileType) -> Result<Vec<FileInfo>, StorageError> {
                Ok(Vec::new())
            }
            fn read(&self, _: FileType, _: &str) -> Result<Bytes, StorageError> {
                Ok(Bytes::new())
            }
            fn read_range(
                &self,
                _: FileType,
                _: &str,
                _: u64,
                _: u64,
            ) -> Result<Bytes, StorageError> {
                Ok(Bytes::new())
            }
            fn write(&self, _: FileType, _: &str, _: Bytes) -> Result<(), StorageError> {
                Ok(())
            }
            fn write_new(&self, _: FileType, _: &str, _: Bytes) -> Result<(), StorageError> {
                Ok(())
            }
            fn remove(&self, _: FileType, _: &str) -> Result<(), StorageError> {
                Ok(())
            }
            fn stat(&self, _: FileType, _: &str) -> Result<Option<u64>, StorageError> {
                let n = self.calls.fetch_add(1, Ordering::Relaxed);
                if n == 0 || n >= self.answer_from {
                    Err(StorageError::new(
                        ErrorKind::Unavailable,
                        "s3:http://127.0.0.1:1/b",
                        "config",
                        "error sending request: tcp connect error: Connection refused (os error 111)",
                    ))
                } else {
                    Ok(None)
                }
            }
        }
        let inner = Arc::new(Refused {
            calls: AtomicU64::new(0),
            answer_from: 2,
        });
        let retry = RetryStorage::with_config(inner.clone(), fast());
        let e = retry.stat(FileType::Config, "").unwrap_err();
        assert!(e.is_unreachable() && e.is_retryable(), "{e}");
        assert!(e.message.contains("not retried"), "{e}");
        assert_eq!(inner.calls.load(Ordering::Relaxed), 1);
        // It answered once: from now on a refused connection is transient.
        retry.stat(FileType::Config, "").expect("answers");
        let config = RetryConfig {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_millis(60),
        };
        let retry2 = RetryStorage::with_config(inner.clone(), config);
        retry2.reached.store(true, Ordering::Relaxed);
        let e = retry2.stat(FileType::Config, "").unwrap_err();
        assert!(e.message.contains("gave up after"), "{e}");
        assert!(inner.calls.load(Ordering::Relaxed) > 3);
    }
}
