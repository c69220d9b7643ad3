//! What an IOMMU reports when it refuses a DMA: the requester, the address,
//! read or write, and VT-d's reason code with its meaning in words.

use core::fmt;

/// Whether a blocked DMA tried to read memory or to write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAccess {
    /// The device read memory (a disk write, an `Out` transfer).
    Read,
    /// The device wrote memory (a disk read, an `In` transfer).
    Write,
}

/// One DMA the IOMMU refused, decoded from its fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuFault {
    /// The requester: PCI `bus << 8 | device << 3 | function`.
    pub source: u16,
    /// The I/O virtual address the device used (page-granular on VT-d).
    pub address: u64,
    /// Read or write.
    pub access: FaultAccess,
    /// The hardware's fault reason code (VT-d's non-recoverable fault reasons;
    /// [`fault_meaning`] says what each means).
    pub reason: u8,
    /// What the reason code means, in words.
    pub meaning: &'static str,
}

/// How an IOMMU may have lost a device's faults: the transfers in flight then
/// cannot know whether their DMA was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultLoss {
    /// The unit had no free fault record and recorded none of the faults
    /// that came meanwhile (VT-d's primary fault overflow, FSTS.PFO): any
    /// device on the unit may have faulted.
    UnitOverflow,
    /// The kernel's queue of faults not yet taken was full and dropped one of
    /// this device's, unread.
    PendingQueueFull,
}

impl fmt::Display for FaultLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultLoss::UnitOverflow => "the IOMMU's fault records overflowed (VT-d FSTS.PFO)",
            FaultLoss::PendingQueueFull => "a fault of this device was dropped unread (the pending queue was full)",
        })
    }
}

impl fmt::Display for IommuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IOMMU fault {:#04x} ({}): device {:02x}:{:02x}.{} {} IOVA {:#x}",
            self.reason,
            self.meaning,
            self.source >> 8,
            (self.source >> 3) & 0x1f,
            self.source & 7,
            match self.access {
                FaultAccess::Read => "read from",
                FaultAccess::Write => "wrote to",
            },
            self.address
        )
    }
}

/// What a VT-d fault reason code means (Intel VT-d specification, appendix
/// "Non-Recoverable Fault Reason Encodings"), for the codes a learner meets.
///
/// VT-d has no separate present bit in its page tables: an entry with R and W
/// both clear is not present, so a DMA through a missing mapping is reported as
/// 0x05 (a write) or 0x06 (a read), not as a fault of its own. 0x07 means the
/// unit could not read a page-table entry at all.
pub fn fault_meaning(reason: u8) -> &'static str {
    match reason {
        0x01 => "the bus's root entry is not present",
        0x02 => "the device's context entry is not present",
        0x03 => "the context entry is invalid (an address width or translation type the unit does not support)",
        0x04 => "the address is beyond the domain's address width",
        0x05 => "a write through a page-table entry without write permission (or not present)",
        0x06 => "a read through a page-table entry without read permission (or not present)",
        0x07 => "a page-table entry could not be read (its table pointer is invalid)",
        0x08 => "the root table could not be read (its address is invalid)",
        0x09 => "the context table could not be read (its pointer is invalid)",
        0x0a => "a reserved bit is set in a present root entry",
        0x0b => "a reserved bit is set in a present context entry",
        0x0c => "a reserved bit is set in a present page-table entry",
        0x0d => "the context entry's translation type blocks this kind of request",
        _ => "a fault reason this kernel does not decode",
    }
}
