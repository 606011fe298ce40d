//! The errors of this crate.

use std::path::PathBuf;

/// What went wrong outside an operator: loading an enrichment table.
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
}
