//! The async runtime under the synchronous source and sink adapters.
//!
//! Weir's tasks run on their own threads; connectors talk to their servers with async
//! clients. One small multi-thread tokio runtime per process drives them: an adapter calls
//! [`block_on`] from its task thread (never from inside the runtime).

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the I/O runtime: {e}"))
    })
}

/// Runs a future to completion on the shared I/O runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// Starts a future on the shared I/O runtime's worker threads and returns at once: for I/O
/// that overlaps with the task thread's own work (a prefetched read, an insert on commit).
/// Wait for its result with [`block_on`] on the handle.
pub(crate) fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(future)
}
