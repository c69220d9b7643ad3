//! Finding what the port finished, and error recovery.
//!
//! A slot is finished when its PxCI bit (and, under NCQ, its PxSACT bit) is
//! clear. An error stops the port's command processing (AHCI 1.3.1, 6.2.2):
//! the driver then stops the port (PxCMD.ST off, wait for CR) and, under NCQ,
//! always resets the drive (COMRESET): clearing ST stops the HBA, not the
//! drive, which may still hold queued commands and move their data (QEMU's
//! NCQ I/O runs on after ST is cleared; only `ahci_reset_port` cancels it).
//! Only then does it fail the request that went wrong with the device's
//! error, clear PxSERR and PxIS, wait for the drive to be ready (busy after a
//! COMRESET until it has sent its signature), start the port again and issue
//! again the other requests that were in flight.
//!
//! Which NCQ command failed: the specification's way is the NCQ error log
//! (READ LOG EXT, page 10h). QEMU does not implement READ LOG EXT (up to 8.2
//! at least), so the driver does not read it. What QEMU does instead
//! (`hw/ide/ahci.c`, `ncq_err` and `ahci_write_fis_sdb`):
//!
//! - before 8.2 (the 7.2 Debian ships): the failed tag's bit is set in PxSERR
//!   (QEMU's own use of that register), its PxSACT bit stays set, PxTFD gets
//!   ERR with ABRT, and only SDBS is raised, not TFES; the other queued
//!   commands run on and complete normally;
//! - from 8.2 (Niklas Cassel's series, "hw/ide/ahci: fix broken SError
//!   handling", "fix ahci_write_fis_sdb()"): no PxSERR bit, TFES is raised,
//!   the failed tag's PxSACT bit stays set, the others still complete.
//!
//! So the driver takes a tag marked in PxSERR as the failed one; with none
//! marked it lets the other commands drain (a bounded wait: a real drive
//! aborts them all after an NCQ error, and then the wait ends at its timeout)
//! and, if exactly one is still outstanding, fails that one. When several are
//! (a real drive), it cannot tell which failed without the log, and fails
//! them all.

use core::sync::atomic::Ordering;

use dmakit::block::{DeviceHealth, DeviceOutcome, Slot};
use dmakit::dma::{Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::port::{AhciPort, DEVICE_TIMEOUT_MS, PortState, slots_in};
use super::registers::*;

/// How long error recovery lets the other queued commands finish.
const DRAIN_TIMEOUT_MS: u64 = 100;

/// The failure of a command that ended with `errors` in PxIS and `task_file`
/// in PxTFD, in words.
fn describe(errors: u32, task_file: u32) -> IoFailure {
    let (code, what) = if errors & IS_HOST_BUS_FATAL != 0 {
        (IoReturn::DmaError, "host bus fatal error (PxIS.HBFS): the HBA could not reach memory")
    } else if errors & IS_HOST_BUS_DATA != 0 {
        (IoReturn::DmaError, "host bus data error (PxIS.HBDS)")
    } else if errors & IS_OVERFLOW != 0 {
        (IoReturn::DmaError, "overflow (PxIS.OFS): the drive sent more data than the PRDT holds")
    } else if errors & IS_INTERFACE_FATAL != 0 {
        (IoReturn::IoError, "SATA interface fatal error (PxIS.IFS)")
    } else if task_file & TFD_UNCORRECTABLE != 0 {
        (IoReturn::IoError, "uncorrectable data error (task-file ERR, UNC)")
    } else if task_file & TFD_NOT_FOUND != 0 {
        (IoReturn::IoError, "sector not found (task-file ERR, IDNF)")
    } else if task_file & TFD_INTERFACE_CRC != 0 {
        (IoReturn::IoError, "interface CRC error (task-file ERR, ICRC)")
    } else if task_file & TFD_FAULT != 0 {
        (IoReturn::IoError, "device fault (task-file DF)")
    } else if task_file & TFD_ABORTED != 0 {
        (IoReturn::IoError, "the drive aborted the command (task-file ERR, ABRT)")
    } else {
        (IoReturn::IoError, "the drive reported an error (task-file ERR)")
    };
    IoFailure::new(code, Cause::DeviceError(what))
}

impl<R: RegisterIo> AhciPort<R> {
    /// `HardwareQueue::collect`: reports finished slots, or recovers from an error.
    pub(super) fn collect_finished(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.memory.is_none() {
            return DeviceHealth::Running;
        }
        let outstanding = state.outstanding();
        // The busy bits first: every completion seen in them happened before
        // the error bits read next, so an error is never taken for a success.
        let busy = self.read(PX_CI) | if self.ncq { self.read(PX_SACT) } else { 0 };
        let seen = self.read(PX_IS) & IS_ERRORS;
        if seen != 0 {
            self.write(PX_IS, seen);
        }
        let errors = self.pending_errors.swap(0, Ordering::AcqRel) | seen;
        if outstanding == 0 {
            return DeviceHealth::Running;
        }
        let marked = if self.ncq { self.read(PX_SERR) & outstanding } else { 0 };
        let task_file = self.read(PX_TFD);
        let done = outstanding & !busy;
        // A non-queued command's completion FIS leaves its status in PxTFD.
        let failed_plainly = !self.ncq && done != 0 && task_file & (TFD_ERROR | TFD_FAULT) != 0;
        if errors != 0 || marked != 0 || failed_plainly {
            return self.recover(state, errors, marked, task_file, finished);
        }
        for slot in slots_in(done) {
            self.finish_slot(state, slot, Ok(()), finished);
        }
        DeviceHealth::Running
    }

    /// Error recovery (see the module's comment).
    fn recover(
        &self,
        state: &mut PortState,
        errors: u32,
        marked: u32,
        task_file: u32,
        finished: &mut dyn FnMut(Slot, DeviceOutcome),
    ) -> DeviceHealth {
        let outstanding = state.outstanding();
        let failure = describe(errors, task_file);
        log::error!(
            "Ahci: port {}: error (PxIS {errors:#x}, PxTFD {task_file:#x}, marked tags {marked:#x}): {failure}",
            self.number
        );
        let (failed, retry, failure) = if self.ncq {
            let drained = |active: u32| {
                let others = active & outstanding & !marked;
                if marked != 0 { others == 0 } else { others.count_ones() <= 1 }
            };
            let _ = self.waiter.wait_until(DRAIN_TIMEOUT_MS, &mut || drained(self.read(PX_SACT)));
            let still = self.read(PX_SACT) & outstanding;
            for slot in slots_in(outstanding & !still & !marked) {
                self.finish_slot(state, slot, Ok(()), finished);
            }
            match (marked, still.count_ones()) {
                (0, 0 | 1) => (still, 0, failure),
                (0, _) => {
                    let cause = Cause::DeviceError(
                        "NCQ error: which queued command failed is unknown (the NCQ error log is not read), so all fail",
                    );
                    (still, 0, IoFailure::new(failure.code(), cause))
                }
                (marked, _) => (marked, still & !marked, failure),
            }
        } else {
            (outstanding, 0, failure)
        };
        // AHCI 1.3.1, 6.2.2.1: stop the port; reset it if the drive stays
        // busy. Under NCQ always: clearing PxCMD.ST stops the HBA, not the
        // drive, which may still hold queued commands and move their data
        // (QEMU's I/O for them runs on); a COMRESET makes it drop them before
        // any of them fails or is issued again.
        let mut stopped = self.stop_command_engine();
        if !stopped || self.ncq || self.read(PX_TFD) & (TFD_BUSY | TFD_DATA_REQUEST) != 0 {
            self.port_reset();
            stopped = self.stop_command_engine();
        }
        self.write(PX_SERR, u32::MAX);
        self.clear_interrupts();
        if !stopped {
            // The port still runs the command list: nothing it holds can come
            // back, and its PxCI/PxSACT no longer say what it holds (clearing ST
            // zeroed them), so no later look may read them as finished.
            log::error!("Ahci: port {}: would not stop for error recovery (PxCMD.CR stayed set)", self.number);
            return DeviceHealth::MustStop(IoFailure::new(IoReturn::IoError, Cause::DeviceWouldNotStop));
        }
        for slot in slots_in(failed) {
            self.finish_slot(state, slot, Err(failure), finished);
        }
        if let Err(failure) = self.start_again() {
            // Stopped, and the drive reset: the block layer stops the disk and
            // completes what was to be issued again.
            return DeviceHealth::MustStop(failure);
        }
        if retry != 0 {
            log::warn!("Ahci: port {}: issuing slots {retry:#x} again after the error", self.number);
            if self.ncq {
                self.write(PX_SACT, retry);
            }
            self.write(PX_CI, retry);
        }
        DeviceHealth::Running
    }

    /// Sets PxCMD.ST again after recovery, once the drive is neither busy nor
    /// asking for data (AHCI 1.3.1, 10.1.2 and 10.4.2: after a COMRESET the
    /// drive is busy until it has sent its signature). `NotReady` if it stays busy.
    fn start_again(&self) -> Result<(), IoFailure> {
        let ready =
            self.waiter.wait_until(DEVICE_TIMEOUT_MS, &mut || self.read(PX_TFD) & (TFD_BUSY | TFD_DATA_REQUEST) == 0);
        if ready.is_err() {
            let cause = Cause::DeviceError("the drive stayed busy after the reset (PxTFD.BSY or DRQ)");
            return Err(IoFailure::new(IoReturn::NotReady, cause));
        }
        self.write(PX_CMD, self.read(PX_CMD) | CMD_START);
        Ok(())
    }
}
