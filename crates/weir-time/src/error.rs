//! The errors of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong outside an operator: loading an enrichment table, a window specification.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("cannot read the table {}: {source}", path.display())]
    TableIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("table {}, line {line}: {message}", path.display())]
    TableRow {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        message: String,
    },
    #[error(
        "a sliding window of {} every {} puts each event in {windows} windows; at most {} are allowed (a slide of at least {})",
        humantime::format_duration(*size), humantime::format_duration(*slide), crate::window::MAX_WINDOWS_PER_EVENT, humantime::format_duration(*min_slide)
    )]
    TooManyWindows {
        size: Duration,
        slide: Duration,
        windows: u64,
        min_slide: Duration,
    },
}
