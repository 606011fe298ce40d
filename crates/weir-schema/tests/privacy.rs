//! Masking, hashing and dropping sensitive fields.

use weir_schema::Schema;
use weir_types::{Record, Value};

const PII: &str = "name: test.pii
fields:
  - { name: user_id, type: string, required: true }
  - { name: ip, type: string, sensitive: mask }
  - { name: email, type: string, sensitive: hash }
  - { name: account, type: int, sensitive: hash }
  - { name: password, type: string, sensitive: drop }
";

fn record() -> Record {
    Record::from_pairs([
        ("user_id", Value::from("u1")),
        ("ip", Value::from("192.168.1.10")),
        ("email", Value::from("ann@example.com")),
        ("account", Value::Int(42)),
        ("password", Value::from("hunter2")),
    ])
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn mask_hash_and_drop_are_applied() {
    let schema = Schema::from_yaml(PII, "pii.yaml").unwrap();
    let mut r = schema.validate(record()).unwrap();
    schema.apply_privacy(&mut r);
    assert_eq!(r.get("user_id"), Some(&Value::from("u1")), "not sensitive");
    assert_eq!(r.get("ip"), Some(&Value::from("********1.10")));
    assert_eq!(
        r.get("email"),
        Some(&Value::from(sha256_hex("ann@example.com").as_str()))
    );
    assert_eq!(
        r.get("account"),
        Some(&Value::from(sha256_hex("42").as_str()))
    );
    assert_eq!(r.get("password"), None);
    assert_eq!(r.len(), 4);
    let text = r.to_string();
    assert!(!text.contains("hunter2") && !text.contains("ann@") && !text.contains("192.168"));
}

#[test]
fn the_salt_changes_the_hash() {
    let plain = Schema::from_yaml(PII, "pii.yaml").unwrap();
    let salted = Schema::from_yaml(PII, "pii.yaml")
        .unwrap()
        .with_hash_salt("s3cret");
    let (mut a, mut b) = (record(), record());
    plain.apply_privacy(&mut a);
    salted.apply_privacy(&mut b);
    assert_ne!(a.get("email"), b.get("email"));
    assert_eq!(
        b.get("email"),
        Some(&Value::from(sha256_hex("s3cretann@example.com").as_str()))
    );
}

#[test]
fn missing_and_null_sensitive_fields_are_left_alone() {
    let schema = Schema::from_yaml(PII, "pii.yaml").unwrap();
    let mut r = Record::from_pairs([("user_id", Value::from("u1")), ("email", Value::Null)]);
    schema.apply_privacy(&mut r);
    assert_eq!(r.get("email"), Some(&Value::Null));
    assert_eq!(r.get("ip"), None);
    assert_eq!(r.len(), 2);
}

#[test]
fn validation_errors_do_not_reveal_sensitive_values() {
    let schema = Schema::from_yaml(PII, "pii.yaml").unwrap();
    let mut bad = record();
    bad.set("password", Value::Int(123456));
    bad.set(
        "ip",
        Value::Json(std::sync::Arc::new(serde_json::json!({"v4": "10.1.2.3"}))),
    );
    let err = schema.validate(bad).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("field `ip`: expected string, found json <hidden: sensitive field>"),
        "{text}"
    );
    assert!(
        !text.contains("123456") && !text.contains("10.1.2.3"),
        "{text}"
    );
    let debug = format!("{err:?}");
    assert!(!debug.contains("ann@example.com"), "{debug}");
}
