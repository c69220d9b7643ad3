//! The block-storage interface both disk drivers publish (IOKit's
//! `IOBlockStorageDevice`): a size, and reads and writes of whole blocks into or
//! out of a [`DmaBuffer`] the caller lends for the length of the call.
//!
//! Directions: the block layer says `Read` (disk -> memory) and `Write`
//! (memory -> disk); the DMA layer underneath says, from memory's side, `In`
//! (the device writes memory) and `Out` (the device reads it).

use alloc::string::String;
use alloc::vec::Vec;

pub use crate::dma::TransferOptions;
use crate::dma::{Cause, DmaBuffer, IoDirection, IoFailure, IoReturn, Segment};

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

/// A disk.
pub trait BlockDevice: Send + Sync {
    /// The driver's name, e.g. "VirtioBlock".
    fn driver_name(&self) -> &'static str;
    /// Bytes per block.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// Runs a request that passed [`check_request`]: what each driver implements.
    fn submit(&self, request: BlockRequest<'_>) -> Result<(), IoFailure>;
    /// Moves `count` blocks at `lba` between the disk and `buffer` at byte
    /// `offset`. The buffer is lent to the device for the call and is the
    /// caller's again when it returns, whatever the result. Bad requests never
    /// reach the driver.
    fn transfer(
        &self,
        operation: BlockOperation,
        lba: u64,
        count: u64,
        buffer: &mut DmaBuffer,
        offset: u64,
        options: &TransferOptions,
    ) -> Result<(), IoFailure> {
        let geometry = (self.block_size(), self.block_count());
        self.submit(check_request(geometry, operation, lba, count, buffer, offset, *options)?)
    }
    /// Reads `count` blocks from `lba` into `buffer` at byte `offset`.
    fn read(&self, lba: u64, count: u64, buffer: &mut DmaBuffer, offset: u64) -> Result<(), IoFailure> {
        self.transfer(BlockOperation::Read, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// Writes `count` blocks at `lba` from `buffer` at byte `offset`.
    fn write(&self, lba: u64, count: u64, buffer: &mut DmaBuffer, offset: u64) -> Result<(), IoFailure> {
        self.transfer(BlockOperation::Write, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// A line about the device for listings (model, transport).
    fn description(&self) -> String;
    /// From now on, double-buffers every transfer (`Forced`:
    /// `synchronize(ForceDoubleBuffer)` after each prepare, to compare with direct
    /// transfers) or only what the device cannot reach (`AsNeeded`).
    fn set_double_buffering(&self, policy: DoubleBuffering);
    /// The data segments the device was given for the last command (for traces
    /// and tests): what the device actually read or wrote.
    fn last_segments(&self) -> Vec<Segment>;
}

/// A checked block request.
#[derive(Debug)]
pub struct BlockRequest<'a> {
    /// Read or write.
    pub operation: BlockOperation,
    /// The first block.
    pub lba: u64,
    /// Blocks (at least one, all on the disk).
    pub count: u64,
    /// The memory, lent to the driver for the request.
    pub buffer: &'a mut DmaBuffer,
    /// Byte offset in `buffer` (even; the blocks fit after it).
    pub offset: u64,
    /// Extra limits for this transfer.
    pub options: TransferOptions,
}

/// The checks every block request must pass before it reaches a device with
/// `(block_size, block_count)`: `BadArgument` for zero blocks, blocks past the
/// end, or a buffer whose direction does not allow the operation; `Overrun` for a
/// buffer too small; `NotAligned` for an odd offset.
pub fn check_request<'a>(
    (block_size, block_count): (u32, u64),
    operation: BlockOperation,
    lba: u64,
    count: u64,
    buffer: &'a mut DmaBuffer,
    offset: u64,
    options: TransferOptions,
) -> Result<BlockRequest<'a>, IoFailure> {
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
        return Err(IoFailure::new(IoReturn::BadArgument, Cause::Other("a request moves at least one block")));
    }
    if lba.checked_add(count).is_none_or(|end| end > block_count) {
        return Err(IoFailure::new(IoReturn::BadArgument, Cause::BlocksPastEnd { lba, count, blocks: block_count }));
    }
    let bytes = count
        .checked_mul(u64::from(block_size))
        .ok_or(IoFailure::new(IoReturn::BadArgument, Cause::Other("the request's byte count overflows")))?;
    if offset.checked_add(bytes).is_none_or(|end| end > buffer.length()) {
        let cause = Cause::OutOfRange { offset, length: bytes, size: buffer.length() };
        return Err(IoFailure::new(IoReturn::Overrun, cause));
    }
    if !offset.is_multiple_of(2) {
        let cause = Cause::OffsetNotAligned { offset, alignment: 2 };
        return Err(IoFailure::new(IoReturn::NotAligned, cause));
    }
    Ok(BlockRequest { operation, lba, count, buffer, offset, options })
}
