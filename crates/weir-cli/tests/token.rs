//! `weir token`: keys and tokens made by the binary, checked with the library's verifier.

use std::process::{Command, Output};
use weir_auth::{KeyRing, Role};

fn weir(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(args)
        .env_remove("WEIR_AUTH_KEY_FILE")
        .env_remove("WEIR_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn keygen_create_verify_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let out = weir(&["token", "keygen", key.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Never replaced.
    let again = weir(&["token", "keygen", key.to_str().unwrap()], &[]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));

    // The key comes from WEIR_AUTH_KEY_FILE.
    let out = weir(
        &[
            "token", "create", "--role", "operator", "--ttl", "2h", "--name", "ci",
        ],
        &[("WEIR_AUTH_KEY_FILE", &key)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    let ring = KeyRing::load(&key, &[]).unwrap();
    let id = ring.verify(&token, now(), None).unwrap();
    assert_eq!((id.name.as_str(), id.role), ("ci", Role::Operator));
    // Two hours, not more: expired 2 h from now.
    assert!(ring.verify(&token, now() + 7201, None).is_err());
    assert!(text(&out.stderr).contains(&id.token_id));

    let data = dir.path().join("data");
    let out = weir(
        &[
            "token",
            "revoke",
            &id.token_id,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let revoked = weir_auth::Revocations::open(data.join("auth/revoked"));
    assert!(ring.verify(&token, now(), Some(&revoked)).is_err());
}

#[test]
fn bad_roles_ttls_and_keys_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    assert!(
        weir(&["token", "keygen", key.to_str().unwrap()], &[])
            .status
            .success()
    );
    let k = key.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--role", "root", "--key-file", k],
            "unknown role `root`",
        ),
        (
            vec!["--role", "viewer", "--ttl", "soon", "--key-file", k],
            "--ttl `soon`",
        ),
        (
            vec!["--role", "viewer", "--key-file", "/nonexistent/k"],
            "/nonexistent/k",
        ),
    ] {
        let mut all = vec!["token", "create"];
        all.extend(args);
        let out = weir(&all, &[]);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
}
