use crate::AuthError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Random bytes in a new key: HS256's block-size-appropriate minimum.
const KEY_BYTES: usize = 32;

/// A signing/verification key: at least 32 random bytes, kept base64-encoded in a file that
/// only its owner may read.
#[derive(Clone)]
pub struct Key {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    /// Names the key in a token's header (`kid`) without revealing it: the first 16 hex digits
    /// of its SHA-256.
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Key").field("id", &self.id).finish()
    }
}

impl Key {
    /// Reads a key file written by [`generate_key`] (or any base64 of ≥ 32 random bytes).
    /// Refused: a missing or unreadable file, other content, a short key, and (on Unix) a file
    /// that its group or others may read.
    pub fn from_file(path: &Path) -> Result<Key, AuthError> {
        let fail = |reason: String| AuthError::Key {
            path: path.to_path_buf(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| fail(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "its group or others may read it (mode {:o}): `chmod 600` it",
                    mode & 0o777
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            fail("expected one line of base64 (`weir token keygen` writes one)".into())
        })?;
        if bytes.len() < KEY_BYTES {
            return Err(fail(format!(
                "the key has {} bytes; at least {KEY_BYTES} are needed",
                bytes.len()
            )));
        }
        Key::from_bytes(&bytes).map_err(fail)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Key, String> {
        let digest = Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Key {
            encoding: jsonwebtoken::EncodingKey::from_secret(bytes).map_err(|e| e.to_string())?,
            decoding: jsonwebtoken::DecodingKey::from_secret(bytes).map_err(|e| e.to_string())?,
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn encoding(&self) -> &jsonwebtoken::EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding
    }
}

/// Writes a new random key to `path` (mode 600), refusing to replace an existing file.
pub fn generate_key(path: &Path) -> Result<Key, AuthError> {
    let fail = |reason: String| AuthError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = vec![0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| fail(format!("no randomness: {e}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            fail(
                "it exists; a new key never replaces one (tokens signed by it would stop working)"
                    .into(),
            )
        } else {
            fail(e.to_string())
        }
    })?;
    writeln!(file, "{}", STANDARD.encode(&bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    Key::from_bytes(&bytes).map_err(fail)
}

/// The server's keys: one signs new tokens, every one verifies (rotation: make a new key the
/// signing key and keep the old one among the verifying keys until its tokens expire).
#[derive(Debug, Clone)]
pub struct KeyRing {
    signing: Key,
    verifying: Vec<Key>,
}

impl KeyRing {
    /// The signing key's file and the files of older keys that still verify.
    pub fn load(signing: &Path, previous: &[PathBuf]) -> Result<KeyRing, AuthError> {
        let signing = Key::from_file(signing)?;
        let mut verifying = vec![signing.clone()];
        for path in previous {
            verifying.push(Key::from_file(path)?);
        }
        Ok(KeyRing { signing, verifying })
    }

    pub fn new(signing: Key, previous: Vec<Key>) -> KeyRing {
        let mut verifying = vec![signing.clone()];
        verifying.extend(previous);
        KeyRing { signing, verifying }
    }

    pub fn signing(&self) -> &Key {
        &self.signing
    }

    pub(crate) fn find(&self, id: &str) -> Option<&Key> {
        self.verifying.iter().find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = generate_key(&path).unwrap();
        assert_eq!(Key::from_file(&path).unwrap().id(), key.id());
        let err = generate_key(&path).unwrap_err().to_string();
        assert!(err.contains("never replaces"), "{err}");
        assert_eq!(Key::from_file(&path).unwrap().id(), key.id());
    }

    #[cfg(unix)]
    #[test]
    fn keys_readable_by_others_or_short_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        generate_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Key::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");

        let short = dir.path().join("short");
        std::fs::write(&short, STANDARD.encode([7u8; 8])).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Key::from_file(&short).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = Key::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains(key.id()));
    }
}
