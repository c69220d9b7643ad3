//! Finding what the port finished.
//!
//! A slot is finished when its PxCI bit (and, under NCQ, its PxSACT bit) is
//! clear, and nothing went wrong; anything wrong goes to error recovery
//! (`recovery.rs`).

use dmakit::block::{DeviceHealth, DeviceOutcome, Slot};
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
        let busy = self.read(PX_CI) | if self.ncq { self.read(PX_SACT) } else { 0 };
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
            false => errors != 0 || (done != 0 && signs.task_file & (TFD_ERROR | TFD_FAULT) != 0),
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
