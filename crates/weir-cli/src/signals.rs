//! SIGINT and SIGTERM during `weir run`: the first asks the job to stop (sources stop reading,
//! what was read drains to the sinks, the summary is printed); a second exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The conventional exit status of a process killed by this signal (128 + number).
    fn exit_status(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// Listens for SIGINT and SIGTERM on a thread of its own for the rest of the process.
pub struct StopSignals {
    /// 0: none yet; 1: SIGINT; 2: SIGTERM.
    first: Arc<AtomicU8>,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        // Registered here, before the job's first record is read, so that no signal finds the
        // default action (exit without a summary).
        let (mut interrupt, mut terminate) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        let first = Arc::new(AtomicU8::new(0));
        let seen = first.clone();
        std::thread::Builder::new()
            .name("weir-signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        let got = tokio::select! {
                            _ = interrupt.recv() => Signal::Interrupt,
                            _ = terminate.recv() => Signal::Terminate,
                        };
                        let code = match got {
                            Signal::Interrupt => 1,
                            Signal::Terminate => 2,
                        };
                        if seen
                            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
                            .is_err()
                        {
                            eprintln!("{got} received again: exiting at once");
                            std::process::exit(got.exit_status());
                        }
                    }
                })
            })?;
        Ok(StopSignals { first })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.first.load(Ordering::SeqCst) {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }
}
