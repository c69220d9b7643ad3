//! A block request as a value: what to move, where, and the buffer, which the
//! request owns from submission until the device is done with it.
//!
//! Directions: the block layer says `Read` (disk -> memory) and `Write`
//! (memory -> disk); the DMA layer underneath says, from memory's side, `In`
//! (the device writes memory) and `Out` (the device reads it).

use crate::dma::{Cause, DmaBuffer, IoDirection, IoFailure, IoReturn, TransferOptions};

/// Which way a block request moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOperation {
    /// Disk -> memory: the device writes the buffer (`IoDirection::In`).
    Read,
    /// Memory -> disk: the device reads the buffer (`IoDirection::Out`).
    Write,
}

impl BlockOperation {
    /// The DMA direction of the buffer, seen from memory.
    pub const fn memory_direction(self) -> IoDirection {
        match self {
            BlockOperation::Read => IoDirection::In,
            BlockOperation::Write => IoDirection::Out,
        }
    }
}

/// When a disk's transfers go through a bounce buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoubleBuffering {
    /// Only what the device cannot reach in place (the default).
    AsNeeded,
    /// Every transfer, whole (`synchronize(ForceDoubleBuffer)`).
    Forced,
}

/// What a request does when the bounce budget is spent (FreeBSD busdma's
/// deferred loads: `BUS_DMA_NOWAIT` or not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deferral {
    /// Wait in line, first come first served, until bounce pages come back.
    #[default]
    WaitForBounceMemory,
    /// Fail at once with the budget's error.
    FailAtOnce,
}

/// One block request: the caller hands the buffer over with it.
#[derive(Debug)]
pub struct BlockRequest {
    /// Read or write.
    pub operation: BlockOperation,
    /// The first block.
    pub lba: u64,
    /// Blocks (at least one, all on the disk).
    pub count: u64,
    /// The memory: the request's, then the device's, then the caller's again.
    pub buffer: DmaBuffer,
    /// Byte offset in `buffer` (even; the blocks fit after it).
    pub offset: u64,
    /// Extra limits for this transfer.
    pub options: TransferOptions,
    /// What to do when bounce memory runs short.
    pub deferral: Deferral,
}

impl BlockRequest {
    /// A request with the default options: wait for bounce memory if short.
    pub fn new(operation: BlockOperation, lba: u64, count: u64, buffer: DmaBuffer, offset: u64) -> BlockRequest {
        BlockRequest {
            operation,
            lba,
            count,
            buffer,
            offset,
            options: TransferOptions::default(),
            deferral: Deferral::default(),
        }
    }

    /// Bytes the request moves (the checks made sure this does not overflow).
    pub fn length(&self, block_size: u32) -> u64 {
        self.count * u64::from(block_size)
    }
}

/// A request that was not taken: the buffer comes back with the reason.
#[derive(Debug)]
pub struct Rejected {
    /// The request, buffer and all, as it was given.
    pub request: BlockRequest,
    /// Why it was not taken.
    pub failure: IoFailure,
}

/// How a request ended: the buffer, the CPU's again, and the result.
#[derive(Debug)]
pub struct Finished {
    /// The buffer; `None` for a flush (it has none), or if its memory was
    /// abandoned (leaked, never reused) because the device may still reach it:
    /// it could not be stopped, or the IOMMU did not confirm it forgot the
    /// buffer's pages. No CPU may touch it.
    pub buffer: Option<DmaBuffer>,
    /// `Ok`, or what went wrong (the device's error, a timeout, a stop).
    pub result: Result<(), IoFailure>,
}

/// The checks every block request must pass before it reaches a device with
/// `(block_size, block_count)`: `BadArgument` for zero blocks, blocks past the
/// end, or a buffer whose direction does not allow the operation; `Overrun` for a
/// buffer too small; `NotAligned` for an odd offset.
pub fn check_request((block_size, block_count): (u32, u64), request: BlockRequest) -> Result<BlockRequest, Rejected> {
    let BlockRequest { operation, lba, count, ref buffer, offset, .. } = request;
    match check((block_size, block_count), operation, (lba, count), buffer, offset) {
        Ok(()) => Ok(request),
        Err(failure) => Err(Rejected { request, failure }),
    }
}

/// [`check_request`]'s checks on the parts of a request, the buffer borrowed:
/// a transfer checks its whole range once before cutting it into requests.
pub(super) fn check(
    (block_size, block_count): (u32, u64),
    operation: BlockOperation,
    (lba, count): (u64, u64),
    buffer: &DmaBuffer,
    offset: u64,
) -> Result<(), IoFailure> {
    let needed = operation.memory_direction();
    let memory = buffer.direction();
    let allowed = match operation {
        BlockOperation::Read => memory.includes_in(),
        BlockOperation::Write => memory.includes_out(),
    };
    if !allowed {
        return Err(IoFailure::new(IoReturn::BadArgument, Cause::WrongDirection { needed, memory }));
    }
    if count == 0 {
        return Err(IoFailure::new(IoReturn::BadArgument, Cause::ZeroBlocks));
    }
    if lba.checked_add(count).is_none_or(|end| end > block_count) {
        return Err(IoFailure::new(IoReturn::BadArgument, Cause::BlocksPastEnd { lba, count, blocks: block_count }));
    }
    let bytes = count
        .checked_mul(u64::from(block_size))
        .ok_or(IoFailure::new(IoReturn::BadArgument, Cause::ByteCountOverflows { count, block_size }))?;
    if offset.checked_add(bytes).is_none_or(|end| end > buffer.length()) {
        let cause = Cause::OutOfRange { offset, length: bytes, size: buffer.length() };
        return Err(IoFailure::new(IoReturn::Overrun, cause));
    }
    if !offset.is_multiple_of(2) {
        let cause = Cause::OffsetNotAligned { offset, alignment: 2 };
        return Err(IoFailure::new(IoReturn::NotAligned, cause));
    }
    Ok(())
}
