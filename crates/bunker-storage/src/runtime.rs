//! The async backends (OpenDAL, SFTP) own a tokio runtime behind the
//! synchronous `Storage` trait; this runs a future on it from any thread.

use std::future::Future;

use tokio::runtime::Runtime;

/// Runs `fut` to completion on `rt`. Called from inside another runtime's
/// context (where blocking would panic), it blocks on a helper thread.
pub(crate) fn block_on<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        })
    } else {
        rt.block_on(fut)
    }
}
