//! When a device fails or a request in flight takes too long: stop it, or,
//! when its driver says a reset forgets every command
//! ([`Recovery::ResetAndReissue`]), reset it and program the requests it held
//! again.
//!
//! A reset, behind the command gate: quiesce (the device must say it stopped;
//! one that did not is treated as at a stop, its memory abandoned), fail the
//! request that timed out (if one did), reopen, then program every other
//! request the device held again, in submission order, with the transfer it
//! still holds: nothing was completed or prepared in between, so the memory
//! never left the DMA layer's hands (a read is written again whole, a write
//! reads the same bytes again; a flush, which holds nothing, is asked for
//! again). A device that needs more than
//! [`MAX_RESETS_IN_A_ROW`] resets without finishing a request in between is
//! stopped as before.

use alloc::vec::Vec;

use super::{Mode, QueueState, QueuedDisk, REQUEST_TIMEOUT_MS, Waiting, handed_back};
use crate::block::{
    Finished, HardwareQueue, MAX_RESETS_IN_A_ROW, Quiesced, Recovery, RequestHandle, Slot, SlotCommand,
};
use crate::dma::{Cause, IoFailure, IoReturn};

impl<H: HardwareQueue> QueuedDisk<H> {
    /// The device did not finish in time, or a deferred request waited too
    /// long: fails the request behind `handle`. One still waiting in software is
    /// simply given back; one in flight means the device is stuck, so it is
    /// reset (or stopped) before any of its memory comes back.
    pub(super) fn give_up(&self, handle: &RequestHandle) {
        self.gate.run_action(|state| {
            if let Some(position) = state.waiting.iter().position(|waiting| handle.holds(&waiting.ticket)) {
                if let Some(Waiting { work, ticket, deferred }) = state.waiting.remove(position) {
                    let failure = match deferred {
                        true => IoFailure::new(
                            IoReturn::NoResources,
                            Cause::BounceMemoryStayedShort { milliseconds: REQUEST_TIMEOUT_MS },
                        ),
                        false => IoFailure::new(
                            IoReturn::Timeout,
                            Cause::TimedOut { milliseconds: REQUEST_TIMEOUT_MS, last: None },
                        ),
                    };
                    self.fulfil(state, &ticket, Finished { buffer: work.into_buffer(), result: Err(failure) });
                }
                return;
            }
            let held = state.slots.iter().position(|ticket| ticket.as_ref().is_some_and(|ticket| handle.holds(ticket)));
            if let Some(slot) = held {
                // What the device was doing goes into the cause, read before the
                // quiesce resets it.
                let milliseconds = REQUEST_TIMEOUT_MS;
                let cause = Cause::TimedOut { milliseconds, last: self.hardware.last_status() };
                let why = IoFailure::new(IoReturn::Timeout, cause);
                log::error!("{}: {why}", self.shape.driver_name);
                self.reset_or_stop(state, why, Some(slot));
            }
        });
    }

    /// The device must be reset because of `why` (the request in slot
    /// `timed_out`, if any, took too long): resets it and programs what it
    /// held again when its driver allows and the limit is not reached, else
    /// stops it as [`Self::stop_hardware`] does.
    pub(super) fn reset_or_stop(&self, state: &mut QueueState, why: IoFailure, timed_out: Option<Slot>) {
        let name = self.shape.driver_name;
        if state.mode == Mode::Stopped || self.hardware.recovery() == Recovery::StopOnly {
            log::error!("{name}: {why}; the device is stopped");
            self.stop_hardware(state, &why);
            return;
        }
        if state.resets_in_a_row >= MAX_RESETS_IN_A_ROW {
            log::error!("{name}: {why}; {MAX_RESETS_IN_A_ROW} resets in a row did not mend it: the device is stopped");
            self.stop_hardware(state, &why);
            return;
        }
        state.resets_in_a_row += 1;
        state.stats.resets += 1;
        log::error!(
            "{name}: {why}; resetting the device (reset {} in a row) to program its {} requests again",
            state.resets_in_a_row,
            state.stats.in_flight - usize::from(timed_out.is_some())
        );
        let quiesced = self.hardware.quiesce();
        if let Quiesced::StillRunning(failure) = quiesced {
            // Never freed, never programmed again under a device that may run.
            state.mode = Mode::Stopped;
            log::error!("{name}: {failure}; the memory of every request it held is abandoned");
            self.fail_held(state, &why, quiesced);
            self.abort_waiting(state);
            return;
        }
        if let Some(slot) = timed_out {
            self.end_slot(state, slot, why, Quiesced::Stopped);
        }
        if let Err(failure) = self.hardware.reopen() {
            state.mode = Mode::Stopped;
            log::error!("{name}: {failure} when reopening after the reset; the device is stopped");
            self.fail_held(state, &why, Quiesced::Stopped);
            self.abort_waiting(state);
            return;
        }
        self.reissue(state);
    }

    /// Programs every request still held again, oldest first, each in its own
    /// slot with its command and the transfer it holds. One the driver refuses
    /// was not given to the device: it fails with the driver's error.
    fn reissue(&self, state: &mut QueueState) {
        let mut held: Vec<(u64, Slot)> = (state.slots.iter().enumerate())
            .filter_map(|(slot, ticket)| ticket.as_ref().map(|ticket| (ticket.sequence(), slot)))
            .collect();
        held.sort_unstable();
        for (_, slot) in held {
            let lost = IoFailure::new(IoReturn::InternalError, Cause::RequestLost);
            let programmed = match (state.commands[slot], state.transfers.lend(slot)) {
                (Some(SlotCommand::Transfer(command)), Some(data)) => self.hardware.program(slot, &command, &data),
                // A flush holds no transfer: it is simply asked for again.
                (Some(SlotCommand::Flush), None) => self.hardware.program_flush(slot),
                // Cannot happen (a slot's ticket, command and transfer come and
                // go together); the device does not have it, it is stopped.
                _ => Err(lost),
            };
            if let Err(failure) = programmed {
                log::error!("{}: slot {slot} not programmed again after the reset: {failure}", self.shape.driver_name);
                self.end_slot(state, slot, failure, Quiesced::Stopped);
            }
        }
    }

    /// Stops the device, then ends every request it held with `why`: completed
    /// with nothing moved if it stopped, abandoned (memory leaked, buffer not
    /// given back) if it still runs; then fails every waiting request. The disk
    /// takes no more until `start`. Returns how many requests were failed.
    pub(super) fn stop_hardware(&self, state: &mut QueueState, why: &IoFailure) -> usize {
        state.mode = Mode::Stopped;
        let quiesced = self.hardware.quiesce_to_stop();
        if let Quiesced::StillRunning(failure) = quiesced {
            log::error!("{}: {failure}; the memory of every request it held is abandoned", self.shape.driver_name);
        }
        self.fail_held(state, why, quiesced) + self.abort_waiting(state)
    }

    /// Ends every request the quiesced device held with `why`. Returns how many.
    fn fail_held(&self, state: &mut QueueState, why: &IoFailure, quiesced: Quiesced) -> usize {
        let held: Vec<Slot> = (0..state.slots.len()).filter(|&slot| state.slots[slot].is_some()).collect();
        for &slot in &held {
            self.end_slot(state, slot, *why, quiesced);
        }
        held.len()
    }

    /// Ends the request in `slot` of a quiesced device with `failure`: its
    /// transfer completed with nothing moved if the device stopped, abandoned
    /// if it still runs.
    fn end_slot(&self, state: &mut QueueState, slot: Slot, failure: IoFailure, quiesced: Quiesced) {
        let Some(ticket) = state.slots[slot].take() else { return };
        state.stats.in_flight -= 1;
        // A flush's slot holds no transfer: it completes and abandons nothing.
        state.commands[slot] = None;
        let buffer = match quiesced {
            Quiesced::Stopped => state.transfers.complete(slot, 0).and_then(handed_back),
            Quiesced::StillRunning(_) => {
                state.transfers.abandon(slot);
                None
            }
        };
        self.fulfil(state, &ticket, Finished { buffer, result: Err(failure) });
    }

    /// Fails every request still waiting in software (the driver is
    /// stopping): they never reached the device. Returns how many.
    pub(super) fn abort_waiting(&self, state: &mut QueueState) -> usize {
        let stopped = IoFailure::new(IoReturn::Aborted, Cause::DriverStopped);
        let mut aborted = 0;
        while let Some(Waiting { work, ticket, .. }) = state.waiting.pop_front() {
            aborted += 1;
            self.fulfil(state, &ticket, Finished { buffer: work.into_buffer(), result: Err(stopped) });
        }
        aborted
    }
}
