//! Misuse of the derives fails to compile, with the error on the offending tokens.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p lifeguard-derive
//! --test compile_fail`, then review the `.stderr` diffs.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
