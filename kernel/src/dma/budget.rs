//! The bounce budget: how many bounce pages a platform may have allocated at
//! once, and how many it has. A prepare that would overflow it fails with
//! `NoResources` instead of taking memory the rest of the kernel needs.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Bounce pages in use, and the most allowed at once.
#[derive(Debug)]
pub struct BounceBudget {
    in_use: AtomicUsize,
    limit: AtomicUsize,
}

impl BounceBudget {
    /// An unused budget of `limit` pages.
    pub const fn new(limit: usize) -> BounceBudget {
        BounceBudget { in_use: AtomicUsize::new(0), limit: AtomicUsize::new(limit) }
    }

    /// Bounce pages allocated now (leaked ones included: the budget really lost them).
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most bounce pages allowed at once.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (pages in use above it stay; new ones wait for room).
    pub fn set_limit(&self, pages: usize) {
        self.limit.store(pages, Ordering::Relaxed);
    }

    /// Takes `pages`, or says `false` when they would overflow the limit.
    pub(crate) fn reserve(&self, pages: usize) -> bool {
        let limit = self.limit();
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(pages).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives `pages` back.
    pub(crate) fn release(&self, pages: usize) {
        self.in_use.fetch_sub(pages, Ordering::AcqRel);
    }
}
