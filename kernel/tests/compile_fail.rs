//! Misuses of the DMA life cycle that must not compile (and a `?` that would
//! drop a failure's cause), each checked for the exact error the compiler
//! gives (on stable, unlike rustdoc's `compile_fail`, which checks error codes
//! only on nightly). Each case is a valid program but
//! for the one misuse; the expected compiler output is beside it (`*.stderr`).
//! After a deliberate change of wording, `TRYBUILD=overwrite cargo test -p
//! dmakit-kernel --test compile_fail` rewrites them: read each before committing.

#[test]
fn misuses_of_a_transfer_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
