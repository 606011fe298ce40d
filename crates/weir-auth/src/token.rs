use crate::{AuthError, KeyRing, Revocations, Role};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a Weir token says. Standard JWT claim names, so any JWT tool can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was made for (`--name`).
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// The token's id: what `weir token revoke` names.
    pub jti: String,
}

/// A verified token's holder, as a request handler and the audit log see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub token_id: String,
}

impl Identity {
    /// Whether this identity may use a route that needs `needed`.
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.role.covers(needed) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                have: self.role,
                need: needed,
            })
        }
    }
}

fn random_id() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Sign(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl KeyRing {
    /// A new token for `name` with `role`, valid for `ttl` from `now` (seconds since the
    /// epoch), signed with the signing key.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        ttl: Duration,
        now: u64,
    ) -> Result<(String, Claims), AuthError> {
        let claims = Claims {
            sub: name.to_string(),
            role,
            iat: now,
            exp: now.saturating_add(ttl.as_secs().max(1)),
            jti: random_id()?,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing().id().to_string());
        let token = jsonwebtoken::encode(&header, &claims, self.signing().encoding())
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks a token at `now` (seconds since the epoch): well formed, signed by one of the
    /// keys (chosen by the header's `kid`), not expired, not revoked.
    pub fn verify(
        &self,
        token: &str,
        now: u64,
        revoked: Option<&Revocations>,
    ) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?}; Weir's tokens are HS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no key id (`kid`) in the header".into()))?;
        let key = self.find(&kid).ok_or(AuthError::BadSignature)?;
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against `now`, with no leeway.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding(), &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if let Some(revoked) = revoked
            && revoked.contains(&claims.jti)?
        {
            return Err(AuthError::Revoked);
        }
        Ok(Identity {
            name: claims.sub,
            role: claims.role,
            token_id: claims.jti,
        })
    }
}

/// The token of an `Authorization` header value (`Bearer TOKEN`, the scheme in any case).
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Malformed(
            "the Authorization header is not `Bearer TOKEN`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, generate_key};

    fn key(dir: &std::path::Path, name: &str) -> Key {
        generate_key(&dir.join(name)).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn an_issued_token_verifies_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(key(dir.path(), "k"), vec![]);
        let (token, claims) = ring
            .issue("ci", Role::Operator, Duration::from_secs(3600), NOW)
            .unwrap();
        let id = ring.verify(&token, NOW + 10, None).unwrap();
        assert_eq!(id.name, "ci");
        assert_eq!(id.role, Role::Operator);
        assert_eq!(id.token_id, claims.jti);
        assert!(matches!(
            ring.verify(&token, NOW + 3600, None),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn altered_foreign_or_garbage_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(key(dir.path(), "a"), vec![]);
        let other = KeyRing::new(key(dir.path(), "b"), vec![]);
        let (token, _) = ring
            .issue("x", Role::Viewer, Duration::from_secs(60), NOW)
            .unwrap();
        // Signed by a key this ring does not have.
        let (foreign, _) = other
            .issue("x", Role::Admin, Duration::from_secs(60), NOW)
            .unwrap();
        assert!(matches!(
            ring.verify(&foreign, NOW, None),
            Err(AuthError::BadSignature)
        ));
        // The payload changed (viewer → admin) under the same signature.
        let parts: Vec<&str> = token.split('.').collect();
        let (_, admin_payload) = {
            let p: Vec<&str> = foreign.split('.').collect();
            (p[0], p[1])
        };
        let forged = format!("{}.{}.{}", parts[0], admin_payload, parts[2]);
        assert!(matches!(
            ring.verify(&forged, NOW, None),
            Err(AuthError::BadSignature)
        ));
        for garbage in ["", "abc", "a.b.c", "Bearer x"] {
            let e = ring.verify(garbage, NOW, None).unwrap_err();
            assert_eq!(e.status(), 401, "{garbage}: {e}");
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = key(dir.path(), "old");
        let new = key(dir.path(), "new");
        let before = KeyRing::new(old.clone(), vec![]);
        let (old_token, _) = before
            .issue("x", Role::Viewer, Duration::from_secs(600), NOW)
            .unwrap();
        let after = KeyRing::new(new.clone(), vec![old]);
        assert!(after.verify(&old_token, NOW, None).is_ok());
        let (new_token, _) = after
            .issue("x", Role::Viewer, Duration::from_secs(600), NOW)
            .unwrap();
        let header = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(new.id()));
        // Dropping the old key from the ring ends its tokens.
        let only_new = KeyRing::new(new, vec![]);
        assert!(matches!(
            only_new.verify(&old_token, NOW, None),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn roles_decide_403_after_the_token_is_valid() {
        let id = Identity {
            name: "n".into(),
            role: Role::Ingest,
            token_id: "t".into(),
        };
        assert!(id.require(Role::Ingest).is_ok());
        let e = id.require(Role::Viewer).unwrap_err();
        assert_eq!(e.status(), 403);
    }

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        for bad in ["Basic abc", "Bearer", "abc", "Bearer  "] {
            assert_eq!(bearer(Some(bad)).unwrap_err().status(), 401, "{bad}");
        }
    }
}
