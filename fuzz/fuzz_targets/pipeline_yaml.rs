//! The pipeline loader on arbitrary bytes: it must accept or refuse, never panic or hang.
//! The in-tree test `crates/weir-pipeline/tests/loader_fuzz.rs` runs the same check on
//! random and mutated inputs for a few seconds in CI; this target is for longer runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pipeline) = weir_pipeline::Pipeline::parse(text, "fuzz.yaml") {
        // Validation builds the plan (compiles every expression) without running it.
        let _ = pipeline.validate();
    }
});
