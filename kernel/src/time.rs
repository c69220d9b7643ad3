//! Waiting for a device with a timeout: by interrupt where the device has one, by
//! polling where it cannot, and never for ever.

use crate::dma::IoReturn;

/// How a driver waits for its device. Drivers take it as a trait object so the
/// same driver code waits on the timer and `hlt` in the kernel, and not at all on
/// the host, where fake devices finish at once.
pub trait Waiter: Send + Sync {
    /// Returns `Ok` once `done()` is true, `Timeout` after about `timeout_ms`.
    fn wait_until(&self, timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn>;
}

#[cfg(target_os = "none")]
pub use kernel_waiters::{InterruptWaiter, PollingWaiter};

#[cfg(target_os = "none")]
mod kernel_waiters {
    use x86_64::instructions::interrupts;

    use super::Waiter;
    use crate::arch::pic;
    use crate::dma::IoReturn;

    fn deadline(timeout_ms: u64) -> u64 {
        // Round up and add one tick: a tick may be about to happen right now.
        pic::ticks() + (timeout_ms * u64::from(pic::TIMER_HZ)).div_ceil(1000) + 1
    }

    /// Sleeps in `hlt` between checks: every interrupt (the device's, or the
    /// timer's) wakes it. Interrupts are off between the check and the `hlt`
    /// (`sti; hlt` is atomic), so a completion interrupt cannot slip in between and
    /// leave it asleep until the next tick.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct InterruptWaiter;

    impl Waiter for InterruptWaiter {
        fn wait_until(
            &self,
            timeout_ms: u64,
            done: &mut dyn FnMut() -> bool,
        ) -> Result<(), IoReturn> {
            let deadline = deadline(timeout_ms);
            loop {
                interrupts::disable();
                if done() {
                    interrupts::enable();
                    return Ok(());
                }
                if pic::ticks() >= deadline {
                    interrupts::enable();
                    return Err(IoReturn::Timeout);
                }
                interrupts::enable_and_hlt();
            }
        }
    }

    /// Spins on `done()` for devices without a usable interrupt line; the timer
    /// still ticks, so the timeout holds.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct PollingWaiter;

    impl Waiter for PollingWaiter {
        fn wait_until(
            &self,
            timeout_ms: u64,
            done: &mut dyn FnMut() -> bool,
        ) -> Result<(), IoReturn> {
            let deadline = deadline(timeout_ms);
            while !done() {
                if pic::ticks() >= deadline {
                    return Err(IoReturn::Timeout);
                }
                core::hint::spin_loop();
            }
            Ok(())
        }
    }
}
