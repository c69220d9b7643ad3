//! The block-storage interface both disk drivers publish (IOKit's
//! `IOBlockStorageDevice`): a size, and reads and writes of whole blocks into or
//! out of an `IoMemoryDescriptor`.

use alloc::string::String;
use alloc::sync::Arc;

pub use crate::dma::TransferOptions;
use crate::dma::{IoDirection, IoMemoryDescriptor, IoReturn, Segment};

/// A disk.
pub trait BlockDevice: Send + Sync {
    /// The driver's name, e.g. "VirtioBlock".
    fn driver_name(&self) -> &'static str;
    /// Bytes per block.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// Runs a request that passed [`check_request`]: what each driver implements.
    fn submit(&self, request: &BlockRequest) -> Result<(), IoReturn>;
    /// Moves `count` blocks at `lba` between the disk and `buffer` at byte
    /// `offset`: `In` reads the disk into memory (the device writes memory), `Out`
    /// writes memory to the disk. Bad requests never reach the driver.
    fn transfer(
        &self,
        direction: IoDirection,
        lba: u64,
        count: u64,
        buffer: &Arc<IoMemoryDescriptor>,
        offset: u64,
        options: &TransferOptions,
    ) -> Result<(), IoReturn> {
        let geometry = (self.block_size(), self.block_count());
        self.submit(&check_request(geometry, direction, lba, count, buffer, offset, *options)?)
    }
    /// Reads `count` blocks from `lba` into `buffer` at byte `offset`.
    fn read(&self, lba: u64, count: u64, buffer: &Arc<IoMemoryDescriptor>, offset: u64) -> Result<(), IoReturn> {
        self.transfer(IoDirection::In, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// Writes `count` blocks at `lba` from `buffer` at byte `offset`.
    fn write(&self, lba: u64, count: u64, buffer: &Arc<IoMemoryDescriptor>, offset: u64) -> Result<(), IoReturn> {
        self.transfer(IoDirection::Out, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// A line about the device for listings (model, transport).
    fn description(&self) -> String;
    /// Double-buffers every transfer from now on (`synchronize(ForceDoubleBuffer)`
    /// after each prepare), to compare with direct transfers.
    fn set_force_double_buffer(&self, enabled: bool);
    /// The data segments the device was given for the last command (for traces
    /// and tests): what the device actually read or wrote.
    fn last_segments(&self) -> alloc::vec::Vec<Segment>;
}

/// A checked block request.
#[derive(Clone, Copy, Debug)]
pub struct BlockRequest<'a> {
    /// Whether it writes the disk (`Out`) rather than reading it (`In`).
    pub write: bool,
    /// The first block.
    pub lba: u64,
    /// Blocks (at least one, all on the disk).
    pub count: u64,
    /// The memory.
    pub buffer: &'a Arc<IoMemoryDescriptor>,
    /// Byte offset in `buffer` (even; the blocks fit after it).
    pub offset: u64,
    /// Extra limits for this transfer.
    pub options: TransferOptions,
}

/// The checks every block request must pass before it reaches a device with
/// `(block_size, block_count)`: `BadArgument` for a direction other than In or
/// Out, zero blocks or blocks past the end, `Overrun` for a buffer too small,
/// `NotAligned` for an odd offset.
pub fn check_request<'a>(
    (block_size, block_count): (u32, u64),
    direction: IoDirection,
    lba: u64,
    count: u64,
    buffer: &'a Arc<IoMemoryDescriptor>,
    offset: u64,
    options: TransferOptions,
) -> Result<BlockRequest<'a>, IoReturn> {
    let write = match direction {
        IoDirection::In => false,
        IoDirection::Out => true,
        IoDirection::None | IoDirection::InOut => return Err(IoReturn::BadArgument),
    };
    if count == 0 {
        return Err(IoReturn::BadArgument);
    }
    let end = lba.checked_add(count).ok_or(IoReturn::BadArgument)?;
    if end > block_count {
        return Err(IoReturn::BadArgument);
    }
    let bytes = count.checked_mul(u64::from(block_size)).ok_or(IoReturn::BadArgument)?;
    if offset.checked_add(bytes).is_none_or(|end| end > buffer.length()) {
        return Err(IoReturn::Overrun);
    }
    if !offset.is_multiple_of(2) {
        return Err(IoReturn::NotAligned);
    }
    Ok(BlockRequest { write, lba, count, buffer, offset, options })
}
