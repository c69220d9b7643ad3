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
pub use kernel_waiters::{InterruptWaiter, PollingWaiter, waiter_for_line};

#[cfg(target_os = "none")]
mod kernel_waiters {
    use x86_64::instructions::interrupts;

    use super::Waiter;
    use crate::arch::pic;
    use crate::dma::IoReturn;

    /// Checks `done` until it holds or about `timeout_ms` have passed. With
    /// `sleep`, interrupts are off between the check and the `hlt` (`sti; hlt` is
    /// atomic), so a completion interrupt cannot slip in between and leave the CPU
    /// asleep until the next tick; without it, the loop spins.
    fn wait(timeout_ms: u64, done: &mut dyn FnMut() -> bool, sleep: bool) -> Result<(), IoReturn> {
        // Round up and add one tick: a tick may be about to happen right now.
        let deadline = pic::ticks() + (timeout_ms * u64::from(pic::TIMER_HZ)).div_ceil(1000) + 1;
        loop {
            if sleep {
                interrupts::disable();
            }
            let finished = done();
            let late = pic::ticks() >= deadline;
            match (finished, late, sleep) {
                (true, _, _) | (false, true, _) => {
                    if sleep {
                        interrupts::enable();
                    }
                    return if finished { Ok(()) } else { Err(IoReturn::Timeout) };
                }
                (false, false, true) => interrupts::enable_and_hlt(),
                (false, false, false) => core::hint::spin_loop(),
            }
        }
    }

    /// Sleeps in `hlt` between checks: every interrupt (the device's, or the
    /// timer's) wakes it.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct InterruptWaiter;

    impl Waiter for InterruptWaiter {
        fn wait_until(&self, timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
            wait(timeout_ms, done, true)
        }
    }

    static INTERRUPT_WAITER: InterruptWaiter = InterruptWaiter;
    static POLLING_WAITER: PollingWaiter = PollingWaiter;

    /// How to wait for a device with interrupt line `line`: sleep until an
    /// interrupt if it has one, poll if not.
    pub fn waiter_for_line(line: Option<u8>) -> &'static dyn Waiter {
        match line {
            Some(_) => &INTERRUPT_WAITER,
            None => &POLLING_WAITER,
        }
    }

    /// Spins on `done()` for devices without a usable interrupt line; the timer
    /// still ticks, so the timeout holds.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct PollingWaiter;

    impl Waiter for PollingWaiter {
        fn wait_until(&self, timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
            wait(timeout_ms, done, false)
        }
    }
}
