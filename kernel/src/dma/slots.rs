//! `TransferSlots`: the DMA life cycle of a device with many transfers in
//! flight, in one place: one command per slot, made once, and per slot the
//! [`DmaTransfer`] the device holds.
//!
//! A device that keeps many transfers in flight needs one `IoDmaCommand` per
//! transfer: a command serves one at a time. Making them when the device starts,
//! and never while transfers run, means a transfer never fails for lack of a
//! command, and the number of slots is the queue depth.
//!
//! Whoever owns the slots (the block layer for a disk; a network driver for its
//! rings) prepares a buffer into a slot, *lends* the prepared transfer to the
//! driver for as long as one call takes ([`LentTransfer`]), and completes the
//! slot with the bytes the device says it moved. The driver only programs the
//! device from what it was lent: it never holds a buffer, so it cannot keep,
//! leak, complete or double-complete one.
//!
//! ```text
//!   prepare(slot, buffer)   slot's command -> DmaTransfer (the device's from here)
//!   lend(slot)              &LentTransfer: segments, typed entries, records
//!   complete(slot, moved)   bounce copy of exactly `moved` bytes, the command idle
//!   abandon(slot)           the device will not stop: memory leaked, the command idle
//! ```

use alloc::vec::Vec;
use core::panic::Location;

use super::entry::{FromSegment, entries_for};
use super::failure::Cause;
use super::misuse::{Misuse, MisuseReport};
use super::{
    ByteCount, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand, IoFailure, IoReturn, Refused, Segment,
    Specification, SyncOptions, TransferOptions,
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

/// What one slot holds: its command, idle, or the transfer the command serves.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a busy slot's transfer holds its command by value; boxing it would allocate on every prepare"
)]
enum SlotState {
    /// The slot's command, ready for the next transfer.
    Idle(IoDmaCommand),
    /// A prepared transfer: the device's until it is completed or abandoned.
    Busy(SlotTransfer, IoDirection),
    /// The command came back still bound to a buffer: it would carry that
    /// buffer into the next transfer, so it is kept out of use (and reported).
    Lost,
}

/// One command per slot, made once (IOKit's `IOCommandPool`; FreeBSD gives each
/// slot one busdma map), and the transfer each slot's device holds.
pub struct TransferSlots {
    platform: &'static dyn DmaPlatform,
    slots: Vec<SlotState>,
    /// Whether the device reports the bytes it moved ([`ByteCount`]).
    count: ByteCount,
}

impl core::fmt::Debug for TransferSlots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransferSlots").field("slots", &self.slots).finish()
    }
}

impl TransferSlots {
    /// `depth` slots whose commands follow `specification` on `platform`
    /// (`BadArgument` for a depth of 0, or the command's own error).
    pub fn new(
        platform: &'static dyn DmaPlatform,
        specification: Specification,
        depth: usize,
    ) -> Result<TransferSlots, IoFailure> {
        if depth == 0 {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::EmptyCommandPool));
        }
        let mut slots = Vec::with_capacity(depth);
        for _ in 0..depth {
            let command = IoDmaCommand::new(platform, specification)
                .map_err(|code| IoFailure::new(code, Cause::BadSpecification("the slots' commands")))?;
            slots.push(SlotState::Idle(command));
        }
        Ok(TransferSlots { platform, slots, count: ByteCount::Reported })
    }

    /// The same slots for a device whose byte count is `count`: with
    /// [`ByteCount::Assumed`] every transfer is prepared so that completing it
    /// with the whole length never hands out bytes nobody wrote for it.
    pub fn counting(self, count: ByteCount) -> TransferSlots {
        TransferSlots { count, ..self }
    }

    /// Slots.
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Whether slot `slot` holds a transfer.
    pub fn is_busy(&self, slot: usize) -> bool {
        matches!(self.slots.get(slot), Some(SlotState::Busy(..)))
    }

    /// Slots holding a transfer.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|state| matches!(state, SlotState::Busy(..))).count()
    }

    /// Prepares `[offset, offset + length)` of `buffer` in free slot `slot` for
    /// a device that accesses it as `direction`, as `options` ask. From here the
    /// buffer is the device's until `complete` or `abandon`. `BadArgument` past
    /// the depth; `Busy` for a slot that holds a transfer (or lost its command).
    pub fn prepare(
        &mut self,
        slot: usize,
        buffer: DmaBuffer,
        (offset, length): (u64, u64),
        direction: IoDirection,
        options: &TransferOptions,
    ) -> Result<(), NotPrepared> {
        let depth = self.slots.len();
        let Some(state) = self.slots.get_mut(slot) else {
            let failure = IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot, depth });
            return Err(NotPrepared { failure, buffer });
        };
        let command = match core::mem::replace(state, SlotState::Lost) {
            SlotState::Idle(command) => command,
            taken => {
                *state = taken;
                return Err(NotPrepared { failure: IoFailure::new(IoReturn::Busy, Cause::SlotTaken { slot }), buffer });
            }
        };
        match DmaTransfer::prepare_counted(command, buffer, (offset, length), options, self.count) {
            Ok(transfer) => {
                *state = SlotState::Busy(transfer, direction);
                Ok(())
            }
            Err(Refused { failure, buffer, command }) => {
                *state = idle_again(slot, command);
                Err(NotPrepared { failure, buffer })
            }
        }
    }

    /// Lends slot `slot`'s transfer (`None` for a slot without one).
    pub fn lend(&self, slot: usize) -> Option<LentTransfer<'_>> {
        let Some(SlotState::Busy(transfer, direction)) = self.slots.get(slot) else { return None };
        Some(LentTransfer { transfer, segments: transfer.segments(), length: transfer.length(), direction: *direction })
    }

    /// For a buffer that stays prepared across many device operations (a
    /// receive or transmit ring): [`DmaTransfer::synchronize_range`] on slot
    /// `slot`'s transfer. `NotReady` (cause `NotPrepared`) for a slot without one.
    #[track_caller]
    pub fn synchronize_range(
        &mut self,
        slot: usize,
        options: SyncOptions,
        (offset, length): (u64, u64),
    ) -> Result<(), IoFailure> {
        self.busy_mut(slot)?.synchronize_range(options, offset, length)
    }

    /// The CPU reads slot `slot`'s buffer while it stays prepared, as
    /// [`DmaTransfer::read_bytes`]: only after a `synchronize_range(In)`.
    #[track_caller]
    pub fn read_bytes(&self, slot: usize, offset: u64, out: &mut [u8]) -> Result<usize, IoFailure> {
        match self.slots.get(slot) {
            Some(SlotState::Busy(transfer, _)) => transfer.read_bytes(offset, out),
            _ => Err(not_prepared()),
        }
    }

    /// The CPU writes slot `slot`'s buffer while it stays prepared, as
    /// [`DmaTransfer::write_bytes`]: only while the CPU holds it; the device sees
    /// the bytes after a `synchronize_range(Out)` that covers them.
    #[track_caller]
    pub fn write_bytes(&mut self, slot: usize, offset: u64, data: &[u8]) -> Result<usize, IoFailure> {
        self.busy_mut(slot)?.write_bytes(offset, data)
    }

    /// Ends slot `slot`'s transfer after its device finished (or was stopped)
    /// having moved `moved` bytes: exactly those come back from bounce memory.
    /// `None` for a slot without a transfer (nothing to complete, twice or never).
    pub fn complete(&mut self, slot: usize, moved: u64) -> Option<SlotCompleted> {
        let transfer = self.take_transfer(slot)?;
        let completed = transfer.complete(moved);
        self.slots[slot] = idle_again(slot, completed.command);
        Some(SlotCompleted { buffer: completed.buffer, result: completed.result })
    }

    /// Gives slot `slot`'s transfer up because its device could not be stopped:
    /// the memory is leaked, never reused; the command is the slot's again.
    /// Says whether the slot held a transfer.
    pub fn abandon(&mut self, slot: usize) -> bool {
        let Some(transfer) = self.take_transfer(slot) else { return false };
        self.slots[slot] = idle_again(slot, transfer.abandon());
        true
    }

    /// At stop: reports each slot whose command is not idle (its transfer was
    /// never completed, or the command came back bound) as
    /// [`Misuse::PreparedAtStop`] and says how many.
    #[track_caller]
    pub fn check_stopped(&self) -> usize {
        let out = self.slots.iter().filter(|state| !matches!(state, SlotState::Idle(_))).count();
        for _ in 0..out {
            self.platform.accounting().misuse().report(MisuseReport {
                misuse: Misuse::PreparedAtStop,
                command: None,
                descriptor: None,
                location: Location::caller(),
            });
        }
        out
    }

    /// Slot `slot`'s transfer, for a call while it stays prepared.
    fn busy_mut(&mut self, slot: usize) -> Result<&mut SlotTransfer, IoFailure> {
        match self.slots.get_mut(slot) {
            Some(SlotState::Busy(transfer, _)) => Ok(transfer),
            _ => Err(not_prepared()),
        }
    }

    fn take_transfer(&mut self, slot: usize) -> Option<SlotTransfer> {
        let state = self.slots.get_mut(slot)?;
        if !matches!(state, SlotState::Busy(..)) {
            return None;
        }
        match core::mem::replace(state, SlotState::Lost) {
            SlotState::Busy(transfer, _) => Some(transfer),
            _ => None,
        }
    }
}

/// The state of a slot whose command came back: idle, unless the command is
/// still bound to a buffer, which it would carry into the next transfer.
fn idle_again(slot: usize, command: IoDmaCommand) -> SlotState {
    if command.is_idle() {
        return SlotState::Idle(command);
    }
    log::error!("DMA: slot {slot}'s command came back still bound to a buffer; the slot is out of use");
    SlotState::Lost
}

/// A slot asked for its prepared transfer holds none.
fn not_prepared() -> IoFailure {
    IoFailure::new(IoReturn::NotReady, Cause::NotPrepared)
}
