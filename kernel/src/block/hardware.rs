//! What a disk driver implements: a device with a number of slots, each able to
//! carry one request. The driver programs the device; it never owns a buffer.
//!
//! The block layer ([`super::QueuedDisk`]) owns each request's DMA life cycle
//! (the command pool, prepare, complete, give-back, abandon; in
//! [`crate::dma::TransferSlots`]). For one request it prepares the buffer in a
//! free slot, then *lends* the prepared transfer to [`HardwareQueue::program`],
//! which writes the device's descriptors from it and starts the device. Later
//! [`HardwareQueue::collect`] says which slots the device finished and how many
//! bytes it moved, and the block layer completes them. A driver has nothing to
//! keep, complete or give back: the compiler sees to it (the lent transfer lives
//! only as long as the call).
//!
//! A flush (the device's volatile write cache to the medium) carries no data:
//! the block layer gives it a slot but nothing to prepare or lend, and calls
//! [`HardwareQueue::program_flush`]; `collect` reports its slot like any other.
//! A disk whose [`DiskShape::write_cache`] is [`WriteCache::WriteThrough`] is
//! never asked: the block layer answers its flushes with success at once.
//!
//! Who calls what, and from where:
//!
//! | method | called from | may lock / allocate |
//! |---|---|---|
//! | `acknowledge_interrupt` | the interrupt handler | neither |
//! | `admit`, `program`, `program_flush`, `collect`, `quiesce`, `reopen` | the work loop, behind the command gate | both |
//! | the others | anywhere | both |

use alloc::string::String;
use alloc::vec::Vec;

use super::BlockOperation;
use crate::dma::{ByteCount, Cause, DeviceStatus, DmaPlatform, IoFailure, IoReturn, LentTransfer, Specification};

/// A slot: which of the device's `depth` places a request occupies
/// (`0..depth`; the NCQ tag, the virtio chain, the one IDE command).
pub type Slot = usize;

/// What a driver says about its disk, once, when the block layer takes it.
#[derive(Clone, Copy)]
pub struct DiskShape {
    /// The driver's name, e.g. "VirtioBlock".
    pub driver_name: &'static str,
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks on the device.
    pub block_count: u64,
    /// Requests the device takes at once (at least 1).
    pub depth: usize,
    /// The most blocks one request may carry; larger synchronous transfers are
    /// split, larger asynchronous ones refused.
    pub max_request_blocks: u64,
    /// What the device's DMA can do with a request's data (address bits,
    /// segment sizes and count, alignment, boundary).
    pub specification: Specification,
    /// Where the device's DMA goes: the bare machine, or its IOMMU domain.
    pub platform: &'static dyn DmaPlatform,
    /// Whether finished writes may still sit in a volatile cache (then a
    /// flush goes to the device).
    pub write_cache: WriteCache,
    /// Whether the device reports the bytes it moved, or only "done" (then
    /// `moved` is the whole length, and a bounced read's bounce memory starts
    /// as a copy of the buffer: see [`ByteCount`]).
    pub byte_count: ByteCount,
}

/// Whether a disk may keep a finished write in a cache that a power loss
/// empties. Each driver says so from what its device reports; nothing is
/// assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCache {
    /// A write is durable once the device reports it finished (no cache, or
    /// one the device writes through): a flush has nothing to do, and the
    /// block layer answers it with success without the device.
    WriteThrough,
    /// The device may report a write finished while it sits in a volatile
    /// cache: a flush goes to the device ([`HardwareQueue::program_flush`]).
    Volatile,
}

impl core::fmt::Debug for DiskShape {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DiskShape")
            .field("driver_name", &self.driver_name)
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .field("depth", &self.depth)
            .field("max_request_blocks", &self.max_request_blocks)
            .field("write_cache", &self.write_cache)
            .field("byte_count", &self.byte_count)
            .finish()
    }
}

/// The header of one request: what the device is to do with the data it is lent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCommand {
    /// Read or write.
    pub operation: BlockOperation,
    /// The first block.
    pub lba: u64,
    /// Blocks.
    pub count: u64,
}

/// What one slot carries to the device: a command that moves data, or a
/// flush, which has none (so nothing can lend it a transfer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotCommand {
    /// A read or a write: [`HardwareQueue::program`] gets it with the
    /// prepared transfer.
    Transfer(BlockCommand),
    /// Every write the device reported finished before the flush was
    /// submitted goes from its volatile cache to the medium:
    /// [`HardwareQueue::program_flush`], no data.
    Flush,
}

/// How the device ended one slot's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceOutcome {
    /// Data bytes the device moved, from the start of the transfer. The block
    /// layer never believes more than it prepared.
    pub moved: u64,
    /// `Ok`, or the device's error.
    pub result: Result<(), IoFailure>,
}

/// What the device is doing after a look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceHealth {
    /// Working: the slots not reported are still the device's.
    Running,
    /// It went wrong in a way the driver cannot recover from while requests are
    /// held (an engine that will not stop for error recovery): the block layer
    /// must quiesce it, and abandon what it held if it still runs.
    MustStop(IoFailure),
    /// It went wrong in a way a reset mends (an NVMe controller's fatal
    /// status): if the driver's [`HardwareQueue::recovery`] says a reset forgets
    /// every command, the block layer quiesces it, reopens it and programs the
    /// requests it held again; otherwise this is `MustStop`.
    MustReset(IoFailure),
}

/// What a reset (`quiesce`, then `reopen`) does to the requests a device held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing the block layer may count on: after a failure or a timeout the
    /// device is stopped and every request it held fails (until `start`).
    StopOnly,
    /// A stopped `quiesce` followed by a good `reopen` is a full reset: the
    /// device forgot every command and touches none of their memory, so each
    /// slot may be programmed again with the transfer it still holds.
    ResetAndReissue,
}

/// Whether the device let go of memory at a quiesce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiesced {
    /// Stopped (reset): it no longer touches any memory it was given, and the
    /// driver released or kept its own rings and tables accordingly.
    Stopped,
    /// It could not be stopped: it may still read or write what it was given,
    /// which must never be reused (the block layer abandons every transfer).
    StillRunning(IoFailure),
}

/// A disk as its driver sees it: slots that carry requests.
pub trait HardwareQueue: Send + Sync {
    /// The disk's fixed facts (read once, when the block layer takes the driver).
    fn shape(&self) -> DiskShape;
    /// A line about the device for listings (model, transport, queue).
    fn description(&self) -> String;
    /// Whether `command` may start now, before any memory is prepared for it:
    /// `Busy` means "not now, try again" (another drive on the same channel is
    /// using it, or a flush must wait until the queued commands before it are
    /// done), anything else fails the request (a write to a read-only disk).
    /// A request told `Busy` stays at the head of the line: those behind it
    /// wait too, so none overtakes it.
    fn admit(&self, command: &SlotCommand) -> Result<(), IoFailure> {
        let _ = command;
        Ok(())
    }
    /// Programs free slot `slot` with `command` and the prepared `data`, and
    /// starts the device on it. `Ok`: the device may use the data from now until
    /// `collect` reports the slot (or a quiesce stops the device). `Err`: the
    /// device was not given the slot, or was stopped again before returning, so
    /// the data can be completed with nothing moved.
    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure>;
    /// Programs free slot `slot` with a flush of the device's volatile write
    /// cache, and starts the device on it. There is no data: `collect` reports
    /// the slot (with `moved` 0) once every write the device reported finished
    /// before is on the medium, or with the device's error. Asked only of a
    /// disk whose shape says [`WriteCache::Volatile`]. `Ok` and `Err` mean what
    /// they mean for `program`.
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure>;
    /// Looks at the device and reports each slot it finished, in the order it
    /// finished them, with what it moved. A slot is reported once.
    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth;
    /// In the interrupt handler: quiets the device's interrupt (reads or clears
    /// its status) so the line drops. Returns whether the device had one. Must
    /// neither take a lock that the other methods hold nor allocate.
    fn acknowledge_interrupt(&self) -> bool;
    /// Stops the device so it no longer touches memory (a reset), forgetting
    /// every slot it held, and releases what it was given (rings, tables) if it
    /// stopped; says whether it did. Later `program`s fail until `reopen`.
    fn quiesce(&self) -> Quiesced;
    /// `quiesce` for a stop rather than a reset (the disk's `stop`, or a
    /// device that must stay stopped): a device that can be told it is being
    /// shut down (NVMe's CC.SHN) is told first, so that it puts what it cached
    /// on the medium. A reset skips that, as Linux does: a controller that was
    /// shut down may take longer to become ready again. By default `quiesce`.
    fn quiesce_to_stop(&self) -> Quiesced {
        self.quiesce()
    }
    /// Sets the device up again after `quiesce`.
    fn reopen(&self) -> Result<(), IoFailure>;
    /// Whether a reset lets the block layer re-issue what the device held
    /// ([`DeviceHealth::MustReset`], a request that timed out); by default not.
    fn recovery(&self) -> Recovery {
        Recovery::StopOnly
    }
    /// What the device's status registers say now, for a timeout's cause
    /// (`None` when the driver has nothing to read).
    fn last_status(&self) -> Option<DeviceStatus> {
        None
    }
    /// Counts of the driver's own, for `stats` (NVMe: which form of data
    /// pointer its commands used); none by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// The first step of a driver's `program` (and of a NIC driver's post): the
/// state the device was given at bring-up, unless the driver was stopped
/// (`DriverStopped`), and slot `slot`'s record, which must be free. The layer
/// never hands out a busy slot, so a busy one is a broken promise
/// (`SlotNotFree`), not a limit.
pub fn claim_slot<'a, S, T>(
    shared: &'a mut Option<S>,
    slots: &'a mut [Option<T>],
    slot: Slot,
) -> Result<(&'a mut S, &'a mut Option<T>), IoFailure> {
    let shared = shared.as_mut().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
    match slots.get_mut(slot) {
        Some(free @ None) => Ok((shared, free)),
        _ => Err(IoFailure::new(IoReturn::InternalError, Cause::SlotNotFree { slot })),
    }
}
