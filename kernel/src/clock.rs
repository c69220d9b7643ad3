//! A calibrated clock for benchmarks: the CPU's time-stamp counter, measured once
//! against the 100 Hz timer.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::pic;

/// TSC ticks per microsecond, 0 until calibrated.
static TICKS_PER_MICROSECOND: AtomicU64 = AtomicU64::new(0);

fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Calibrates the TSC over `timer_ticks` timer periods (10 ms each). Needs
/// interrupts on.
pub fn calibrate(timer_ticks: u64) {
    let start_tick = pic::ticks();
    while pic::ticks() == start_tick {
        x86_64::instructions::hlt();
    }
    let (tick, start) = (pic::ticks(), tsc());
    while pic::ticks() < tick + timer_ticks {
        x86_64::instructions::hlt();
    }
    let elapsed = tsc() - start;
    let microseconds = timer_ticks * 1_000_000 / u64::from(pic::TIMER_HZ);
    TICKS_PER_MICROSECOND.store((elapsed / microseconds).max(1), Ordering::Relaxed);
}

/// A point in time.
#[derive(Clone, Copy, Debug)]
pub struct Instant(u64);

impl Instant {
    /// Now (calibrating first if nobody has).
    pub fn now() -> Instant {
        if TICKS_PER_MICROSECOND.load(Ordering::Relaxed) == 0 {
            calibrate(20);
        }
        Instant(tsc())
    }

    /// Nanoseconds since `self`.
    pub fn elapsed_ns(&self) -> u64 {
        let ticks = tsc().saturating_sub(self.0);
        ticks * 1000 / TICKS_PER_MICROSECOND.load(Ordering::Relaxed).max(1)
    }
}
