//! The debugging mode's misuse log, after Linux's `CONFIG_DMA_API_DEBUG`: each
//! mistake the DMA layer catches (and each memory leak it chooses over freeing
//! memory a device may still use) with the command, the descriptor and the
//! caller's source location.

use alloc::vec::Vec;
use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

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

/// The misuse reports of one platform, and whether the debugging mode is on.
#[derive(Debug)]
pub struct MisuseLog {
    debug: AtomicBool,
    log: Mutex<Vec<MisuseReport>>,
}

impl MisuseLog {
    /// An empty log, debugging on.
    pub const fn new() -> MisuseLog {
        MisuseLog { debug: AtomicBool::new(true), log: Mutex::new(Vec::new()) }
    }

    /// Turns the debugging mode on or off.
    pub fn set_debug(&self, enabled: bool) {
        self.debug.store(enabled, Ordering::Relaxed);
    }

    /// Whether the debugging mode is on.
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Records and logs a misuse (in debugging mode; otherwise ignores it).
    pub fn report(&self, report: MisuseReport) {
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

    /// The reports so far, oldest first.
    pub fn reports(&self) -> Vec<MisuseReport> {
        self.log.lock().clone()
    }
}

impl Default for MisuseLog {
    fn default() -> MisuseLog {
        MisuseLog::new()
    }
}
