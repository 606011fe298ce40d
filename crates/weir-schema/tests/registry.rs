//! The registry end to end in a temporary directory.

use weir_schema::{Error, ErrorClass, Registry, Schema, SchemaError, VersionSpec};

const V1: &str = "name: user.activity.login
description: User logins
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true }
  - { name: attempts, type: int }
";

const V2: &str = "name: user.activity.login
description: User logins, with e-mail
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: ts, type: datetime, required: true }
  - { name: attempts, type: float }
  - { name: email, type: string, sensitive: hash }
  - { name: ok, type: bool, default: true }
";

/// Breaks backward compatibility twice: removes `ts` and adds a required field.
const V3_BAD: &str = "name: user.activity.login
fields:
  - { name: user_id, type: string, required: true, indexed: true }
  - { name: attempts, type: float }
  - { name: country, type: string, required: true }
";

fn schema(text: &str) -> Schema {
    Schema::from_yaml(text, "test.yaml").unwrap()
}

#[test]
fn register_list_get_and_refuse_an_incompatible_version() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("schemas")).unwrap();

    let check = registry.check(&schema(V1)).unwrap();
    assert_eq!(check.version, 1);
    assert_eq!(
        check.to_string(),
        "user.activity.login: new schema, would be registered as v1"
    );
    assert!(
        registry.list().unwrap().schemas.is_empty(),
        "check writes nothing"
    );

    let r1 = registry.register(&schema(V1)).unwrap();
    assert_eq!((r1.version, r1.created), (1, true));
    let r2 = registry.register(&schema(V2)).unwrap();
    assert_eq!((r2.version, r2.created), (2, true));
    assert_eq!(
        r2.changes,
        [
            "~ attempts (int, optional -> float, optional)",
            "+ email (string, optional, sensitive hash)",
            "+ ok (bool, default true)",
        ]
    );

    // The files on disk: one per version, holding the definition with its version.
    let schema_dir = dir.path().join("schemas/user.activity.login");
    let mut files: Vec<String> = std::fs::read_dir(&schema_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["v1.yaml", "v2.yaml"]);
    let v2_text = std::fs::read_to_string(schema_dir.join("v2.yaml")).unwrap();
    assert!(v2_text.contains("version: 2\n"), "{v2_text}");
    assert_eq!(r2.path, schema_dir.join("v2.yaml"));

    let list = registry.list().unwrap();
    assert_eq!(list.schemas.len(), 1);
    assert_eq!(list.schemas[0].versions, [1, 2]);
    assert_eq!(list.schemas[0].latest, 2);
    assert_eq!(list.schemas[0].fields, 5);
    let table = list.to_string();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("user.activity.login      v2         2       5  User logins, with e-mail"),
        "{table}"
    );

    let latest = registry
        .get("user.activity.login", VersionSpec::Latest)
        .unwrap();
    assert_eq!(latest.version(), Some(2));
    assert_eq!(latest.def().fields.len(), 5);
    let first = registry
        .get("user.activity.login", "v1".parse().unwrap())
        .unwrap();
    assert_eq!(first.version(), Some(1));
    assert!(first.to_string().contains("version: 1"));

    let err = registry.register(&schema(V3_BAD)).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Schema);
    assert_eq!(
        err.to_string(),
        "schema `user.activity.login`: the change from v2 is not backward compatible:\n  \
         - field `country`: added as a required field: records valid under the previous version do not have it (make it optional or give it a default) (backward)\n  \
         - field `ts`: required field removed (backward)"
    );
    let Error::Schema(SchemaError::Incompatible {
        problems, previous, ..
    }) = err
    else {
        panic!("expected Incompatible");
    };
    assert_eq!(previous, 2);
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0].field.as_deref(), Some("country"));
    // `check` refuses it the same way, and nothing was written.
    assert!(matches!(
        registry.check(&schema(V3_BAD)),
        Err(Error::Schema(SchemaError::Incompatible { .. }))
    ));
    assert_eq!(registry.versions("user.activity.login").unwrap(), [1, 2]);
}

#[test]
fn registering_the_same_definition_twice_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    registry.register(&schema(V1)).unwrap();
    let again = registry.register(&schema(V1)).unwrap();
    assert_eq!((again.version, again.created), (1, false));
    assert!(again.to_string().contains("already registered"));
    // Registering the stored file itself (which names its version) is also a no-op.
    let stored = registry
        .get("user.activity.login", VersionSpec::Latest)
        .unwrap();
    assert!(!registry.register(&stored).unwrap().created);
    let check = registry.check(&schema(V1)).unwrap();
    assert!(check.unchanged);
    assert_eq!(
        check.to_string(),
        "user.activity.login: identical to the registered v1"
    );
    assert_eq!(registry.versions("user.activity.login").unwrap(), [1]);
}

#[test]
fn explicit_versions_must_be_the_next_one_or_identical() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let err = registry
        .register(&schema(
            &V1.replace("description:", "version: 3\ndescription:"),
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema `user.activity.login`: the definition says version 3, but the next version is 1 (leave `version` out to get the next one)"
    );
    registry
        .register(&schema(
            &V1.replace("description:", "version: 1\ndescription:"),
        ))
        .unwrap();
    let changed = V2.replace("description:", "version: 1\ndescription:");
    let err = registry.register(&schema(&changed)).unwrap_err();
    assert!(matches!(
        err,
        Error::Schema(SchemaError::VersionExists { version: 1, .. })
    ));
}

#[test]
fn unknown_schemas_and_versions_are_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let err = registry
        .get("user.activity.login", VersionSpec::Latest)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no schema named `user.activity.login` in the registry at ")
    );
    registry.register(&schema(V1)).unwrap();
    let err = registry
        .get("user.activity.login", VersionSpec::Exact(4))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema `user.activity.login` has no version 4 (registered versions: 1)"
    );
    assert_eq!(err.class(), ErrorClass::Schema);
}

#[test]
fn files_are_read_and_checked_with_their_path_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("reg")).unwrap();
    let good = dir.path().join("login.yaml");
    std::fs::write(&good, V1).unwrap();
    assert_eq!(registry.check_file(&good).unwrap().version, 1);
    assert_eq!(registry.register_file(&good).unwrap().version, 1);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: a.b\nfields:\n  - { name: x, type: int, default: oops }\n",
    )
    .unwrap();
    let err = registry.register_file(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: invalid schema definition: line 3: fields[0].default: expected a int default, found the string \"oops\"",
            bad.display()
        )
    );

    let missing = dir.path().join("missing.yaml");
    let err = registry.check_file(&missing).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Internal);
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", missing.display()))
    );
}

#[test]
fn stray_files_in_the_registry_are_ignored_and_tampered_files_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    registry.register(&schema(V1)).unwrap();
    let schema_dir = dir.path().join("user.activity.login");
    std::fs::write(schema_dir.join(".tmp-abc"), "half a file").unwrap();
    std::fs::write(schema_dir.join("notes.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("README"), "not a schema").unwrap();
    assert_eq!(registry.list().unwrap().schemas.len(), 1);
    assert_eq!(registry.versions("user.activity.login").unwrap(), [1]);

    // A v2 file that claims to be v7 is reported, not trusted.
    std::fs::write(
        schema_dir.join("v2.yaml"),
        V1.replace("description:", "version: 7\ndescription:"),
    )
    .unwrap();
    let err = registry
        .get("user.activity.login", VersionSpec::Latest)
        .unwrap_err();
    assert!(
        err.to_string().contains("holds `user.activity.login` version 7, but its place in the registry says `user.activity.login` version 2"),
        "{err}"
    );
}

#[test]
fn tricky_definitions_survive_the_round_trip_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let text = r#"{
  "name": "odd.values",
  "description": "multi\nline: with # and 'quotes' and ünïcode",
  "unknown_fields": "reject",
  "fields": [
    {"name": "a", "type": "string", "default": "007"},
    {"name": "b", "type": "string", "default": "true"},
    {"name": "c", "type": "string", "default": "null"},
    {"name": "d", "type": "json", "default": {"k": [1, 2.5, "x", null, {"deep": true}]}},
    {"name": "e", "type": "float", "default": 0.1},
    {"name": "f", "type": "datetime", "default": 1714564800},
    {"name": "g", "type": "string", "default": "- not a list"}
  ]
}"#;
    let schema = Schema::from_yaml(text, "odd.json").unwrap();
    registry.register(&schema).unwrap();
    let back = registry.get("odd.values", VersionSpec::Latest).unwrap();
    let mut expected = schema.def().clone();
    expected.version = Some(1);
    assert_eq!(back.def(), &expected);
    // And registering the same JSON again is recognised as unchanged.
    assert!(!registry.register(&schema).unwrap().created);
}
