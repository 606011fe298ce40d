//! PII handling declared in the schema: mask, hash or drop sensitive fields.

use crate::def::Sensitivity;
use crate::schema::Schema;
use sha2::{Digest, Sha256};
use weir_types::{Record, Value};

impl Schema {
    /// Protects the record's sensitive fields in place, as the schema declares them:
    ///
    /// - `mask`: every character but the last four becomes `*` (`"192.168.1.10"` →
    ///   `"********1.10"`); a value of four characters or fewer is masked entirely, so nothing
    ///   short leaks whole. Length is kept.
    /// - `hash`: the lowercase hex SHA-256 of the salt (see [`Schema::with_hash_salt`]; empty by
    ///   default) followed by the value's text (a string as is, other values as displayed:
    ///   `42`, `true`, a datetime in RFC 3339). Equal values hash alike, so the field can still
    ///   be joined and counted.
    /// - `drop`: the field is removed.
    ///
    /// Missing and `null` fields are left alone. Call it after validation, just before the
    /// record leaves the pipeline.
    ///
    /// ```
    /// use weir_schema::Schema;
    /// use weir_types::{Record, Value};
    /// let schema = Schema::from_yaml(
    ///     "name: a.b\nfields:\n  - { name: card, type: string, sensitive: mask }\n  - { name: pin, type: string, sensitive: drop }\n",
    ///     "a.yaml",
    /// )?;
    /// let mut r = Record::from_pairs([("card", Value::from("4111111111111111")), ("pin", Value::from("1234"))]);
    /// schema.apply_privacy(&mut r);
    /// assert_eq!(r.get("card"), Some(&Value::from("************1111")));
    /// assert_eq!(r.get("pin"), None);
    /// # Ok::<(), weir_schema::Error>(())
    /// ```
    pub fn apply_privacy(&self, record: &mut Record) {
        if !self.has_sensitive {
            return;
        }
        for field in &self.fields {
            let Some(sensitivity) = field.sensitive else {
                continue;
            };
            if sensitivity == Sensitivity::Drop {
                record.remove(&field.name);
                continue;
            }
            let Some(slot) = record.get_mut(&field.name) else {
                continue;
            };
            if slot.is_null() {
                continue;
            }
            *slot = match sensitivity {
                Sensitivity::Mask => Value::from(mask(&value_text(slot))),
                _ => Value::from(hash_hex(self.hash_salt.as_deref().unwrap_or(&[]), slot)),
            };
        }
    }
}

fn value_text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::Str(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Keeps the last four characters; masks everything when there are four or fewer.
fn mask(text: &str) -> String {
    let count = text.chars().count();
    let hidden = if count <= 4 { count } else { count - 4 };
    let mut out = String::with_capacity(text.len());
    out.extend(std::iter::repeat_n('*', hidden));
    out.extend(text.chars().skip(hidden));
    out
}

fn hash_hex(salt: &[u8], value: &Value) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(value_text(value).as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_the_last_four_characters() {
        assert_eq!(mask("192.168.1.10"), "********1.10");
        assert_eq!(mask("12345"), "*2345");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask("ab"), "**");
        assert_eq!(mask(""), "");
        assert_eq!(mask("héllo wörld"), "*******örld");
    }

    #[test]
    fn hashing_is_sha256_hex_of_salt_then_value() {
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_hex(b"", &Value::from("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_hex(b"a", &Value::from("bc")),
            hash_hex(b"", &Value::from("abc"))
        );
        assert_eq!(
            hash_hex(b"", &Value::Int(42)),
            hash_hex(b"", &Value::from("42"))
        );
    }
}
