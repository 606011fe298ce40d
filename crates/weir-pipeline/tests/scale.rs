//! Validation time grows linearly with the size of the file. No wall-time assertion: the sizes
//! are chosen so that the quadratic versions (unique operator names found by scanning the
//! graph: about 15 s for 1,000 steps in a debug build, cubic beyond; the YAML parser on deep
//! flow nesting: 48 s for 100,000 `[` in a release build) would not finish within CI's time,
//! while the linear ones take a few seconds.

use weir_pipeline::Pipeline;

#[test]
fn twenty_thousand_steps_validate() {
    let mut yaml = String::from(
        "name: many\nsource: { type: generator, count: 1, fields: { id: id, amount: \"id * 2\" } }\nsteps:\n",
    );
    for i in 0..20_000 {
        yaml.push_str(&format!("  - filter: \"amount > {i}\"\n"));
    }
    yaml.push_str("sink: { type: discard }\n");
    let plan = Pipeline::parse(&yaml, "many.yaml")
        .expect("parses")
        .validate()
        .expect("validates");
    assert!(plan.contains("20000 steps"), "{plan}");
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    for yaml in [
        format!("name: deep\ndescription: {}\n", "[".repeat(200_000)),
        format!("name: deep\ndescription: {}\n", "{a: ".repeat(200_000)),
        // A compact block list: `- - - ... x`.
        format!("name: deep\ndescription:\n{}x\n", "- ".repeat(200_000)),
    ] {
        let line = if yaml.contains("- - ") { 3 } else { 2 };
        let e = Pipeline::parse(&yaml, "deep.yaml").err().expect("refused");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "deep.yaml:{line}: the file nests deeper than 64 levels"
            )),
            "{e}"
        );
    }
    // Within the limit, nesting is parsed as usual (and here refused for its type).
    let yaml = format!(
        "name: ok\ndescription: {}{}\n",
        "[".repeat(60),
        "]".repeat(60)
    );
    let e = Pipeline::parse(&yaml, "ok.yaml")
        .err()
        .expect("not a string");
    assert!(e.message.contains("expected a string"), "{e}");
}
