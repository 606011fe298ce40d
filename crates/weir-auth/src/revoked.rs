use crate::AuthError;
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Revoked token ids: a file of one id per line in the server's data directory. `weir token
/// revoke` appends to it; a running server sees the change at its next request (the file is
/// re-read when its modification time changes).
#[derive(Debug)]
pub struct Revocations {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, HashSet<String>)>,
}

impl Revocations {
    /// The list at `path` (absent: nothing is revoked).
    pub fn open(path: impl Into<PathBuf>) -> Revocations {
        Revocations {
            path: path.into(),
            cache: Mutex::new((None, HashSet::new())),
        }
    }

    /// The list a server keeps under its data directory, `DATA/auth/revoked`: the one place
    /// both `weir token revoke` and `weir serve` name it.
    pub fn in_data_dir(data_dir: &Path) -> Revocations {
        Revocations::open(data_dir.join("auth").join("revoked"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl std::fmt::Display) -> AuthError {
        AuthError::Revocations {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Whether `token_id` is revoked.
    pub fn contains(&self, token_id: &str) -> Result<bool, AuthError> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m.modified().map_err(|e| self.fail(e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.fail(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != modified || modified.is_none() && !cache.1.is_empty() {
            let ids = match modified {
                Some(_) => std::fs::read_to_string(&self.path)
                    .map_err(|e| self.fail(e))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => HashSet::new(),
            };
            *cache = (modified, ids);
        }
        Ok(cache.1.contains(token_id))
    }

    /// Revokes `token_id` durably (appended and synced before this returns).
    pub fn revoke(&self, token_id: &str) -> Result<(), AuthError> {
        if token_id.is_empty() || !token_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(self.fail(format!(
                "`{token_id}` is not a token id (the `jti` that `weir token create` printed)"
            )));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.fail(e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.fail(e))?;
        writeln!(file, "{token_id}")
            .and_then(|()| file.sync_all())
            .map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyRing, Role, generate_key};
    use std::time::Duration;

    #[test]
    fn a_revoked_token_is_refused_by_a_list_opened_before_the_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(generate_key(&dir.path().join("k")).unwrap(), vec![]);
        let now = 1_800_000_000;
        let (token, claims) = ring
            .issue("x", Role::Admin, Duration::from_secs(600), now)
            .unwrap();
        let (other, _) = ring
            .issue("y", Role::Admin, Duration::from_secs(600), now)
            .unwrap();
        // The server's view, opened first.
        let server = Revocations::open(dir.path().join("auth/revoked"));
        assert!(ring.verify(&token, now, Some(&server)).is_ok());
        // `weir token revoke`, another handle on the same file.
        Revocations::open(dir.path().join("auth/revoked"))
            .revoke(&claims.jti)
            .unwrap();
        assert!(matches!(
            ring.verify(&token, now, Some(&server)),
            Err(AuthError::Revoked)
        ));
        assert!(ring.verify(&other, now, Some(&server)).is_ok());
        assert!(server.revoke("../etc").is_err());
    }
}
