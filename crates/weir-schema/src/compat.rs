//! Schema evolution: which changes between two versions each compatibility mode allows.

use crate::def::{Compatibility, FieldType, UnknownFields};
use crate::error::Incompatibility;
use crate::schema::{Field, Schema};

/// Every way `next` breaks `next`'s compatibility mode against `previous`; empty when it does not.
pub(crate) fn incompatibilities(previous: &Schema, next: &Schema) -> Vec<Incompatibility> {
    let mode = next.def.compatibility;
    let mut problems = Vec::new();
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        backward(previous, next, &mut problems);
    }
    if matches!(mode, Compatibility::Forward | Compatibility::Full) {
        forward(previous, next, &mut problems);
    }
    problems
}

/// A field that must be present in every valid record.
fn mandatory(f: &Field) -> bool {
    f.required
}

/// Whether a field of type `reader` accepts every valid value of a field of type `writer`.
fn reads(reader: FieldType, writer: FieldType) -> bool {
    reader == writer || (reader == FieldType::Float && writer == FieldType::Int)
}

/// The new version must accept every record the previous one accepted.
fn backward(old: &Schema, new: &Schema, out: &mut Vec<Incompatibility>) {
    let mut problem = |field: Option<&str>, reason: String| {
        out.push(Incompatibility {
            field: field.map(str::to_string),
            direction: Compatibility::Backward,
            reason,
        })
    };
    for nf in &new.fields {
        match old.field(&nf.name) {
            None if mandatory(nf) => problem(
                Some(&nf.name),
                "added as a required field: records valid under the previous version do not have it (make it optional or give it a default)".into(),
            ),
            None => {}
            Some(of) => {
                if !reads(nf.ty, of.ty) {
                    problem(
                        Some(&nf.name),
                        format!(
                            "type changed from {} to {}: only int to float is allowed",
                            of.ty, nf.ty
                        ),
                    );
                }
                if mandatory(nf) && !mandatory(of) {
                    problem(
                        Some(&nf.name),
                        "optional field made required: records valid under the previous version may lack it".into(),
                    );
                }
            }
        }
    }
    for of in &old.fields {
        if new.field(&of.name).is_some() {
            continue;
        }
        if mandatory(of) {
            problem(Some(&of.name), "required field removed".into());
        } else if new.def.unknown_fields == UnknownFields::Reject {
            problem(
                Some(&of.name),
                "field removed while the new version rejects unknown fields: records that still carry it would be refused".into(),
            );
        }
    }
    if new.def.unknown_fields == UnknownFields::Reject
        && old.def.unknown_fields != UnknownFields::Reject
    {
        problem(
            None,
            "unknown_fields changed to reject: records with extra fields were valid under the previous version".into(),
        );
    }
}

/// The previous version must accept every record the new one accepts.
fn forward(old: &Schema, new: &Schema, out: &mut Vec<Incompatibility>) {
    let mut problem = |field: Option<&str>, reason: String| {
        out.push(Incompatibility {
            field: field.map(str::to_string),
            direction: Compatibility::Forward,
            reason,
        })
    };
    for nf in &new.fields {
        match old.field(&nf.name) {
            None if old.def.unknown_fields == UnknownFields::Reject => problem(
                Some(&nf.name),
                "added, but the previous version rejects unknown fields".into(),
            ),
            None => {}
            Some(of) => {
                if !reads(of.ty, nf.ty) {
                    problem(
                        Some(&nf.name),
                        format!(
                            "type changed from {} to {}: readers of the previous version expect {}",
                            of.ty, nf.ty, of.ty
                        ),
                    );
                }
                if mandatory(of) && !mandatory(nf) {
                    problem(
                        Some(&nf.name),
                        "required field made optional: readers of the previous version need it in every record".into(),
                    );
                }
            }
        }
    }
    for of in &old.fields {
        if new.field(&of.name).is_none() && mandatory(of) {
            problem(
                Some(&of.name),
                "required field removed: readers of the previous version need it".into(),
            );
        }
    }
}

/// A human-readable list of what changed from `previous` to `next`, for `weir schema check`.
pub(crate) fn changes(previous: &Schema, next: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for nf in &next.fields {
        match previous.field(&nf.name) {
            None => out.push(format!("+ {} ({})", nf.name, describe(nf))),
            Some(of) if describe(of) != describe(nf) => out.push(format!(
                "~ {} ({} -> {})",
                nf.name,
                describe(of),
                describe(nf)
            )),
            Some(_) => {}
        }
    }
    for of in &previous.fields {
        if next.field(&of.name).is_none() {
            out.push(format!("- {} ({})", of.name, describe(of)));
        }
    }
    let (o, n) = (&previous.def, &next.def);
    let mut setting = |key: &str, old: String, new: String| {
        if old != new {
            out.push(format!("~ {key}: {old} -> {new}"));
        }
    };
    setting(
        "unknown_fields",
        format!("{:?}", o.unknown_fields).to_lowercase(),
        format!("{:?}", n.unknown_fields).to_lowercase(),
    );
    setting(
        "compatibility",
        o.compatibility.to_string(),
        n.compatibility.to_string(),
    );
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    setting("time_field", show(&o.time_field), show(&n.time_field));
    setting("partition_by", show(&o.partition_by), show(&n.partition_by));
    setting("ttl", show(&o.ttl), show(&n.ttl));
    out
}

fn describe(f: &Field) -> String {
    let mut text = f.ty.to_string();
    if f.required {
        text.push_str(", required");
    } else if let Some(d) = &f.default {
        text.push_str(&format!(", default {}", d.to_json()));
    } else {
        text.push_str(", optional");
    }
    if f.indexed {
        text.push_str(", indexed");
    }
    if let Some(s) = f.sensitive {
        text.push_str(&format!(", sensitive {}", format!("{s:?}").to_lowercase()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(mode: &str, unknown: &str, fields: &str) -> Schema {
        let yaml = format!(
            "name: t.s\ncompatibility: {mode}\nunknown_fields: {unknown}\nfields:\n{fields}"
        );
        Schema::from_yaml(&yaml, "t.yaml").unwrap()
    }

    fn reasons(old: &Schema, new: &Schema) -> Vec<String> {
        incompatibilities(old, new)
            .iter()
            .map(|i| i.to_string())
            .collect()
    }

    const BASE: &str =
        "  - { name: id, type: string, required: true }\n  - { name: n, type: int }\n";

    #[test]
    fn backward_allows_optional_additions_removals_and_widening() {
        let old = schema("backward", "keep", BASE);
        let new = schema(
            "backward",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: float }\n  - { name: a, type: bool }\n  - { name: b, type: int, default: 0 }\n",
        );
        assert_eq!(reasons(&old, &new), Vec::<String>::new());
        let fewer = schema(
            "backward",
            "keep",
            "  - { name: id, type: string, required: true }\n",
        );
        assert_eq!(reasons(&old, &fewer), Vec::<String>::new());
    }

    #[test]
    fn backward_refuses_each_breaking_change_with_the_field_and_reason() {
        let old = schema("backward", "keep", BASE);
        let cases = [
            (
                "  - { name: id, type: string, required: true }\n  - { name: n, type: int }\n  - { name: r, type: int, required: true }\n",
                "field `r`: added as a required field",
            ),
            (
                "  - { name: n, type: int }\n",
                "field `id`: required field removed (backward)",
            ),
            (
                "  - { name: id, type: string, required: true }\n  - { name: n, type: string }\n",
                "field `n`: type changed from int to string: only int to float is allowed (backward)",
            ),
            (
                "  - { name: id, type: string, required: true }\n  - { name: n, type: int, required: true }\n",
                "field `n`: optional field made required",
            ),
        ];
        for (fields, expected) in cases {
            let new = schema("backward", "keep", fields);
            let found = reasons(&old, &new);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].starts_with(expected), "{found:?} vs {expected}");
        }
        let narrowing = schema("backward", "keep", BASE);
        let wider = schema(
            "backward",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: float }\n",
        );
        assert!(reasons(&wider, &narrowing)[0].contains("from float to int"));
        let strict = schema(
            "backward",
            "reject",
            "  - { name: id, type: string, required: true }\n",
        );
        let found = reasons(&old, &strict);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with(
                "field `n`: field removed while the new version rejects unknown fields"
            )
        );
        assert!(found[1].starts_with("unknown_fields changed to reject"));
    }

    #[test]
    fn forward_is_the_mirror_image() {
        let old = schema("forward", "keep", BASE);
        // Allowed: new required field, narrowing float->int is covered below, optional removal.
        let ok = schema(
            "forward",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: r, type: int, required: true }\n",
        );
        assert_eq!(reasons(&old, &ok), Vec::<String>::new());
        let optional_id = schema(
            "forward",
            "keep",
            "  - { name: id, type: string }\n  - { name: n, type: int }\n",
        );
        assert_eq!(
            reasons(&old, &optional_id),
            [
                "field `id`: required field made optional: readers of the previous version need it in every record (forward)"
            ]
        );
        let widened = schema(
            "forward",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: float }\n",
        );
        assert!(reasons(&old, &widened)[0].contains("type changed from int to float"));
        let strict_old = schema("forward", "reject", BASE);
        let added = schema(
            "forward",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: int }\n  - { name: x, type: int }\n",
        );
        assert!(
            reasons(&strict_old, &added)[0].contains("previous version rejects unknown fields")
        );
    }

    #[test]
    fn full_checks_both_directions_and_none_nothing() {
        let old = schema("full", "keep", BASE);
        let widened = schema(
            "full",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: float }\n",
        );
        let found = incompatibilities(&old, &widened);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].direction, Compatibility::Forward);
        let required = schema(
            "full",
            "keep",
            "  - { name: id, type: string, required: true }\n  - { name: n, type: int }\n  - { name: r, type: int, required: true }\n",
        );
        assert_eq!(
            incompatibilities(&old, &required)[0].direction,
            Compatibility::Backward
        );
        let anything = schema(
            "none",
            "keep",
            "  - { name: other, type: json, required: true }\n",
        );
        assert!(incompatibilities(&old, &anything).is_empty());
    }

    #[test]
    fn changes_are_listed() {
        let old = schema("backward", "keep", BASE);
        let new = schema(
            "backward",
            "drop",
            "  - { name: id, type: string, required: true, indexed: true }\n  - { name: e, type: string, sensitive: hash }\n",
        );
        assert_eq!(
            changes(&old, &new),
            [
                "~ id (string, required -> string, required, indexed)",
                "+ e (string, optional, sensitive hash)",
                "- n (int, optional)",
                "~ unknown_fields: keep -> drop",
            ]
        );
    }
}
