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
    /// Only the code is known ([`IoFailure::bare`]: a site with nothing to add).
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
    /// The device's engine would not stop for error recovery, not even after a
    /// reset: it may still use what it holds, which is abandoned, never reused.
    DeviceWouldNotStop,
    /// The device did not finish in time; it was stopped before memory was
    /// released. `last` is what its status registers said when it was given
    /// up, where the driver can read them.
    TimedOut {
        /// How long the driver waited.
        milliseconds: u64,
        /// The device's status registers at the timeout.
        last: Option<super::DeviceStatus>,
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
    /// Anything else, said in words: only what no caller could act on (a
    /// benchmark's setup, for a person to read); whatever a caller could retry,
    /// give up on, report or fix has a variant of its own.
    Other(&'static str),
    /// The IOMMU refused a DMA of this transfer: nothing was copied back.
    IommuFault(super::IommuFault),
    /// The IOMMU may have lost faults while the transfer was in flight (see
    /// [`super::FaultLoss`]): its DMA may have been refused without a word, so
    /// what it moved is not trusted and nothing was copied back.
    IommuFaultsLost(super::FaultLoss),
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
    /// Claiming a PCI function's registers failed.
    Pci(super::PciCause),
    /// A virtio device did something the driver cannot work with.
    Virtio(super::VirtioCause),
    /// An AHCI port or its drive did something the driver cannot work with.
    Ahci(super::AhciCause),
    /// A network interface could not take or deliver a frame.
    Net(super::NetCause),
    /// An NVMe controller did something the driver cannot work with, or a
    /// command ended with an error status.
    Nvme(super::NvmeCause),
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
    // The DMA contract's states: a command, a descriptor, a buffer, a pool.
    /// The command has no memory descriptor bound.
    NoMemoryBound,
    /// The command is not prepared.
    NotPrepared,
    /// The command stayed prepared where it had to be unbound.
    StayedPrepared,
    /// A nested prepare named another range than the one prepared.
    NestedPrepareMismatch {
        /// First byte of the range prepared.
        offset: u64,
        /// Bytes of the range prepared.
        length: u64,
    },
    /// Coherent memory is shared in place: it is never bounced.
    CoherentNeverBounced,
    /// `synchronize(In)` on an `In` transfer whose bounce memory was never
    /// filled: only the device's byte count, at `complete`, says what is real.
    InTransferNotFilled,
    /// `ForceDoubleBuffer` given to a ranged synchronize: it moves the whole range.
    RangedForceDoubleBuffer,
    /// The device was handed the segments: moving to a new bounce buffer would
    /// free memory it may use.
    DeviceHasSegments,
    /// The command is prepared or bound for another transfer.
    CommandInUse,
    /// `synchronize` options with no direction, an unknown bit, or both In and Out.
    InvalidSyncOptions,
    /// A page of the memory descriptor does not resolve to a frame.
    PageNotMapped {
        /// The byte of the descriptor whose page does not resolve.
        offset: u64,
    },
    /// The frame allocator refused a bounce buffer request for a reason other
    /// than memory running short (what it said).
    BounceRequestRefused(crate::memory::MemoryError),
    /// Even the whole transfer in one bounce buffer breaks the specification
    /// (a rule no contiguous buffer can meet).
    BounceBreaksSpecification,
    /// A buffer of zero bytes was asked for.
    EmptyBuffer,
    /// No run of free frames meets the buffer's placement.
    NoFramesForPlacement {
        /// Pages asked for.
        pages: usize,
    },
    /// The descriptor has other handles: a `DmaBuffer` must be its only owner.
    DescriptorShared,
    /// The descriptor is prepared.
    DescriptorPrepared,
    /// A command pool of no commands was asked for.
    EmptyCommandPool,
    /// The command pool has no slot of that number.
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// Slots in the pool.
        depth: usize,
    },
    /// The slot's command is serving another transfer.
    SlotTaken {
        /// The slot.
        slot: usize,
    },
    /// A played device needs physical segments; behind an IOMMU they are IOVAs.
    SegmentsAreIovas,
    /// The output given to `write_segments` holds not even one record.
    OutputTooSmall {
        /// Bytes of output.
        bytes: usize,
        /// Bytes per record in the specification's output format.
        record: usize,
    },
    /// The IOMMU layer (a unit, a domain, the mapper) refused.
    Iommu(super::IommuCause),
    /// A device's registers could not be mapped (`BadArgument`: the range;
    /// `NoResources`: the MMIO window is full; `NoMemory`: no page-table frame).
    RegistersNotMapped {
        /// First physical byte.
        physical: u64,
        /// Bytes.
        size: u64,
    },
    // The block layer's states.
    /// A block request of zero blocks.
    ZeroBlocks,
    /// The request's byte count (blocks times block size) overflows.
    ByteCountOverflows {
        /// Blocks asked for.
        count: u64,
        /// Bytes per block.
        block_size: u32,
    },
    /// `wait_any` was given no request.
    NothingToWaitFor,
    /// A request's result never came (its ticket was dropped unfulfilled).
    RequestLost,
    /// `stop` on a driver that is stopped already.
    DriverStoppedAlready,
    /// `start` on a driver that is running already.
    DriverRunningAlready,
    /// A driver was handed a slot past its depth, or one with a command in
    /// flight: the block layer's bookkeeping and the driver's disagree.
    SlotNotFree {
        /// The slot.
        slot: usize,
    },
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
            Cause::DeviceOwnsMemory => f.write_str("the device owns this memory until the transfer completes"),
            Cause::MemoryAbandoned => {
                f.write_str("a device was abandoned while it could write this memory: it is leaked, not reused")
            }
            Cause::ShortTransfer { moved, prepared } => {
                write!(f, "the device moved {moved} of {prepared} bytes")
            }
            Cause::DeviceWouldNotStop => {
                f.write_str("the device would not stop for error recovery: what it held is abandoned to it")
            }
            Cause::TimedOut { milliseconds, last: None } => {
                write!(f, "no answer within {milliseconds} ms; the device was stopped before memory was released")
            }
            Cause::TimedOut { milliseconds, last: Some(last) } => write!(
                f,
                "no answer within {milliseconds} ms (the device last said: {last}); it was stopped before memory \
                 was released"
            ),
            Cause::BlocksPastEnd { lba, count, blocks } => match lba.checked_add(count) {
                Some(end) => write!(f, "blocks {lba}..{end} are past the end of the disk ({blocks} blocks)"),
                // The end is past 2^64: a range `lba..end` cannot be written.
                None => write!(f, "{count} block(s) from block {lba} are past the end of the disk ({blocks} blocks)"),
            },
            Cause::WrongDirection { needed, memory } => {
                write!(f, "the transfer needs {needed:?} memory, this memory is {memory:?}")
            }
            Cause::Other(text) => f.write_str(text),
            Cause::IommuFault(fault) => write!(f, "{fault}; the transfer's data was not copied back"),
            Cause::IommuFaultsLost(loss) => {
                write!(f, "{loss} while the transfer was in flight; its data was not copied back")
            }
            Cause::InvalidationFailed { iova, pages } => write!(
                f,
                "the IOMMU did not confirm it forgot IOVA {iova:#x} + {pages} page(s): the IOVAs are quarantined and \
                 the transfer's memory is leaked, never reused"
            ),
            Cause::IovaSpaceExhausted { pages, highest_address } => write!(
                f,
                "no run of {pages} free I/O virtual page(s) below {}, the device's address limit, in its IOMMU domain",
                Limit(highest_address)
            ),
            Cause::RequestTooLarge { count, max } => write!(
                f,
                "{count} blocks asked for, the device takes at most {max} per request (read and write split larger transfers)"
            ),
            Cause::DriverStopped => f.write_str("the driver is stopped; `start` starts it again"),
            Cause::Pci(cause) => write!(f, "PCI: {cause}"),
            Cause::Virtio(cause) => cause.fmt(f),
            Cause::Ahci(cause) => cause.fmt(f),
            Cause::Net(cause) => cause.fmt(f),
            Cause::Nvme(cause) => cause.fmt(f),
            Cause::Ata(cause) => cause.fmt(f),
            Cause::EntryFormat { format, rule } => write!(f, "{format} entry: {rule}"),
            Cause::DeviceClaimedTooMuch { claimed, prepared } => {
                write!(f, "the device claimed {claimed} bytes moved, only {prepared} were prepared")
            }
            Cause::BounceMemoryStayedShort { milliseconds } => write!(
                f,
                "the request waited {milliseconds} ms for bounce memory that did not come back; it never started"
            ),
            Cause::NoMemoryBound => f.write_str("no memory descriptor is bound"),
            Cause::NotPrepared => f.write_str("the command is not prepared"),
            Cause::StayedPrepared => f.write_str("the command stayed prepared"),
            Cause::NestedPrepareMismatch { offset, length } => write!(
                f,
                "a nested prepare must name the range already prepared (bytes {offset}..{})",
                offset.saturating_add(length)
            ),
            Cause::CoherentNeverBounced => {
                f.write_str("coherent memory is shared with the device in place and is never bounced")
            }
            Cause::InTransferNotFilled => f.write_str(
                "this In transfer was not filled at prepare; only the bytes the device reports come back, at complete \
                 or with synchronize_range(In)",
            ),
            Cause::RangedForceDoubleBuffer => {
                f.write_str("ForceDoubleBuffer moves the whole prepared range; a ranged synchronize cannot")
            }
            Cause::DeviceHasSegments => {
                f.write_str("the device has the segments: moving to a new buffer would free memory it uses")
            }
            Cause::CommandInUse => f.write_str("the command is serving another transfer"),
            Cause::InvalidSyncOptions => {
                f.write_str("synchronize takes In or Out (not both) or ForceDoubleBuffer, and no other bit")
            }
            Cause::PageNotMapped { offset } => {
                write!(f, "a page of the memory descriptor is not mapped (byte {offset})")
            }
            Cause::BounceRequestRefused(error) => {
                write!(f, "the frame allocator refused the bounce buffer request: {error}")
            }
            Cause::BounceBreaksSpecification => {
                f.write_str("even one contiguous bounce buffer gives segments that break the specification")
            }
            Cause::EmptyBuffer => f.write_str("a buffer must be at least one byte long"),
            Cause::NoFramesForPlacement { pages } => {
                write!(f, "no run of {pages} free frame(s) meets the buffer's placement")
            }
            Cause::DescriptorShared => {
                f.write_str("the descriptor has other handles; a DmaBuffer must be its only owner")
            }
            Cause::DescriptorPrepared => f.write_str("the descriptor is prepared"),
            Cause::EmptyCommandPool => f.write_str("a command pool holds at least one command"),
            Cause::NoSuchSlot { slot, depth } => {
                write!(f, "no such slot in the command pool (slot {slot}, {depth} slots)")
            }
            Cause::SlotTaken { slot } => write!(f, "the slot's command is serving another request (slot {slot})"),
            Cause::SegmentsAreIovas => {
                f.write_str("behind an IOMMU the segments are IOVAs; a played device needs physical ones")
            }
            Cause::OutputTooSmall { bytes, record } => {
                write!(f, "{bytes} bytes of output hold no {record}-byte segment record")
            }
            Cause::Iommu(cause) => cause.fmt(f),
            Cause::RegistersNotMapped { physical, size } => {
                write!(f, "registers at {physical:#x}+{size:#x} could not be mapped")
            }
            Cause::ZeroBlocks => f.write_str("a request moves at least one block"),
            Cause::ByteCountOverflows { count, block_size } => {
                write!(f, "the request's byte count overflows ({count} blocks of {block_size} bytes)")
            }
            Cause::NothingToWaitFor => f.write_str("no request to wait for"),
            Cause::RequestLost => f.write_str("the request was lost: its ticket was never fulfilled"),
            Cause::DriverStoppedAlready => f.write_str("the driver is stopped already"),
            Cause::DriverRunningAlready => f.write_str("the driver is running already"),
            Cause::SlotNotFree { slot } => write!(f, "no such free slot (slot {slot}): past the depth or in use"),
        }
    }
}

/// The end of what a device reaches, from its highest address: `2^N` for
/// an `N`-bit limit (the wording [`Cause::NoReachableMemory`] uses), the
/// address just past it otherwise.
struct Limit(u64);

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_add(1) {
            None => f.write_str("2^64"),
            Some(end) if end.is_power_of_two() => write!(f, "2^{}", end.trailing_zeros()),
            Some(end) => write!(f, "{end:#x}"),
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

    /// A failure that knows only its code ([`Cause::Unspecified`]). There is
    /// deliberately no `From<IoReturn>`: a `?` on a contract call's bare code
    /// does not compile in a function that returns an `IoFailure`, so each
    /// layer says what it knows (`.map_err(|code| IoFailure::new(code, ..))`),
    /// and a site with nothing to add says so by calling this.
    pub const fn bare(code: IoReturn) -> IoFailure {
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
        assert_eq!(IoFailure::bare(IoReturn::Busy).to_string(), "kIOReturnBusy (0xe00002d5)");
        assert_eq!(IoReturn::from(failure), IoReturn::NoResources);
    }

    #[test]
    fn an_address_limit_reads_the_same_for_memory_and_for_iovas() {
        let memory = Cause::NoReachableMemory { pages: 1, address_bits: 12 }.to_string();
        let iovas = Cause::IovaSpaceExhausted { pages: 1, highest_address: 0xfff }.to_string();
        for text in [&memory, &iovas] {
            assert!(text.contains("below 2^12, the device's address limit"), "{text}");
        }
        assert_eq!(
            iovas,
            "no run of 1 free I/O virtual page(s) below 2^12, the device's address limit, in its IOMMU domain"
        );
        let whole = Cause::IovaSpaceExhausted { pages: 2, highest_address: u64::MAX }.to_string();
        assert!(whole.contains("below 2^64"), "{whole}");
        let odd = Cause::IovaSpaceExhausted { pages: 2, highest_address: 0x1_2344 }.to_string();
        assert!(odd.contains("below 0x12345,"), "a limit that is no power of two is shown as it is: {odd}");
    }

    #[test]
    fn blocks_past_the_end_never_print_a_range_that_wrapped() {
        let past = Cause::BlocksPastEnd { lba: 32760, count: 8, blocks: 32764 }.to_string();
        assert_eq!(past, "blocks 32760..32768 are past the end of the disk (32764 blocks)");
        let wrapped = Cause::BlocksPastEnd { lba: u64::MAX, count: 1, blocks: 32768 }.to_string();
        assert_eq!(wrapped, "1 block(s) from block 18446744073709551615 are past the end of the disk (32768 blocks)");
    }
}
