//! `TransferSlots`: the DMA life cycle of a device with many transfers in
//! flight, in one place: a [`CommandPool`] (one command per slot) and, per slot,
//! the [`DmaTransfer`] the device holds.
//!
//! Whoever owns the slots (the block layer for a disk; a network driver for its
//! rings) prepares a buffer into a slot, *lends* the prepared transfer to the
//! driver for as long as one call takes ([`LentTransfer`]), and completes the
//! slot with the bytes the device says it moved. The driver only programs the
//! device from what it was lent: it never holds a buffer, so it cannot keep,
//! leak, complete or double-complete one.
//!
//! ```text
//!   prepare(slot, buffer)   pool command -> DmaTransfer (the device's from here)
//!   lend(slot)              &LentTransfer: segments, typed entries, records
//!   complete(slot, moved)   bounce copy of exactly `moved` bytes, command back
//!   abandon(slot)           the device will not stop: memory leaked, command back
//! ```

use alloc::vec::Vec;

use super::entry::{FromSegment, entries_for};
use super::{
    CommandPool, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand, IoFailure, Refused, Segment,
    Specification, TransferOptions,
};

/// A transfer in a slot: the caller's buffer and the slot's command, both moved in.
type SlotTransfer = DmaTransfer<DmaBuffer, IoDmaCommand>;

/// A buffer that could not be prepared: why, and the buffer, untouched.
#[derive(Debug)]
pub struct NotPrepared {
    /// Why (the DMA layer's cause: a spent bounce budget, a rule broken, ...).
    pub failure: IoFailure,
    /// The buffer, still the caller's.
    pub buffer: DmaBuffer,
}

/// What completing a slot gives back.
#[derive(Debug)]
pub struct SlotCompleted {
    /// The buffer, the CPU's again.
    pub buffer: DmaBuffer,
    /// `Ok`, or what the DMA layer found (a short transfer, an IOMMU fault).
    pub result: Result<(), IoFailure>,
}

/// A prepared transfer lent to a driver for one call: what the device may be
/// told, and nothing that ends the transfer.
#[derive(Debug)]
pub struct LentTransfer<'slot> {
    transfer: &'slot SlotTransfer,
    /// The transfer's segments, handed out when it was lent.
    segments: &'slot [Segment],
    length: u64,
    direction: IoDirection,
}

impl LentTransfer<'_> {
    /// The device's segments, in order: what the device reads or writes.
    pub fn segments(&self) -> &[Segment] {
        self.segments
    }

    /// The segments as the device's own entries (see [`FromSegment`]).
    pub fn entries<E: FromSegment>(&self) -> Result<Vec<E>, IoFailure> {
        entries_for(self.segments, self.direction)
    }

    /// Writes segments from `offset` as records in the command's output format
    /// (`IODMACommand::writeSegments`), for a device that reads raw records.
    pub fn write_segments(&self, offset: u64, output: &mut [u8]) -> Result<(usize, u64), IoFailure> {
        self.transfer.write_segments(offset, output)
    }

    /// Bytes prepared.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// How the device accesses the memory: `In`, it writes; `Out`, it reads.
    pub fn direction(&self) -> IoDirection {
        self.direction
    }
}

/// One command per slot, and the transfer each slot's device holds.
#[derive(Debug)]
pub struct TransferSlots {
    pool: CommandPool,
    transfers: Vec<Option<(SlotTransfer, IoDirection)>>,
}

impl TransferSlots {
    /// `depth` slots whose commands follow `specification` on `platform`.
    pub fn new(
        platform: &'static dyn DmaPlatform,
        specification: Specification,
        depth: usize,
    ) -> Result<TransferSlots, IoFailure> {
        let pool = CommandPool::new(platform, specification, depth)?;
        Ok(TransferSlots { pool, transfers: (0..depth).map(|_| None).collect() })
    }

    /// Slots.
    pub fn depth(&self) -> usize {
        self.transfers.len()
    }

    /// Whether slot `slot` holds a transfer.
    pub fn is_busy(&self, slot: usize) -> bool {
        self.transfers.get(slot).is_some_and(Option::is_some)
    }

    /// Slots holding a transfer.
    pub fn busy(&self) -> usize {
        self.transfers.iter().filter(|transfer| transfer.is_some()).count()
    }

    /// Prepares `[offset, offset + length)` of `buffer` in free slot `slot` for
    /// a device that accesses it as `direction`, as `options` ask. From here the
    /// buffer is the device's until `complete` or `abandon`.
    pub fn prepare(
        &mut self,
        slot: usize,
        buffer: DmaBuffer,
        (offset, length): (u64, u64),
        direction: IoDirection,
        options: &TransferOptions,
    ) -> Result<(), NotPrepared> {
        let command = match self.pool.take(slot) {
            Ok(command) => command,
            Err(failure) => return Err(NotPrepared { failure, buffer }),
        };
        match DmaTransfer::prepare(command, buffer, offset, length, options) {
            Ok(transfer) => {
                self.transfers[slot] = Some((transfer, direction));
                Ok(())
            }
            Err(Refused { failure, buffer, command }) => {
                self.give_back(slot, command);
                Err(NotPrepared { failure, buffer })
            }
        }
    }

    /// Lends slot `slot`'s transfer (`None` for a free slot).
    pub fn lend(&self, slot: usize) -> Option<LentTransfer<'_>> {
        let (transfer, direction) = self.transfers.get(slot)?.as_ref()?;
        Some(LentTransfer { transfer, segments: transfer.segments(), length: transfer.length(), direction: *direction })
    }

    /// Ends slot `slot`'s transfer after its device finished (or was stopped)
    /// having moved `moved` bytes: exactly those come back from bounce memory.
    /// `None` for a free slot (nothing to complete, twice or never).
    pub fn complete(&mut self, slot: usize, moved: u64) -> Option<SlotCompleted> {
        let (transfer, _) = self.transfers.get_mut(slot)?.take()?;
        let completed = transfer.complete(moved);
        self.give_back(slot, completed.command);
        Some(SlotCompleted { buffer: completed.buffer, result: completed.result })
    }

    /// Gives slot `slot`'s transfer up because its device could not be stopped:
    /// the memory is leaked, never reused; the command goes back to the pool.
    /// Says whether the slot held a transfer.
    pub fn abandon(&mut self, slot: usize) -> bool {
        let Some((transfer, _)) = self.transfers.get_mut(slot).and_then(Option::take) else {
            return false;
        };
        let command = transfer.abandon();
        self.give_back(slot, command);
        true
    }

    /// At stop: reports each command still out of the pool as
    /// `PreparedAtStop` and says how many.
    #[track_caller]
    pub fn check_stopped(&self) -> usize {
        self.pool.check_stopped()
    }

    fn give_back(&self, slot: usize, command: IoDmaCommand) {
        if let Err(failure) = self.pool.give_back(slot, command) {
            // A command that came back bound would carry its buffer into the
            // next transfer: it stays out of the pool instead.
            log::error!("DMA: slot {slot}'s command did not go back to its pool: {failure}");
        }
    }
}
