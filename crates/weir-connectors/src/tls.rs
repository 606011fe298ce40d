//! TLS for the connectors (`rediss://`, `https://`): rustls with the ring provider, the CA
//! files of the `ca_file` options, and the recognition of TLS failures in error chains.
//!
//! Without a `ca_file`, a TLS connection trusts the system's roots. With one, it trusts only
//! the certificates of that file. Certificate verification is never turned off: a server
//! whose certificate does not chain to a trusted root is refused with an error that says so.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// Installs ring as rustls's process-wide crypto provider, unless the program installed one
/// already. Weir's clients and its server call this before building a TLS configuration.
///
/// `reqwest` is built without a provider of its own (the tree has only ring): build clients
/// with [`crate::http_client`], which calls this first (a client built without a provider
/// installed panics).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("CA file {}: {reason}", .path.display())]
pub struct CaFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// The certificates of a CA file (PEM), read and checked.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
    count: usize,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.count)
            .finish()
    }
}

impl CaFile {
    /// Reads `path`: PEM with at least one `CERTIFICATE` block.
    pub fn read(path: &Path) -> Result<CaFile, CaFileError> {
        let error = |reason: String| CaFileError {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| error(format!("cannot read the file: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(error(
                "no certificate in the file: expected PEM `-----BEGIN CERTIFICATE-----` blocks"
                    .into(),
            ));
        }
        // Each must be usable as a trust anchor.
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| error(format!("certificate {} is not usable: {e}", i + 1)))?;
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            count: roots.len(),
            pem,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text (PEM).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The certificates as `reqwest` roots.
    pub fn reqwest_roots(&self) -> Result<Vec<reqwest::Certificate>, CaFileError> {
        reqwest::Certificate::from_pem_bundle(&self.pem).map_err(|e| CaFileError {
            path: self.path.clone(),
            reason: format!("not a PEM certificate file: {e}"),
        })
    }

    /// Makes `builder` trust only these certificates (not the system's roots).
    pub fn trust_only(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, CaFileError> {
        Ok(builder.tls_certs_only(self.reqwest_roots()?))
    }
}

/// A `reqwest` client builder for connectors: the provider installed, and with `ca_file`,
/// only that file's certificates trusted.
pub fn client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, CaFileError> {
    let builder = crate::http_client();
    match ca_file {
        Some(path) => CaFile::read(path)?.trust_only(builder),
        None => Ok(builder),
    }
}

/// The TLS failure in an error's chain, described (e.g. `invalid peer certificate:
/// UnknownIssuer`); `None` when the error is not about TLS.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An `io::Error` hides the error it wraps from `source()` (and may wrap another).
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    // Errors that carry the TLS failure only as text (the Redis client flattens it).
    let text = error.to_string();
    const MARKERS: &[&str] = &[
        "invalid peer certificate",
        "UnknownIssuer",
        "NotValidForName",
        "received fatal alert",
        "InvalidCertificate",
        "CorruptMessage",
    ];
    MARKERS.iter().any(|m| text.contains(m)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = CaFile::read(&missing).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = CaFile::read(&empty).expect_err("no certificate");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    #[test]
    fn tls_failures_are_recognised_through_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        // As hyper-util reports it: an io::Error around the one of the handshake.
        let io = std::io::Error::other(io);
        let found = tls_failure(&io).expect("a TLS failure");
        assert!(found.contains("UnknownIssuer"), "{found}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&refused), None);
    }
}
