//! Error recovery.
//!
//! An error stops the port's command processing (AHCI 1.3.1, 6.2.2): the
//! driver then stops the port (PxCMD.ST off, wait for CR) and, under NCQ,
//! always resets the drive (COMRESET): clearing ST stops the HBA, not the
//! drive, which may still hold queued commands and move their data (QEMU's
//! NCQ I/O runs on after ST is cleared; only `ahci_reset_port` cancels it).
//! Only then does it fail the request that went wrong with the device's
//! error, clear PxSERR and PxIS, wait for the drive to be ready (busy after a
//! COMRESET until it has sent its signature), start the port again and issue
//! again the requests the reset took from the drive.
//!
//! **Which NCQ command failed.** The specification's way is the NCQ error log
//! (READ LOG EXT, page 10h). QEMU does not implement READ LOG EXT (its IDE
//! command table has no 2Fh: the drive aborts it), so the driver does not read
//! it. PxSERR is SError, the link's error and diagnostic bits: it never says
//! which command failed, whatever QEMU before 8.2 puts in it (`ncq_err` sets
//! the failed tag's bit there). What the driver goes by:
//!
//! - *the device's error*: an error bit in PxIS (TFES and the HBA's own:
//!   HBFS, HBDS, IFS, OFS) or ERR in PxTFD;
//! - *a link event*: any PxSERR bit. Alone it fails nothing, but QEMU before
//!   8.2 raises no TFES for an NCQ error, and the ERR its Set Device Bits FIS
//!   puts in PxTFD is gone at the next command that completes; its mark in
//!   PxSERR stays. So a link event makes the driver look closer.
//!
//! Either way the other queued commands get a bounded time to drain: one whose
//! PxSACT bit cleared was finished by the drive and completes. A failed
//! command never clears its bit. If none is left, that is all. Otherwise the
//! port is stopped and the drive reset, and then: with the device's error and
//! one command left, that one failed (with the device's error); with several
//! left (a real drive aborts them all), which one failed is unknown, so they
//! are all issued again; after a link event alone, they are issued again too
//! (on QEMU 7.2 the failed one fails again, and alone its ERR stays in PxTFD).
//! Issued together, commands are issued again at most [`MOST_REISSUES`] times:
//! then, with the device's error, they are issued one at a time (new commands
//! wait, `AhciCause::FindingFailedCommand`), so that the next error, with one
//! command on the drive, names its command, which alone fails; the others
//! complete as the drive finishes them. After a link event alone, they are
//! left to the drive (and the block layer's timeout).
//!
//! A port whose command engine will not stop, not even after a COMRESET, may
//! still run what it holds and move its data, and clearing PxCMD.ST has zeroed
//! PxCI and PxSACT, so nothing tells when it is done: recovery completes
//! nothing and says [`DeviceHealth::MustStop`] with
//! [`Cause::DeviceWouldNotStop`]; the block layer quiesces the port and
//! abandons what it held if it still runs.

use dmakit::block::{DeviceHealth, DeviceOutcome, Slot};
use dmakit::dma::{AhciCause, Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::port::{AhciPort, PortState, slots_in};
use super::registers::*;

/// How long error recovery lets the other queued commands finish.
const DRAIN_TIMEOUT_MS: u64 = 100;
/// How many times recovery issues one command again before it gives up on it.
pub(super) const MOST_REISSUES: u8 = 2;

/// What a look at the port found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Signs {
    /// PxIS error bits (from the look or the interrupt handler).
    pub(super) errors: u32,
    /// PxTFD.
    pub(super) task_file: u32,
    /// PxSERR, under NCQ: link events, never a command's failure.
    pub(super) link: u32,
}

impl Signs {
    /// The device or the HBA reported an error (more than a link event).
    pub(super) fn device_error(&self) -> bool {
        self.errors != 0 || self.task_file & TFD_ERROR != 0
    }

    /// The failure these signs make: the IOKit code and the typed cause.
    pub(super) fn failure(self) -> IoFailure {
        let (code, meaning) = describe(self);
        let cause = AhciCause::CommandFailed { interrupts: self.errors, task_file: self.task_file, meaning };
        IoFailure::new(code, Cause::Ahci(cause))
    }

    /// These signs and a later look's: the task file that shows the error wins.
    fn and(self, later: Signs) -> Signs {
        let task_file = if later.task_file & TFD_ERROR != 0 { later.task_file } else { self.task_file };
        Signs { errors: self.errors | later.errors, task_file, link: self.link | later.link }
    }
}

/// What recovery does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Only the link spoke, and a reset would gain nothing (no command is
    /// left, or those left were issued again often enough): what is left
    /// stays with the drive.
    LeaveToDrive,
    /// Stop the port (with a COMRESET under NCQ), then fail `failed` with
    /// `failure` and issue `reissued` again.
    Reset {
        /// Slots that fail.
        failed: u32,
        /// Slots issued again.
        reissued: u32,
        /// Slots held back, to be issued one at a time after `reissued`.
        held_back: u32,
        /// Why the failed ones failed.
        failure: IoFailure,
    },
}

/// The IOKit code and words for a command that ended with `signs`.
fn describe(signs: Signs) -> (IoReturn, &'static str) {
    let (errors, task_file) = (signs.errors, signs.task_file);
    if errors & IS_HOST_BUS_FATAL != 0 {
        (IoReturn::DmaError, "host bus fatal error (PxIS.HBFS): the HBA could not reach memory")
    } else if errors & IS_HOST_BUS_DATA != 0 {
        (IoReturn::DmaError, "host bus data error (PxIS.HBDS)")
    } else if errors & IS_OVERFLOW != 0 {
        (IoReturn::DmaError, "overflow (PxIS.OFS): the drive sent more data than the PRDT holds")
    } else if errors & IS_INTERFACE_FATAL != 0 {
        (IoReturn::IoError, "SATA interface fatal error (PxIS.IFS)")
    } else if task_file & (TFD_BUSY | TFD_DATA_REQUEST) != 0 {
        // ATA: with BSY set the other bits mean nothing, and DRQ asks for
        // data; neither can end a command.
        (IoReturn::IoError, "the drive shows BSY or DRQ for a command the port finished: not a state ATA allows")
    } else if task_file & TFD_UNCORRECTABLE != 0 {
        (IoReturn::IoError, "uncorrectable data error (task-file ERR, UNC)")
    } else if task_file & TFD_NOT_FOUND != 0 {
        (IoReturn::IoError, "sector not found (task-file ERR, IDNF)")
    } else if task_file & TFD_INTERFACE_CRC != 0 {
        (IoReturn::IoError, "interface CRC error (task-file ERR, ICRC)")
    } else if task_file & TFD_FAULT != 0 {
        (IoReturn::IoError, "device fault (task-file DF)")
    } else if task_file & TFD_ERROR != 0 && task_file & TFD_ERROR_REGISTER == 0 {
        (IoReturn::IoError, "the drive set ERR with an empty error register: not a state ATA allows")
    } else if task_file & TFD_ABORTED != 0 {
        (IoReturn::IoError, "the drive aborted the command (task-file ERR, ABRT)")
    } else {
        (IoReturn::IoError, "the drive reported an error (task-file ERR)")
    }
}

/// The NCQ verdict for the commands `still` held after the drain, given the
/// `signs` and whether one of them was issued again [`MOST_REISSUES`] times.
pub(super) fn ncq_verdict(signs: Signs, still: u32, exhausted: bool) -> Verdict {
    let device = signs.failure();
    let reset = |failed, reissued, failure| Verdict::Reset { failed, reissued, held_back: 0, failure };
    match (signs.device_error(), still.count_ones()) {
        (false, 0) => Verdict::LeaveToDrive,
        (false, _) if exhausted => Verdict::LeaveToDrive,
        // The HBA stopped at the error: stopped and started again, it runs.
        (true, 0) => reset(0, 0, device),
        // The failed command never clears its PxSACT bit: the one left is it.
        (true, 1) => reset(still, 0, device),
        // Issued together again and again, they fail together: one at a time
        // from here, so that the next error names its command.
        (true, _) if exhausted => {
            let first = still & still.wrapping_neg();
            Verdict::Reset { failed: 0, reissued: first, held_back: still & !first, failure: device }
        }
        // Which one failed is unknown, or none did (a link event): the reset
        // takes them from the drive, so they go to it again.
        _ => reset(0, still, device),
    }
}

impl<R: RegisterIo> AhciPort<R> {
    /// Error recovery (see the module's comment), after a look found `signs`.
    pub(super) fn recover(
        &self,
        state: &mut PortState,
        signs: Signs,
        finished: &mut dyn FnMut(Slot, DeviceOutcome),
    ) -> DeviceHealth {
        let outstanding = state.issued();
        let (signs, verdict) = if self.ncq {
            let still = self.drain(state, outstanding, finished);
            let signs = signs.and(self.look());
            let reissued_enough =
                |slot: usize| state.slots[slot].as_ref().is_some_and(|held| held.reissues >= MOST_REISSUES);
            let exhausted = slots_in(still).any(reissued_enough);
            (signs, ncq_verdict(signs, still, exhausted))
        } else {
            // The one command ended with the error.
            let failure = signs.failure();
            (signs, Verdict::Reset { failed: outstanding, reissued: 0, held_back: 0, failure })
        };
        let (errors, task_file, link) = (signs.errors, signs.task_file, signs.link);
        let Verdict::Reset { failed, reissued, held_back, failure } = verdict else {
            log::warn!("Ahci: port {}: link event (PxSERR {link:#x}); no command failed", self.number);
            self.write(PX_SERR, link);
            return DeviceHealth::Running;
        };
        log::error!("Ahci: port {}: error (PxIS {errors:#x}, PxTFD {task_file:#x}, PxSERR {link:#x})", self.number);
        if !self.stop_for_recovery() {
            // The port may still run what it holds, and PxCI/PxSACT no longer
            // say what that is: nothing it holds comes back from here.
            log::error!("Ahci: port {}: would not stop for error recovery (PxCMD.CR stayed set)", self.number);
            return DeviceHealth::MustStop(IoFailure::new(IoReturn::IoError, Cause::DeviceWouldNotStop));
        }
        if failed != 0 {
            log::error!("Ahci: port {}: slots {failed:#x} fail: {failure}", self.number);
        }
        for slot in slots_in(failed) {
            self.finish_slot(state, slot, Err(failure), finished);
        }
        if let Err(failure) = self.start_again() {
            // Stopped, and the drive reset: the block layer stops the disk and
            // completes what was to be issued again.
            log::error!("Ahci: port {}: not started again after the error: {failure}", self.number);
            return DeviceHealth::MustStop(failure);
        }
        if held_back != 0 {
            log::warn!("Ahci: port {}: slots {held_back:#x} wait, to be issued one at a time", self.number);
            state.held_back |= held_back;
        }
        if reissued != 0 {
            log::warn!("Ahci: port {}: slots {reissued:#x} are issued again after the reset", self.number);
            for slot in slots_in(reissued) {
                if let Some(held) = state.slots[slot].as_mut() {
                    held.reissues += 1;
                }
            }
            if self.ncq {
                // A flush issued again stays non-queued: PxCI only.
                self.write(PX_SACT, reissued & !state.flushes());
            }
            self.write(PX_CI, reissued);
        }
        DeviceHealth::Running
    }

    /// Lets the queued commands other than the failed one finish (a bounded
    /// wait), completes those the drive finished, and returns the slots left.
    fn drain(&self, state: &mut PortState, outstanding: u32, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> u32 {
        let held = || (self.read(PX_SACT) | self.read(PX_CI)) & outstanding;
        let _ = self.waiter.wait_until(DRAIN_TIMEOUT_MS, &mut || held().count_ones() <= 1);
        let still = held();
        for slot in slots_in(outstanding & !still) {
            self.finish_slot(state, slot, Ok(()), finished);
        }
        still
    }

    /// The error signs the port shows now (taking PxIS's error bits).
    fn look(&self) -> Signs {
        let errors = self.take_errors();
        Signs { errors, task_file: self.read(PX_TFD), link: self.read(PX_SERR) }
    }

    /// AHCI 1.3.1, 6.2.2.1: stops the command engine, with a COMRESET if it
    /// will not stop, if the drive stays busy, and always under NCQ (see the
    /// module's comment); then clears PxSERR and PxIS. Whether it stopped.
    fn stop_for_recovery(&self) -> bool {
        let mut stopped = self.stop_command_engine();
        if !stopped || self.ncq || self.drive_busy() {
            self.port_reset();
            stopped = self.stop_command_engine();
        }
        // What the handler saw before the reset is old news.
        self.clear_errors();
        stopped
    }

    /// Sets PxCMD.ST again after recovery, once the drive is neither busy nor
    /// asking for data (AHCI 1.3.1, 10.1.2 and 10.4.2: after a COMRESET the
    /// drive is busy until it has sent its signature). `NotReady` if it stays busy.
    fn start_again(&self) -> Result<(), IoFailure> {
        self.wait_drive_ready()?;
        self.write(PX_CMD, self.read(PX_CMD) | CMD_START);
        Ok(())
    }
}
