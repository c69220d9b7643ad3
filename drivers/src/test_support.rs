//! Helpers for the drivers' host tests.

use dmakit::dma::IoReturn;
use dmakit::time::Waiter;

/// Fake devices finish inside the register write that starts them, so waiting
/// only has to look: a few checks, then `Timeout`.
pub struct ImmediateWaiter;

impl Waiter for ImmediateWaiter {
    fn wait_until(&self, _timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
        if (0..3).any(|_| done()) { Ok(()) } else { Err(IoReturn::Timeout) }
    }
}

/// A waiter for drivers under test.
pub static WAITER: ImmediateWaiter = ImmediateWaiter;

/// How many generated device behaviours a hostile-device property test runs:
/// 100,000, or more when `PROPTEST_CASES` (proptest's own variable) asks for
/// more. Fewer are never run, so `make test` always covers the floor.
pub fn hostile_cases() -> u32 {
    proptest::test_runner::Config::default().cases.max(100_000)
}
