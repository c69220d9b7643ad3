//! The work loop's two halves (IOKit's `IOInterruptEventSource` and
//! `IOCommandGate`): what an interrupt may do, and what only the loop does.
//!
//! An interrupt handler runs at any moment, on top of whatever the CPU was
//! doing, maybe in the middle of a submission that holds the disk's lock. So it
//! does nearly nothing: it quiets the device and counts the event. The work
//! itself (completing transfers, copying bounce buffers, starting the next
//! request) runs later, in the loop, behind the gate, like a submission; the two
//! never run at once, and the handler never waits for the gate, so nothing can
//! deadlock. dmakit has no threads: the loop runs whenever someone submits or
//! waits (IOKit would run it on the work loop's own thread).

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, MutexGuard};

/// Events signalled from an interrupt handler, taken by the work loop: a
/// counter, so signalling never allocates, locks or blocks.
#[derive(Debug, Default)]
pub struct InterruptEventSource {
    pending: AtomicU64,
    total: AtomicU64,
}

impl InterruptEventSource {
    /// No events yet.
    pub const fn new() -> InterruptEventSource {
        InterruptEventSource { pending: AtomicU64::new(0), total: AtomicU64::new(0) }
    }

    /// From the interrupt handler: there is work for the loop.
    pub fn signal(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// For the loop: the events since it last looked (and forgets them).
    pub fn take(&self) -> u64 {
        self.pending.swap(0, Ordering::AcqRel)
    }

    /// Events signalled since the start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The gate: whoever holds it may touch the state `T` (queues, slots); one at a
/// time. Submitters and the work loop both pass through it.
#[derive(Debug, Default)]
pub struct CommandGate<T> {
    state: Mutex<T>,
}

impl<T> CommandGate<T> {
    /// A gate over `state`.
    pub const fn new(state: T) -> CommandGate<T> {
        CommandGate { state: Mutex::new(state) }
    }

    /// Runs `action` behind the gate, waiting for it if someone else holds it.
    pub fn run_action<R>(&self, action: impl FnOnce(&mut T) -> R) -> R {
        action(&mut self.state.lock())
    }

    /// Runs `action` if the gate is free; `None` if someone holds it (they will
    /// see the pending events when they run the loop).
    pub fn try_run_action<R>(&self, action: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.state.try_lock().map(|mut state: MutexGuard<'_, T>| action(&mut state))
    }
}
