//! `IoFailure`: an IOKit code together with the reason a person can read.
//!
//! `kIOReturnNoResources` alone does not tell a learner whether 256 segments met
//! a device that takes 254, or whether no memory lies below the device's address
//! limit. The contract calls keep returning the bare [`IoReturn`] (code written
//! against IOKit expects exactly that); the layers built on them (transfers,
//! block devices, the shell) return an `IoFailure`, whose `code()` is the same
//! IOKit value and whose `cause()` says which rule and which numbers.

use core::fmt;

use super::IoReturn;

/// Why a DMA or block operation failed, beyond its IOKit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Only the code is known (a contract call that says no more).
    Unspecified,
    /// The transfer needs more segments than the device takes, even in one buffer.
    TooManySegments {
        /// Segments the transfer would need.
        needed: usize,
        /// Segments the device's specification allows.
        allowed: usize,
    },
    /// No run of free frames below the device's address limit meets the request.
    NoReachableMemory {
        /// Pages asked for.
        pages: usize,
        /// Address bits the device drives.
        address_bits: u8,
    },
    /// The bounce budget is spent.
    BounceBudgetSpent {
        /// Pages asked for.
        pages: usize,
        /// Pages in use already.
        in_use: usize,
        /// The budget.
        limit: usize,
    },
    /// The transfer is longer than the device takes in one prepare.
    TransferTooLong {
        /// Bytes asked for.
        length: u64,
        /// The specification's `max_transfer_size`.
        limit: u64,
    },
    /// A length breaks the device's length alignment.
    LengthNotAligned {
        /// The length.
        length: u64,
        /// The alignment it must be a multiple of.
        alignment: u64,
    },
    /// An offset breaks an alignment the transfer needs.
    OffsetNotAligned {
        /// The offset.
        offset: u64,
        /// The alignment it must be a multiple of.
        alignment: u64,
    },
    /// A byte range does not lie inside the memory it names.
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
        /// Bytes the memory holds.
        size: u64,
    },
    /// A specification breaks one of its own rules (which one is named).
    BadSpecification(&'static str),
    /// The call came in the wrong state (which state is named).
    WrongState(&'static str),
    /// The memory is lent to a device, so the CPU may not touch it now.
    DeviceOwnsMemory,
    /// A device was abandoned while it could still write this memory: it is
    /// leaked, and the CPU may not read what the device may still change.
    MemoryAbandoned,
    /// The device moved fewer bytes than the transfer prepared.
    ShortTransfer {
        /// Bytes the device moved.
        moved: u64,
        /// Bytes prepared.
        prepared: u64,
    },
    /// The device reported an error (its name for it).
    DeviceError(&'static str),
    /// The device's engine would not stop for error recovery, not even after a
    /// reset: it may still use what it holds, which is abandoned, never reused.
    DeviceWouldNotStop,
    /// The device did not finish in time; it was stopped before memory was released.
    TimedOut {
        /// How long the driver waited.
        milliseconds: u64,
    },
    /// A block request names blocks past the end of the disk.
    BlocksPastEnd {
        /// First block asked for.
        lba: u64,
        /// Blocks asked for.
        count: u64,
        /// Blocks on the disk.
        blocks: u64,
    },
    /// The memory's direction does not allow this transfer (a disk read needs
    /// memory the device may write, `In`; a disk write memory it may read, `Out`).
    WrongDirection {
        /// What the transfer needs.
        needed: super::IoDirection,
        /// What the memory was made for.
        memory: super::IoDirection,
    },
    /// Anything else, said in words.
    Other(&'static str),
    /// The IOMMU refused a DMA of this transfer: nothing was copied back.
    IommuFault(super::IommuFault),
    /// The IOMMU did not confirm that it forgot a transfer's pages: its IOTLB
    /// invalidation (or write-buffer flush) timed out or was refused, so the
    /// device may still reach them through a stale IOTLB entry. Their IOVAs are
    /// quarantined (never handed out again) and the transfer's memory (bounce
    /// pages, and the buffer's own pages if they were mapped) is leaked, never
    /// reused; nothing was copied back.
    InvalidationFailed {
        /// The first IOVA of the range.
        iova: u64,
        /// Pages in the range.
        pages: usize,
    },
    /// No free run of IOVA pages below the device's address limit is long enough.
    IovaSpaceExhausted {
        /// Pages asked for.
        pages: usize,
        /// The highest IOVA the device can use.
        highest_address: u64,
    },
    /// A block request is larger than the device takes at once.
    RequestTooLarge {
        /// Blocks asked for.
        count: u64,
        /// The most blocks one request may carry.
        max: u64,
    },
    /// The driver is stopped (by `stop`, or after a timeout or a device that
    /// had to be stopped): the one name for that state, whichever layer sees it
    /// first; `start` starts it again.
    DriverStopped,
    /// The request waited for bounce memory that never came back in time: it never started.
    BounceMemoryStayedShort {
        /// How long it waited.
        milliseconds: u64,
    },
    /// A segment breaks a rule of the device's descriptor format (the
    /// specification should have kept it within: a driver bug, caught before
    /// the device saw the entry).
    EntryFormat {
        /// The format, e.g. "PRD".
        format: &'static str,
        /// The rule broken.
        rule: &'static str,
    },
    /// The device did not finish in time; it was stopped before memory was
    /// released. `last` is what its status registers said when it was given up.
    DeviceTimedOut {
        /// How long the driver waited.
        milliseconds: u64,
        /// The device's status registers at the timeout.
        last: super::DeviceStatus,
    },
    /// Claiming a PCI function's registers failed.
    Pci(super::PciCause),
    /// A virtio device did something the driver cannot work with.
    Virtio(super::VirtioCause),
    /// An AHCI port or its drive did something the driver cannot work with.
    Ahci(super::AhciCause),
    /// A drive on a PIIX IDE channel did something the driver cannot work with.
    Ata(super::AtaCause),
    /// The device said it moved more bytes than the transfer prepared: a device
    /// is not trusted, so nothing past the prepared range came back.
    DeviceClaimedTooMuch {
        /// Bytes the device claimed.
        claimed: u64,
        /// Bytes prepared.
        prepared: u64,
    },
    /// The IOMMU layer (a unit, a domain, the mapper) refused.
    Iommu(super::IommuCause),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::Unspecified => f.write_str("no further detail"),
            Cause::TooManySegments { needed, allowed } => {
                write!(f, "{needed} segments needed, the device takes at most {allowed}")
            }
            Cause::NoReachableMemory { pages, address_bits } => {
                write!(f, "no run of {pages} free page(s) below 2^{address_bits}, the device's address limit")
            }
            Cause::BounceBudgetSpent { pages, in_use, limit } => {
                write!(f, "{pages} bounce page(s) wanted, {in_use} of the budget's {limit} in use")
            }
            Cause::TransferTooLong { length, limit } => {
                write!(f, "{length} bytes asked for, the device takes at most {limit} per transfer")
            }
            Cause::LengthNotAligned { length, alignment } => {
                write!(f, "length {length} is not a multiple of {alignment}")
            }
            Cause::OffsetNotAligned { offset, alignment } => {
                write!(f, "offset {offset} is not a multiple of {alignment}")
            }
            Cause::OutOfRange { offset, length, size } => {
                write!(f, "bytes {offset}..{} lie outside the {size} bytes of memory", offset.saturating_add(length))
            }
            Cause::BadSpecification(rule) => write!(f, "invalid specification: {rule}"),
            Cause::WrongState(state) => f.write_str(state),
            Cause::DeviceOwnsMemory => f.write_str("the device owns this memory until the transfer completes"),
            Cause::MemoryAbandoned => {
                f.write_str("a device was abandoned while it could write this memory: it is leaked, not reused")
            }
            Cause::ShortTransfer { moved, prepared } => {
                write!(f, "the device moved {moved} of {prepared} bytes")
            }
            Cause::DeviceError(what) => write!(f, "device error: {what}"),
            Cause::DeviceWouldNotStop => {
                f.write_str("the device would not stop for error recovery: what it held is abandoned to it")
            }
            Cause::TimedOut { milliseconds } => {
                write!(f, "no answer within {milliseconds} ms; the device was stopped before memory was released")
            }
            Cause::BlocksPastEnd { lba, count, blocks } => {
                write!(f, "blocks {lba}..{} are past the end of the disk ({blocks} blocks)", lba.saturating_add(count))
            }
            Cause::WrongDirection { needed, memory } => {
                write!(f, "the transfer needs {needed:?} memory, this memory is {memory:?}")
            }
            Cause::Other(text) => f.write_str(text),
            Cause::IommuFault(fault) => write!(f, "{fault}; the transfer's data was not copied back"),
            Cause::InvalidationFailed { iova, pages } => write!(
                f,
                "the IOMMU did not confirm it forgot IOVA {iova:#x} + {pages} page(s): the IOVAs are quarantined and \
                 the transfer's memory is leaked, never reused"
            ),
            Cause::IovaSpaceExhausted { pages, highest_address } => {
                write!(f, "no {pages} free I/O virtual pages below {highest_address:#x} in the device's IOMMU domain")
            }
            Cause::RequestTooLarge { count, max } => write!(
                f,
                "{count} blocks asked for, the device takes at most {max} per request (read and write split larger transfers)"
            ),
            Cause::DriverStopped => f.write_str("the driver is stopped; `start` starts it again"),
            Cause::DeviceTimedOut { milliseconds, last } => write!(
                f,
                "no answer within {milliseconds} ms (the device last said: {last}); it was stopped before memory \
                 was released"
            ),
            Cause::Pci(cause) => write!(f, "PCI: {cause}"),
            Cause::Virtio(cause) => cause.fmt(f),
            Cause::Ahci(cause) => cause.fmt(f),
            Cause::Ata(cause) => cause.fmt(f),
            Cause::EntryFormat { format, rule } => write!(f, "{format} entry: {rule}"),
            Cause::DeviceClaimedTooMuch { claimed, prepared } => {
                write!(f, "the device claimed {claimed} bytes moved, only {prepared} were prepared")
            }
            Cause::BounceMemoryStayedShort { milliseconds } => write!(
                f,
                "the request waited {milliseconds} ms for bounce memory that did not come back; it never started"
            ),
            Cause::Iommu(cause) => cause.fmt(f),
        }
    }
}

/// An IOKit code and its cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoFailure {
    code: IoReturn,
    cause: Cause,
}

impl IoFailure {
    /// A failure with `code` because of `cause`.
    pub const fn new(code: IoReturn, cause: Cause) -> IoFailure {
        IoFailure { code, cause }
    }

    /// The IOKit code (what the contract calls return).
    pub const fn code(&self) -> IoReturn {
        self.code
    }

    /// Why.
    pub const fn cause(&self) -> Cause {
        self.cause
    }
}

impl From<IoReturn> for IoFailure {
    fn from(code: IoReturn) -> IoFailure {
        IoFailure { code, cause: Cause::Unspecified }
    }
}

impl From<IoFailure> for IoReturn {
    fn from(failure: IoFailure) -> IoReturn {
        failure.code
    }
}

impl PartialEq<IoReturn> for IoFailure {
    fn eq(&self, code: &IoReturn) -> bool {
        self.code == *code
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            Cause::Unspecified => write!(f, "{}", self.code),
            cause => write!(f, "{}: {cause}", self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_stays_iokits_and_the_cause_is_said() {
        let failure = IoFailure::new(IoReturn::NoResources, Cause::TooManySegments { needed: 256, allowed: 254 });
        assert_eq!(failure.code(), IoReturn::NoResources);
        assert_eq!(
            failure.to_string(),
            "kIOReturnNoResources (0xe00002be): 256 segments needed, the device takes at most 254"
        );
        let bare: IoFailure = IoReturn::Busy.into();
        assert_eq!(bare.to_string(), "kIOReturnBusy (0xe00002d5)");
        assert_eq!(IoReturn::from(failure), IoReturn::NoResources);
    }
}
