//! The DMA layer's statistics: bytes and copies each way, bounced and direct
//! transfers, commands prepared now, and what was leaked because a device could
//! still use it. They only count; nothing decides on them but `check_stopped`.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::IoDirection;

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

/// The live counters of one platform.
#[derive(Debug)]
pub struct Statistics {
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
}

impl Statistics {
    /// Every counter at zero.
    pub const fn new() -> Statistics {
        Statistics {
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
        }
    }

    /// A snapshot of the counters (the budget's two fields left at zero).
    pub fn snapshot(&self) -> BounceStats {
        BounceStats {
            pages_in_use: 0,
            page_limit: 0,
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

    /// Commands prepared now.
    pub fn prepared_commands(&self) -> usize {
        self.prepared_commands.load(Ordering::Relaxed)
    }

    /// Counts `pages` bounce pages of one transfer that stay allocated for
    /// ever (they stay in the budget's pages in use too: the budget really lost them).
    pub(crate) fn count_leak(&self, pages: usize) {
        self.leaked_pages.fetch_add(pages, Ordering::Relaxed);
        self.leaked_transfers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one copy of `bytes`: `Out` descriptor -> bounce, `In` back.
    pub(crate) fn count_copy(&self, way: IoDirection, bytes: u64) {
        if way == IoDirection::Out {
            self.copies_to_bounce.fetch_add(1, Ordering::Relaxed);
            self.bytes_to_bounce.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.copies_from_bounce.fetch_add(1, Ordering::Relaxed);
            self.bytes_from_bounce.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts one command prepared for a transfer, bounced (at least one
    /// byte) or direct: it is prepared now, until `command_released`.
    pub(crate) fn count_prepared(&self, kind: TransferKind) {
        let counter = match kind {
            TransferKind::Bounced => &self.bounced_transfers,
            TransferKind::Direct => &self.direct_transfers,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.prepared_commands.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one transfer moved into a fresh buffer by `synchronize(ForceDoubleBuffer)`.
    pub(crate) fn count_forced_double_buffer(&self) {
        self.forced_double_buffers.fetch_add(1, Ordering::Relaxed);
    }

    /// One prepared command fewer (completed, or abandoned).
    pub(crate) fn command_released(&self) {
        self.prepared_commands.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes back out what `counted` says one prepare added: a prepare undone
    /// before anybody saw it (`DmaTransfer::prepare` whose forced double
    /// buffering failed) reads afterwards as if it never happened. Its command
    /// must have been released already (`command_released`).
    pub(crate) fn withdraw(&self, counted: &Counted) {
        let counter = match counted.kind {
            TransferKind::Bounced => &self.bounced_transfers,
            TransferKind::Direct => &self.direct_transfers,
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        self.copies_to_bounce.fetch_sub(counted.copies_to_bounce, Ordering::Relaxed);
        self.bytes_to_bounce.fetch_sub(counted.bytes_to_bounce, Ordering::Relaxed);
        self.copies_from_bounce.fetch_sub(counted.copies_from_bounce, Ordering::Relaxed);
        self.bytes_from_bounce.fetch_sub(counted.bytes_from_bounce, Ordering::Relaxed);
        self.forced_double_buffers.fetch_sub(counted.forced_double_buffers, Ordering::Relaxed);
    }
}

/// What one prepared command added to the counters so far, kept with it so
/// that an undone prepare can be taken back out exactly: the counters are the
/// platform's, and other commands count in them meanwhile, so a snapshot taken
/// before and restored after would lose their counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counted {
    kind: TransferKind,
    copies_to_bounce: u64,
    bytes_to_bounce: u64,
    copies_from_bounce: u64,
    bytes_from_bounce: u64,
    forced_double_buffers: u64,
}

impl Counted {
    /// A prepare of `kind`, counted by `Statistics::count_prepared`, nothing else yet.
    pub(crate) fn prepared(kind: TransferKind) -> Counted {
        Counted {
            kind,
            copies_to_bounce: 0,
            bytes_to_bounce: 0,
            copies_from_bounce: 0,
            bytes_from_bounce: 0,
            forced_double_buffers: 0,
        }
    }

    /// One copy of `bytes` (`Statistics::count_copy`, which counts none of 0 bytes).
    pub(crate) fn copied(&mut self, way: IoDirection, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if way == IoDirection::Out {
            self.copies_to_bounce += 1;
            self.bytes_to_bounce += bytes;
        } else {
            self.copies_from_bounce += 1;
            self.bytes_from_bounce += bytes;
        }
    }

    /// One `Statistics::count_forced_double_buffer`.
    pub(crate) fn forced_double_buffer(&mut self) {
        self.forced_double_buffers += 1;
    }
}

/// How a prepared transfer reaches its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferKind {
    /// In place: the device reaches the memory as it is.
    Direct,
    /// Through bounce memory, at least one byte of it.
    Bounced,
}

impl TransferKind {
    /// The kind of a transfer with `buffers` bounce buffers.
    pub(crate) fn with_buffers(buffers: usize) -> TransferKind {
        if buffers == 0 { TransferKind::Direct } else { TransferKind::Bounced }
    }
}

impl Default for Statistics {
    fn default() -> Statistics {
        Statistics::new()
    }
}
