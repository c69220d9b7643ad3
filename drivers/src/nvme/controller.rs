//! The controller's register handshakes: a stop's normal shutdown (CC.SHN =
//! 01b, CSTS.SHST = 10b awaited within CAP.TO), disable (CC.EN = 0, then
//! CSTS.RDY = 0 awaited within CAP.TO), enable (CSTS.RDY = 1 awaited, CSTS.CFS watched),
//! and one admin command at a time, waited for on the admin queue.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use dmakit::dma::{Cause, ControllerField, DeviceStatus, IoFailure, IoReturn, NvmeCause, NvmeStatus};
use dmakit::io::RegisterIo;
use dmakit::time::Waiter;

use super::queue::QueuePair;
use super::registers::*;
use super::structures::{CompletionEntry, SubmissionEntry};

/// Queue pairs the driver rings doorbells of: admin (0) and I/O (1).
const QUEUE_PAIRS: u16 = 2;
/// Bytes a register offset (16 bits) reaches.
pub const REGISTER_OFFSET_REACH: u64 = 1 << 16;

/// How long an admin command may take.
const ADMIN_TIMEOUT_MS: u64 = 5_000;

/// What a stop's shutdown notification came to (a controller that never
/// reported it is an `Err` with `ShutdownIncomplete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// CSTS.SHST said 10b: what it cached is on the medium.
    Complete,
    /// Not asked: the controller was not running (CC.EN or CSTS.RDY 0).
    SkippedNotRunning,
    /// Not asked: CSTS.CFS, a dead controller never reports it.
    SkippedFatal,
}

/// A controller's registers and what CAP says about them.
pub struct Controller<R: RegisterIo> {
    /// BAR 0.
    pub registers: Arc<R>,
    /// CAP, decoded.
    pub capabilities: Capabilities,
    /// How the driver waits for the controller.
    pub waiter: &'static dyn Waiter,
    /// Whether the last disable was confirmed (CSTS.RDY seen 0) and nothing
    /// enabled the controller since: only then is it known not to run. A
    /// controller found at boot is not known to be stopped.
    confirmed_disabled: AtomicBool,
}

/// Status code types 4 to 6 are reserved: no controller writes them.
const RESERVED_STATUS_TYPES: core::ops::RangeInclusive<u16> = 4..=6;
/// CRD (13:12), More (14) and Do Not Retry (15): they qualify an error; a
/// success with any of them set cannot occur.
const ERROR_QUALIFIERS: u16 = 0xf << 12;

/// The failure of the command `completion` (on queue `queue`) ended; `Ok` for
/// success. A status field that cannot occur fails the command by name.
pub fn status_result(queue: u16, completion: &CompletionEntry) -> Result<(), IoFailure> {
    let status = completion.status;
    let decoded = NvmeStatus::decode(status);
    let reserved = RESERVED_STATUS_TYPES.contains(&((status >> 9) & 0x7));
    if reserved || (decoded.is_none() && status & ERROR_QUALIFIERS != 0) {
        let cause = NvmeCause::StatusImpossible { queue, command: completion.command_id, status };
        return Err(IoFailure::new(IoReturn::IoError, Cause::Nvme(cause)));
    }
    match decoded {
        None => Ok(()),
        Some(decoded) => {
            let cause = NvmeCause::Status { status: decoded, do_not_retry: status & (1 << 15) != 0 };
            Err(IoFailure::new(IoReturn::IoError, Cause::Nvme(cause)))
        }
    }
}

impl<R: RegisterIo> Controller<R> {
    /// Reads CAP and checks the controller is one the driver drives: the NVM
    /// command set, 4 KiB pages, and the doorbells of both queue pairs, as far
    /// apart as CAP.DSTRD says, inside the `mapped` bytes of registers.
    pub fn new(registers: Arc<R>, mapped: u64, waiter: &'static dyn Waiter) -> Result<Controller<R>, IoFailure> {
        let capabilities = Capabilities::decode(registers.read64(CAP));
        let needed = capabilities.doorbells_end(QUEUE_PAIRS);
        // A 16-bit register offset reaches 64 KiB, whatever is mapped.
        if needed > mapped.min(REGISTER_OFFSET_REACH) {
            let cause = NvmeCause::DoorbellsOutsideRegisters { needed, mapped };
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)));
        }
        // MQES is 0-based: 0 would be queues of one entry, which hold nothing.
        if capabilities.max_queue_entries < 2 {
            let value = u64::from(capabilities.max_queue_entries - 1);
            let cause = NvmeCause::ImpossibleValue { field: ControllerField::MaximumQueueEntries, value };
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)));
        }
        if !capabilities.nvm_command_set {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(NvmeCause::NoNvmCommandSet)));
        }
        if capabilities.min_page_size > PAGE_SIZE {
            let cause = NvmeCause::PageSizeUnsupported { minimum: capabilities.min_page_size };
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)));
        }
        Ok(Controller { registers, capabilities, waiter, confirmed_disabled: AtomicBool::new(false) })
    }

    /// CSTS and CC, for a timeout's cause.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus::Nvme { status: self.registers.read32(CSTS), configuration: self.registers.read32(CC) }
    }

    /// Clears CC.EN and waits for CSTS.RDY to clear: only then does the
    /// controller no longer touch its queues or any data. `DidNotStop` if it
    /// stays ready past CAP.TO: what it was given must be abandoned.
    pub fn disable(&self) -> Result<(), IoFailure> {
        let configuration = self.registers.read32(CC);
        self.registers.write32(CC, configuration & !CC_ENABLE);
        let timeout = self.capabilities.ready_timeout_ms.max(500);
        let ready = || self.registers.read32(CSTS) & CSTS_READY != 0;
        let stopped = self.waiter.wait_until(timeout, &mut || !ready()).map_err(|_| {
            IoFailure::new(IoReturn::Timeout, Cause::Nvme(NvmeCause::DidNotStop { milliseconds: timeout }))
        });
        self.confirmed_disabled.store(stopped.is_ok(), Ordering::Release);
        stopped
    }

    /// A normal shutdown, before a stop's disable: CC.SHN = 01b with CC.EN
    /// kept, then CSTS.SHST = 10b awaited within CAP.TO, so that the
    /// controller finishes what it holds and puts its cache on the medium. A
    /// controller that is not running (CSTS.RDY 0) has nothing to shut down,
    /// and a dead one (CSTS.CFS) would never report it: both are skipped.
    /// `ShutdownIncomplete` if SHST never says complete; the caller disables
    /// the controller all the same.
    pub fn shut_down(&self) -> Result<Shutdown, IoFailure> {
        let status = self.registers.read32(CSTS);
        if status & CSTS_FATAL != 0 {
            return Ok(Shutdown::SkippedFatal);
        }
        let configuration = self.registers.read32(CC);
        if configuration & CC_ENABLE == 0 || status & CSTS_READY == 0 {
            return Ok(Shutdown::SkippedNotRunning);
        }
        self.registers.write32(CC, configuration & !CC_SHUTDOWN_MASK | CC_SHUTDOWN_NORMAL);
        let timeout = self.capabilities.ready_timeout_ms.max(500);
        let complete = || ShutdownStatus::of(self.registers.read32(CSTS)) == ShutdownStatus::Complete;
        self.waiter.wait_until(timeout, &mut || complete()).map(|()| Shutdown::Complete).map_err(|_| {
            let shutdown_status = ShutdownStatus::of(self.registers.read32(CSTS)).bits();
            let cause = NvmeCause::ShutdownIncomplete { milliseconds: timeout, shutdown_status };
            IoFailure::new(IoReturn::Timeout, Cause::Nvme(cause))
        })
    }

    /// Whether the controller may still be running: it was enabled, or a
    /// disable was asked for and never confirmed, or nothing is known yet.
    pub fn may_be_running(&self) -> bool {
        !self.confirmed_disabled.load(Ordering::Acquire)
    }

    /// Sets CC (4 KiB pages, NVM command set, standard entry sizes) with EN
    /// and waits for CSTS.RDY; a fatal status (CFS) ends the wait at once.
    pub fn enable(&self) -> Result<(), IoFailure> {
        // Running from this write on, whatever the wait says.
        self.confirmed_disabled.store(false, Ordering::Release);
        self.registers.write32(CC, CC_CONFIGURATION | CC_ENABLE);
        let timeout = self.capabilities.ready_timeout_ms.max(500);
        let waited =
            self.waiter.wait_until(timeout, &mut || self.registers.read32(CSTS) & (CSTS_READY | CSTS_FATAL) != 0);
        let status = self.registers.read32(CSTS);
        if status & CSTS_FATAL != 0 {
            return Err(IoFailure::new(IoReturn::IoError, Cause::Nvme(NvmeCause::ControllerFatal)));
        }
        waited.map_err(|_| {
            IoFailure::new(IoReturn::Timeout, Cause::Nvme(NvmeCause::DidNotBecomeReady { milliseconds: timeout }))
        })
    }

    /// Gives the admin queue to the controller (before `enable`).
    pub fn set_admin_queue(&self, admin: &QueuePair) {
        let entries = admin.entries();
        self.registers.write32(AQA, admin_queue_attributes(entries, entries));
        self.registers.write64(ASQ, admin.submission_address());
        self.registers.write64(ACQ, admin.completion_address());
    }

    /// Runs one admin command and waits for its completion; its status decides.
    pub fn admin_command(&self, admin: &mut QueuePair, entry: SubmissionEntry) -> Result<CompletionEntry, IoFailure> {
        admin.submit(&*self.registers, entry)?;
        let mut completion = Ok(None);
        let waited = self.waiter.wait_until(ADMIN_TIMEOUT_MS, &mut || {
            completion = admin.next_completion();
            !matches!(completion, Ok(None))
        });
        admin.release_completions(&*self.registers);
        if waited.is_err() {
            let cause = Cause::TimedOut { milliseconds: ADMIN_TIMEOUT_MS, last: Some(self.status()) };
            return Err(IoFailure::new(IoReturn::Timeout, cause));
        }
        let completion = completion?.expect("the wait ended on a completion");
        status_result(admin.id(), &completion).map(|()| completion)
    }
}
