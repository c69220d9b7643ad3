//! Finding what the port finished.
//!
//! A slot is finished when its PxCI bit (and, under NCQ, its PxSACT bit) is
//! clear, and nothing went wrong; anything wrong goes to error recovery
//! (`recovery.rs`). The two registers are believed only when they can be
//! true: a bit for a slot the driver did not issue there (a PxSACT bit for a
//! flush, which is never queued), or under NCQ a PxSACT bit cleared while its
//! PxCI bit is still set (the drive finished what the HBA had not sent it),
//! is a port that says what did not happen. Which of its completions are true
//! cannot be told, so none is reported: the port is stopped
//! ([`DeviceHealth::MustStop`]), and the block layer completes what it held
//! once it is.

use dmakit::block::{DeviceHealth, DeviceOutcome, Slot};
use dmakit::dma::{AhciCause, Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::port::{AhciPort, PortState, slots_in};
use super::recovery::Signs;
use super::registers::*;

impl<R: RegisterIo> AhciPort<R> {
    /// `HardwareQueue::collect`: reports finished slots, or recovers from an error.
    pub(super) fn collect_finished(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.memory.is_none() {
            return DeviceHealth::Running;
        }
        let outstanding = state.issued();
        // The busy bits first: every completion seen in them happened before
        // the error bits read next, so an error is never taken for a success.
        let (issued, active) = (self.read(PX_CI), if self.ncq { self.read(PX_SACT) } else { 0 });
        if let Some(cause) = impossible_busy_bits(state, self.ncq, issued, active) {
            log::error!("Ahci: port {}: {cause}; the port is stopped", self.number);
            return DeviceHealth::MustStop(IoFailure::new(IoReturn::IoError, Cause::Ahci(cause)));
        }
        let busy = issued | active;
        let errors = self.take_errors();
        // SError: link events (see `recovery.rs`); without NCQ the task file says it all.
        let link = if self.ncq { self.read(PX_SERR) } else { 0 };
        if outstanding == 0 {
            if link != 0 {
                // Nothing is held: old news.
                self.write(PX_SERR, link);
            }
            self.issue_next_held_back(state);
            return DeviceHealth::Running;
        }
        let signs = Signs { errors, task_file: self.read(PX_TFD), link };
        let done = outstanding & !busy;
        let trouble = match self.ncq {
            true => signs.device_error() || link != 0,
            // A non-queued command's completion FIS leaves its status in PxTFD.
            // BSY or DRQ with it cannot end a command (`recovery.rs` says so).
            false => {
                let ended_badly = TFD_ERROR | TFD_FAULT | TFD_BUSY | TFD_DATA_REQUEST;
                errors != 0 || (done != 0 && signs.task_file & ended_badly != 0)
            }
        };
        if trouble {
            return self.recover(state, signs, finished);
        }
        for slot in slots_in(done) {
            self.finish_slot(state, slot, Ok(()), finished);
        }
        self.issue_next_held_back(state);
        DeviceHealth::Running
    }

    /// Issues the next command recovery held back, once none is issued: alone
    /// on the drive, an error it meets names it.
    fn issue_next_held_back(&self, state: &mut PortState) {
        if state.held_back == 0 || state.issued() != 0 {
            return;
        }
        let next = state.held_back & state.held_back.wrapping_neg();
        state.held_back &= !next;
        if self.ncq {
            // A flush is never queued (it is never held back either).
            self.write(PX_SACT, next & !state.flushes());
        }
        self.write(PX_CI, next);
    }
}

/// Why PxCI (`issued`) and PxSACT (`active`, 0 without NCQ) cannot be true
/// of the slots `state` holds, if they cannot: bits for slots not issued
/// there, or NCQ commands finished before the HBA sent them.
fn impossible_busy_bits(state: &PortState, ncq: bool, issued: u32, active: u32) -> Option<AhciCause> {
    let outstanding = state.issued();
    let queued = match ncq {
        true => outstanding & !state.flushes(),
        false => 0,
    };
    let strays = issued & !outstanding | active & !queued;
    if strays != 0 {
        return Some(AhciCause::CommandsNotIssued { slots: strays });
    }
    let early = queued & issued & !active;
    (early != 0).then_some(AhciCause::CompletedBeforeIssued { slots: early })
}
