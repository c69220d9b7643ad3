//! Bounce accounting (pages in use, bytes copied each way, bounced transfers) and
//! the debugging mode's misuse log, after Linux's `CONFIG_DMA_API_DEBUG`.

use alloc::vec::Vec;
use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use super::experiment::Skip;

/// Misuse log entries kept (the oldest are dropped first).
const LOG_CAPACITY: usize = 64;

/// A kind of misuse the debugging mode catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// `complete()` on a command that is not prepared (completing twice).
    CompleteWithoutPrepare,
    /// `synchronize()` on a command that is not prepared.
    SynchronizeWithoutPrepare,
    /// A command dropped while still prepared: a device may still use its
    /// memory, so its bounce pages and the descriptor's memory are leaked.
    DroppedWhilePrepared,
    /// A transfer dropped after its segments were handed to a device, without
    /// `complete`: its memory is leaked, never freed under the device.
    TransferDroppedWhileDeviceOwned,
    /// A transfer given up because its device could not be stopped: its memory
    /// is leaked, never freed under the device.
    AbandonedWhileDeviceOwned,
    /// A command handed memory back to the CPU more often than it lent it to the
    /// device: a bug in the ownership bookkeeping.
    OwnershipImbalance,
    /// A descriptor dropped while still prepared.
    DescriptorDroppedWhilePrepared,
    /// CPU read or write of a buffer the device owns (between prepare or
    /// `synchronize(Out)` and `synchronize(In)` or complete).
    CpuAccessWhileDeviceOwned,
    /// Prepared commands left when a driver stopped.
    PreparedAtStop,
    /// Clearing a descriptor that is still prepared without `auto_complete`.
    ClearWhilePrepared,
    /// The IOMMU did not confirm an unmap (its invalidation failed): the device
    /// may still reach the transfer's memory, which is leaked, not freed.
    InvalidationFailed,
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Misuse::CompleteWithoutPrepare => "complete() without a matching prepare() (completed twice?)",
            Misuse::SynchronizeWithoutPrepare => "synchronize() on a command that is not prepared",
            Misuse::DroppedWhilePrepared => "command dropped while prepared: its memory is leaked, not freed",
            Misuse::TransferDroppedWhileDeviceOwned => {
                "transfer dropped while the device could use it: its memory is leaked, not freed"
            }
            Misuse::AbandonedWhileDeviceOwned => {
                "transfer abandoned, its device could not be stopped: its memory is leaked, not freed"
            }
            Misuse::OwnershipImbalance => "memory handed back to the CPU more often than lent to the device",
            Misuse::DescriptorDroppedWhilePrepared => "memory descriptor dropped while prepared",
            Misuse::CpuAccessWhileDeviceOwned => "CPU access to a buffer the device owns",
            Misuse::PreparedAtStop => "prepared commands left at driver stop",
            Misuse::ClearWhilePrepared => "clear_memory_descriptor() while prepared",
            Misuse::InvalidationFailed => {
                "the IOMMU did not confirm an unmap: the device may still reach the memory, which is leaked, not freed"
            }
        })
    }
}

/// One reported misuse: what, which command and descriptor, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MisuseReport {
    /// What went wrong.
    pub misuse: Misuse,
    /// The command's id, if a command was involved.
    pub command: Option<u64>,
    /// The descriptor's id, if a descriptor was involved.
    pub descriptor: Option<u64>,
    /// The caller's source location.
    pub location: &'static Location<'static>,
}

impl fmt::Display for MisuseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DMA misuse: {}", self.misuse)?;
        if let Some(command) = self.command {
            write!(f, " [command #{command}]")?;
        }
        if let Some(descriptor) = self.descriptor {
            write!(f, " [descriptor #{descriptor}]")?;
        }
        write!(f, " at {}", self.location)
    }
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BounceStats {
    /// Bounce pages allocated now.
    pub pages_in_use: usize,
    /// Most bounce pages allowed at once.
    pub page_limit: usize,
    /// Bytes copied descriptor -> bounce buffer (towards the device).
    pub bytes_to_bounce: u64,
    /// Bytes copied bounce buffer -> descriptor (from the device).
    pub bytes_from_bounce: u64,
    /// Copies towards the device.
    pub copies_to_bounce: u64,
    /// Copies from the device.
    pub copies_from_bounce: u64,
    /// Prepares that bounced at least one byte.
    pub bounced_transfers: u64,
    /// Prepares that needed no bounce buffer at all.
    pub direct_transfers: u64,
    /// Transfers `synchronize(ForceDoubleBuffer)` moved into a fresh buffer
    /// (each was counted at prepare too, as bounced or direct).
    pub forced_double_buffers: u64,
    /// Commands prepared now.
    pub prepared_commands: usize,
    /// Bounce pages given up for ever because a device could still write them.
    pub leaked_pages: usize,
    /// Transfers given up (abandoned or dropped) while a device could use them.
    pub leaked_transfers: u64,
}

/// The live counters and the misuse log of one platform.
#[derive(Debug)]
pub struct Accounting {
    pages_in_use: AtomicUsize,
    page_limit: AtomicUsize,
    bytes_to_bounce: AtomicU64,
    bytes_from_bounce: AtomicU64,
    copies_to_bounce: AtomicU64,
    copies_from_bounce: AtomicU64,
    bounced_transfers: AtomicU64,
    direct_transfers: AtomicU64,
    forced_double_buffers: AtomicU64,
    prepared_commands: AtomicUsize,
    leaked_pages: AtomicUsize,
    leaked_transfers: AtomicU64,
    next_id: AtomicU64,
    debug: AtomicBool,
    /// The learner's armed experiment (`experiment::Skip` as a number), or 0.
    experiment: AtomicU8,
    log: Mutex<Vec<MisuseReport>>,
}

impl Accounting {
    /// Zeroed counters with a budget of `page_limit` bounce pages; debugging on.
    pub const fn new(page_limit: usize) -> Accounting {
        Accounting {
            pages_in_use: AtomicUsize::new(0),
            page_limit: AtomicUsize::new(page_limit),
            bytes_to_bounce: AtomicU64::new(0),
            bytes_from_bounce: AtomicU64::new(0),
            copies_to_bounce: AtomicU64::new(0),
            copies_from_bounce: AtomicU64::new(0),
            bounced_transfers: AtomicU64::new(0),
            direct_transfers: AtomicU64::new(0),
            forced_double_buffers: AtomicU64::new(0),
            prepared_commands: AtomicUsize::new(0),
            leaked_pages: AtomicUsize::new(0),
            leaked_transfers: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            debug: AtomicBool::new(true),
            experiment: AtomicU8::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BounceStats {
        BounceStats {
            pages_in_use: self.pages_in_use.load(Ordering::Relaxed),
            page_limit: self.page_limit.load(Ordering::Relaxed),
            bytes_to_bounce: self.bytes_to_bounce.load(Ordering::Relaxed),
            bytes_from_bounce: self.bytes_from_bounce.load(Ordering::Relaxed),
            copies_to_bounce: self.copies_to_bounce.load(Ordering::Relaxed),
            copies_from_bounce: self.copies_from_bounce.load(Ordering::Relaxed),
            bounced_transfers: self.bounced_transfers.load(Ordering::Relaxed),
            direct_transfers: self.direct_transfers.load(Ordering::Relaxed),
            forced_double_buffers: self.forced_double_buffers.load(Ordering::Relaxed),
            prepared_commands: self.prepared_commands.load(Ordering::Relaxed),
            leaked_pages: self.leaked_pages.load(Ordering::Relaxed),
            leaked_transfers: self.leaked_transfers.load(Ordering::Relaxed),
        }
    }

    /// Changes the bounce page budget.
    pub fn set_page_limit(&self, pages: usize) {
        self.page_limit.store(pages, Ordering::Relaxed);
    }

    /// Skips `step` once, at the next transfer on this platform that would do
    /// it (a learner's experiment: see [`super::experiment`]).
    pub fn arm_experiment(&self, step: Skip) {
        self.experiment.store(step as u8, Ordering::SeqCst);
    }

    /// Nothing is skipped any more; returns whether a step was still armed (no
    /// transfer reached it).
    pub fn disarm_experiment(&self) -> bool {
        self.experiment.swap(0, Ordering::SeqCst) != 0
    }

    /// Whether `step` is armed; if so it is disarmed now: skipped this once.
    pub(crate) fn take_experiment(&self, step: Skip) -> bool {
        self.experiment.compare_exchange(step as u8, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Turns the debugging mode on or off.
    pub fn set_debug(&self, enabled: bool) {
        self.debug.store(enabled, Ordering::Relaxed);
    }

    /// Whether the debugging mode is on.
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// A fresh id for a command or descriptor.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `pages` from the budget, or says `false` when it would overflow.
    pub(crate) fn reserve_pages(&self, pages: usize) -> bool {
        let limit = self.page_limit.load(Ordering::Relaxed);
        self.pages_in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(pages).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives `pages` back to the budget.
    pub(crate) fn release_pages(&self, pages: usize) {
        self.pages_in_use.fetch_sub(pages, Ordering::AcqRel);
    }

    /// Counts `pages` bounce pages that stay allocated for ever (they stay in
    /// `pages_in_use` too: the budget really lost them).
    pub(crate) fn count_leak(&self, pages: usize) {
        self.leaked_pages.fetch_add(pages, Ordering::Relaxed);
        self.leaked_transfers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one copy of `bytes`: `Out` descriptor -> bounce, `In` back.
    pub(crate) fn count_copy(&self, way: super::IoDirection, bytes: u64) {
        if way == super::IoDirection::Out {
            self.copies_to_bounce.fetch_add(1, Ordering::Relaxed);
            self.bytes_to_bounce.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.copies_from_bounce.fetch_add(1, Ordering::Relaxed);
            self.bytes_from_bounce.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_transfer(&self, bounced: bool) {
        let counter = if bounced { &self.bounced_transfers } else { &self.direct_transfers };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one transfer moved into a fresh buffer by `synchronize(ForceDoubleBuffer)`.
    pub(crate) fn count_forced_double_buffer(&self) {
        self.forced_double_buffers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn command_prepared(&self, prepared: bool) {
        if prepared {
            self.prepared_commands.fetch_add(1, Ordering::Relaxed);
        } else {
            self.prepared_commands.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Records and logs a misuse (in debugging mode; otherwise ignores it).
    pub(crate) fn report(&self, report: MisuseReport) {
        if !self.debug() {
            return;
        }
        log::error!("{report}");
        let mut log = self.log.lock();
        if log.len() == LOG_CAPACITY {
            log.remove(0);
        }
        log.push(report);
    }

    /// The misuse reports so far, oldest first.
    pub fn misuse_log(&self) -> Vec<MisuseReport> {
        self.log.lock().clone()
    }

    /// Reports a [`Misuse::PreparedAtStop`] if any command is still prepared, and
    /// says how many are.
    #[track_caller]
    pub fn check_stopped(&self) -> usize {
        let prepared = self.prepared_commands.load(Ordering::Relaxed);
        if prepared > 0 {
            self.report(MisuseReport {
                misuse: Misuse::PreparedAtStop,
                command: None,
                descriptor: None,
                location: Location::caller(),
            });
        }
        prepared
    }
}
