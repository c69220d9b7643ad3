//! A flush: every write the device reported finished before it was submitted
//! goes from the device's volatile cache to the medium.
//!
//! It waits in the same line as reads and writes and takes a slot, but it has
//! no buffer: nothing is prepared, lent, completed or abandoned for it, and
//! only its command is kept for a reset to issue again. The block layer does
//! not reorder anything around it: a write the caller waited for before
//! submitting the flush is finished, so the device holds it, and keeping it
//! until the flush is the device's job. A driver whose device cannot take a
//! flush next to its other commands (an AHCI port with NCQ commands
//! outstanding) says `Busy` in `admit`, and the flush waits at the head of
//! the line until the device drained.
//!
//! A disk whose writes are durable once finished ([`WriteCache::WriteThrough`])
//! has nothing to flush: its flushes succeed at once, without the device, and
//! still count in the statistics.

use super::{Mode, Pending, QueueState, QueuedDisk};
use crate::block::{Finished, HardwareQueue, RequestHandle, Slot, SlotCommand, WriteCache};
use crate::dma::{Cause, IoFailure, IoReturn};

impl<H: HardwareQueue> QueuedDisk<H> {
    /// Takes a flush (`BlockDevice::submit_flush`): `NotReady` with
    /// `DriverStopped` on a stopped disk, as for any request.
    pub(super) fn enqueue_flush(&self) -> Result<RequestHandle, IoFailure> {
        self.gate.run_action(|state| {
            if state.mode == Mode::Stopped {
                return Err(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped));
            }
            state.stats.flushes += 1;
            match self.shape.write_cache {
                WriteCache::Volatile => Ok(self.queue_and_work(state, Pending::Flush)),
                WriteCache::WriteThrough => Ok(self.nothing_to_flush(state)),
            }
        })
    }

    /// A flush of a disk without a volatile cache: over at once, well.
    fn nothing_to_flush(&self, state: &mut QueueState) -> RequestHandle {
        let ticket = self.new_ticket(state);
        self.fulfil(state, &ticket, Finished { buffer: None, result: Ok(()) });
        RequestHandle::new(ticket)
    }

    /// A flush into free slot `slot`: asks the driver whether it may start
    /// (`Busy`: it waits at the head of the line), then has it programmed.
    pub(super) fn start_flush(&self, state: &mut QueueState, slot: Slot) -> Result<(), IoFailure> {
        self.hardware.admit(&SlotCommand::Flush)?;
        self.hardware.program_flush(slot)?;
        state.commands[slot] = Some(SlotCommand::Flush);
        Ok(())
    }
}
