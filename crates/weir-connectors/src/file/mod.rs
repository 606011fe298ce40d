//! The file connector's checks (its reading and writing live in weir-core's `files` and
//! `tail` modules, which the typed API exposes).

use crate::ConnectorError;
use std::path::Path;
use weir_core::FileSelection;

fn access(path: &Path, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::FileAccess {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Connectivity check of a file source: the file can be opened for reading (a followed file
/// may not exist yet, if its directory does), or the directory can be listed.
pub fn check_readable(selection: &FileSelection, follow: bool) -> Result<(), ConnectorError> {
    match selection {
        FileSelection::File(path) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                match dir {
                    Some(dir) if !dir.is_dir() => Err(access(
                        path,
                        format!(
                            "neither the file nor its directory {} exists",
                            dir.display()
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(access(path, format!("cannot open for reading: {e}"))),
        },
        FileSelection::Directory(dir) | FileSelection::Glob { dir, .. } => std::fs::read_dir(dir)
            .map(|_| ())
            .map_err(|e| access(dir, format!("cannot list the directory: {e}"))),
    }
}

/// Connectivity check of a file sink: the file, or the nearest directory that exists on its
/// way, is writable (nothing is created).
pub fn check_writable(path: &Path) -> Result<(), ConnectorError> {
    if path == Path::new("-") {
        return Ok(());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(access(path, "is a directory, not a file"));
        }
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| access(path, format!("cannot open for writing: {e}")));
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if let Ok(meta) = std::fs::metadata(d) {
            if !meta.is_dir() {
                return Err(access(path, format!("{} is not a directory", d.display())));
            }
            if meta.permissions().readonly() {
                return Err(access(
                    path,
                    format!("the directory {} is read-only", d.display()),
                ));
            }
            return Ok(());
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unwritable_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.jsonl");
        let err = check_readable(&FileSelection::File(missing.clone()), false).unwrap_err();
        assert!(err.to_string().contains("none.jsonl"), "{err}");
        assert!(check_readable(&FileSelection::File(missing.clone()), true).is_ok());
        assert!(check_writable(&dir.path().join("new/deeper/out.jsonl")).is_ok());
        let err = check_writable(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let err = check_writable(&dir.path().join("plain/out.jsonl")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
