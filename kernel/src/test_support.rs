//! Helpers for the kernel's host tests.

/// How many generated inputs a parser's property test runs: 100,000, or more
/// when `PROPTEST_CASES` (proptest's own variable) asks for more. Fewer are
/// never run, so `make test` always covers the floor.
pub fn generated_cases() -> u32 {
    proptest::test_runner::Config::default().cases.max(100_000)
}

/// The property-test configuration of a parser fed generated input:
/// [`generated_cases`] cases, and no failure files written into the tree
/// (a failure prints its input, which the regression test then names).
pub fn generated_input_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: generated_cases(),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
