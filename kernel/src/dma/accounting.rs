//! `Accounting`: what a platform's DMA layer keeps besides memory, in three
//! parts: the bounce budget ([`BounceBudget`]), the statistics
//! ([`Statistics`]) and the debugging mode's misuse log ([`MisuseLog`]), plus
//! the ids of commands and descriptors. Its own methods are the public view
//! drivers and the shell use; the DMA layer itself talks to the parts. (The
//! experiments' `arm_experiment` and `disarm_experiment` are in
//! `experiment.rs`: they arm the shell's hooks, not anything kept here.)

use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};

use super::budget::BounceBudget;
use super::misuse::{Misuse, MisuseLog, MisuseReport};
use super::statistics::{BounceStats, Statistics};

/// The bounce budget, the statistics and the misuse log of one platform.
#[derive(Debug)]
pub struct Accounting {
    budget: BounceBudget,
    statistics: Statistics,
    misuse: MisuseLog,
    next_id: AtomicU64,
}

impl Accounting {
    /// Zeroed counters with a budget of `page_limit` bounce pages; debugging on.
    pub const fn new(page_limit: usize) -> Accounting {
        Accounting {
            budget: BounceBudget::new(page_limit),
            statistics: Statistics::new(),
            misuse: MisuseLog::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The bounce budget.
    pub fn budget(&self) -> &BounceBudget {
        &self.budget
    }

    /// The statistics.
    pub fn statistics(&self) -> &Statistics {
        &self.statistics
    }

    /// The misuse log.
    pub fn misuse(&self) -> &MisuseLog {
        &self.misuse
    }

    /// A snapshot of the counters and of the budget.
    pub fn stats(&self) -> BounceStats {
        BounceStats {
            pages_in_use: self.budget.in_use(),
            page_limit: self.budget.limit(),
            ..self.statistics.snapshot()
        }
    }

    /// Changes the bounce page budget.
    pub fn set_page_limit(&self, pages: usize) {
        self.budget.set_limit(pages);
    }

    /// Turns the debugging mode on or off.
    pub fn set_debug(&self, enabled: bool) {
        self.misuse.set_debug(enabled);
    }

    /// Whether the debugging mode is on.
    pub fn debug(&self) -> bool {
        self.misuse.debug()
    }

    /// A fresh id for a command or descriptor.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The misuse reports so far, oldest first.
    pub fn misuse_log(&self) -> alloc::vec::Vec<MisuseReport> {
        self.misuse.reports()
    }

    /// Reports a [`Misuse::PreparedAtStop`] if any command is still prepared, and
    /// says how many are.
    #[track_caller]
    pub fn check_stopped(&self) -> usize {
        let prepared = self.statistics.prepared_commands();
        if prepared > 0 {
            self.misuse.report(MisuseReport {
                misuse: Misuse::PreparedAtStop,
                command: None,
                descriptor: None,
                location: Location::caller(),
            });
        }
        prepared
    }
}
