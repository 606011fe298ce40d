//! Weir's authentication: who a request comes from and what it may do.
//!
//! Owns the bearer tokens of `weir serve` (JWTs signed with HS256 by a key read from a file,
//! never from configuration text), the [`Role`]s and their order, signing-key rotation (one
//! signing key, any number of older keys that still verify) and revocation of single tokens by
//! id (a deny list in the server's data directory). Which role each route needs is the
//! server's table; this crate answers "is this token valid, and does its role cover that".

mod keys;
mod revoked;
mod role;
mod token;

pub use keys::{Key, KeyRing, generate_key};
pub use revoked::Revocations;
pub use role::Role;
pub use token::{Claims, Identity, bearer};

use std::path::PathBuf;

/// Why a token or a key was refused. The messages never contain a token or key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("no bearer token: send `Authorization: Bearer TOKEN` (`weir token create` makes one)")]
    Missing,
    /// Not a JWT, or its claims are not Weir's.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Signed by no key the server knows, or altered.
    #[error("the token's signature does not verify with any of the server's keys")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token was revoked")]
    Revoked,
    /// The token is valid but its role does not cover what was asked.
    #[error("role `{have}` may not do this: it needs `{need}`")]
    Forbidden { have: Role, need: Role },
    /// A key file cannot be used.
    #[error("key file {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    /// The revocation list cannot be read or written.
    #[error("revocation list {}: {reason}", path.display())]
    Revocations { path: PathBuf, reason: String },
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

impl AuthError {
    /// The HTTP status the server answers with: 401 for who you are, 403 for what you may do.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden { .. } => 403,
            AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::BadSignature
            | AuthError::Expired
            | AuthError::Revoked => 401,
            AuthError::Key { .. } | AuthError::Revocations { .. } | AuthError::Sign(_) => 500,
        }
    }
}
