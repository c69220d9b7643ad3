//! One AHCI port with a disk on it: the memory the HBA reads (command list,
//! received-FIS area, one command table per slot), bringing the port up and
//! down, and the [`HardwareQueue`] the block layer drives.
//!
//! One request, step by step:
//! 1. the block layer prepares the request's buffer under the port's
//!    specification (64-bit or 32-bit addresses, even lengths, at most one PRDT
//!    of entries of at most 4 MiB; what the HBA cannot reach is bounced) and
//!    lends it to `program`;
//! 2. each segment becomes a typed [`PrdtEntry`] in the slot's command table,
//!    after the command FIS (READ or WRITE FPDMA QUEUED with the tag in the
//!    count field under NCQ, READ or WRITE DMA EXT without), and the slot's
//!    command header points at the table;
//! 3. PxSACT (NCQ) then PxCI get the slot's bit: the HBA owns the buffer;
//! 4. `collect` (see `completion.rs`) finds the slots whose bits cleared and
//!    reports the bytes moved; the block layer completes their transfers.
//!
//! A flush is FLUSH CACHE EXT (or FLUSH CACHE), a non-queued command with no
//! PRDT, issued through PxCI alone. ATA forbids a non-queued command while
//! queued ones are outstanding, and a queued one while it runs: `admit` keeps
//! a flush waiting until the port's slots are empty, and new commands waiting
//! while a flush runs (`Busy`, so the block layer tries again in order).
//!
//! No memory goes back while the port may use it: the command list, FIS area
//! and tables are released only after PxCMD.ST and PxCMD.FRE are off and the
//! engines say so (CR, FR clear), or after a port reset when they do not.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use dmakit::block::{
    BlockCommand, BlockOperation, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Slot, SlotCommand,
};
use dmakit::dma::{
    AhciCause, ByteCount, Cause, DeviceStatus, DmaPlatform, FromSegment, IoDirection, IoFailure, IoReturn,
    LentTransfer, Segment, SegmentPosition, Specification,
};
use dmakit::io::RegisterIo;
use dmakit::time::Waiter;
use spin::Mutex;

use super::hba::Capabilities;
use super::identify::DriveIdentity;
use super::memory::PortMemory;
use super::registers::*;
use super::structures::*;
use crate::ata::identify::CacheFlush;

/// How long the command list or FIS receive engine may take to stop (AHCI
/// 1.3.1 gives each 500 ms).
pub(super) const STOP_TIMEOUT_MS: u64 = 500;
/// How long IDENTIFY and a device that comes back from a reset may take.
const DEVICE_TIMEOUT_MS: u64 = 1_000;
/// Most sectors per request (1 MiB): within one PRDT even when the DMA layer
/// bounces the whole transfer into one piece, and modest for the bounce budget.
pub const MAX_REQUEST_SECTORS: u64 = 2048;

/// What the HBA's DMA can do, as a specification for data transfers: the
/// output format PRDT entries are made from, `address_bits` (64 with S64A,
/// else 32), word-aligned regions of at most 4 MiB, one PRDT of them.
pub const fn data_specification(address_bits: u8) -> Specification {
    Specification {
        output: RECORD_FORMAT,
        num_address_bits: address_bits,
        max_segment_size: PRDT_ENTRY_LIMIT,
        max_transfer_size: MAX_REQUEST_SECTORS * SECTOR_SIZE,
        alignment: 2,
        alignment_length: 2,
        alignment_internal_segments: 2,
        max_segments: PRDT_ENTRIES,
        ..Specification::UNLIMITED_64
    }
}

/// What a held command is, for the rule that a non-queued one runs alone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Issued {
    /// A read or write: queued (PxSACT and PxCI) under NCQ.
    Data,
    /// A flush: never queued, PxCI only.
    Flush,
}

/// A request the HBA holds.
pub(super) struct InFlight {
    /// What it is.
    pub(super) issued: Issued,
    /// Bytes the PRDT describes.
    pub(super) length: u64,
    /// Times error recovery issued the command again (`recovery.rs`).
    pub(super) reissues: u8,
}

/// What the port keeps behind its lock.
pub(super) struct PortState {
    /// `None` while the port is stopped (and its memory released or abandoned).
    pub(super) memory: Option<PortMemory>,
    /// The request in each slot.
    pub(super) slots: Vec<Option<InFlight>>,
    /// Slots error recovery holds back, to issue one at a time (`recovery.rs`).
    pub(super) held_back: u32,
}

impl PortState {
    /// The slots holding a request, as a bit mask (bit n: slot n, NCQ tag n).
    pub(super) fn outstanding(&self) -> u32 {
        self.slots.iter().enumerate().filter(|(_, flight)| flight.is_some()).fold(0, |mask, (slot, _)| mask | 1 << slot)
    }

    /// The slots the HBA has been given: those held, less those held back.
    pub(super) fn issued(&self) -> u32 {
        self.outstanding() & !self.held_back
    }

    /// The slots holding a flush, as a bit mask: never given PxSACT bits.
    pub(super) fn flushes(&self) -> u32 {
        let flush =
            |(_, flight): &(usize, &Option<InFlight>)| flight.as_ref().is_some_and(|f| f.issued == Issued::Flush);
        self.slots.iter().enumerate().filter(flush).fold(0, |mask, (slot, _)| mask | 1 << slot)
    }
}

/// An AHCI port with a disk: a [`HardwareQueue`] of `depth` slots.
pub struct AhciPort<R: RegisterIo> {
    pub(super) registers: Arc<R>,
    pub(super) number: u8,
    capabilities: Capabilities,
    platform: &'static dyn DmaPlatform,
    pub(super) waiter: &'static dyn Waiter,
    identity: DriveIdentity,
    pub(super) ncq: bool,
    depth: usize,
    pub(super) state: Mutex<PortState>,
    /// PxIS error bits the interrupt handler saw (and cleared), for `collect`.
    pub(super) pending_errors: AtomicU32,
}

/// The slots in `mask`, lowest first.
pub(super) fn slots_in(mask: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |slot| mask & (1 << slot) != 0)
}

impl<R: RegisterIo> AhciPort<R> {
    /// Brings port `number` up: stops it, gives it a command list, FIS area and
    /// tables in memory the HBA reaches, starts it, and asks the drive who it
    /// is. Queues with NCQ when both the HBA and the drive have it.
    pub fn new(
        registers: Arc<R>,
        capabilities: Capabilities,
        number: u8,
        platform: &'static dyn DmaPlatform,
        waiter: &'static dyn Waiter,
    ) -> Result<AhciPort<R>, IoFailure> {
        let mut port = AhciPort {
            registers,
            number,
            capabilities,
            platform,
            waiter,
            identity: DriveIdentity {
                sectors: 0,
                ncq: false,
                queue_depth: 1,
                model: String::new(),
                flush: CacheFlush::NoCache,
            },
            ncq: false,
            depth: 1,
            state: Mutex::new(PortState {
                memory: None,
                slots: (0..COMMAND_SLOTS).map(|_| None).collect(),
                held_back: 0,
            }),
            pending_errors: AtomicU32::new(0),
        };
        port.bring_up()?;
        // On an error from here the port is dropped, which stops it first.
        let identity = port.identify()?;
        port.ncq = capabilities.ncq && identity.ncq;
        port.depth = match port.ncq {
            true => identity.queue_depth.min(capabilities.slots).min(COMMAND_SLOTS),
            false => 1,
        };
        port.identity = identity;
        Ok(port)
    }

    pub(super) fn read(&self, register: u16) -> u32 {
        self.registers.read32(port_register(self.number, register))
    }

    pub(super) fn write(&self, register: u16, value: u32) {
        self.registers.write32(port_register(self.number, register), value)
    }

    /// The drive's identity.
    pub fn identity(&self) -> &DriveIdentity {
        &self.identity
    }

    /// Whether requests are queued with NCQ.
    pub fn uses_ncq(&self) -> bool {
        self.ncq
    }

    /// The port's number on its HBA.
    pub fn number(&self) -> u8 {
        self.number
    }

    /// Clears `flag` in PxCMD and waits until `running` clears too.
    fn stop_engine(&self, flag: u32, running: u32) -> bool {
        self.write(PX_CMD, self.read(PX_CMD) & !flag);
        self.waiter.wait_until(STOP_TIMEOUT_MS, &mut || self.read(PX_CMD) & running == 0).is_ok()
    }

    /// Stops the command list engine: PxCMD.ST off, then PxCMD.CR clear.
    pub(super) fn stop_command_engine(&self) -> bool {
        self.stop_engine(CMD_START, CMD_LIST_RUNNING)
    }

    /// Stops the FIS receive engine: PxCMD.FRE off, then PxCMD.FR clear.
    fn stop_fis_engine(&self) -> bool {
        self.stop_engine(CMD_FIS_RECEIVE, CMD_FIS_RUNNING)
    }

    /// COMRESET (AHCI 1.3.1, 10.4.2): PxSCTL.DET = 1 for at least a
    /// millisecond, then 0; the link comes back and the device resets. A
    /// SATA device aborts every command it held; QEMU cancels the I/O it had
    /// started for them (`ahci_reset_port`).
    pub(super) fn port_reset(&self) {
        let control = self.read(PX_SCTL) & !SSTS_DETECTION_MASK;
        self.write(PX_SCTL, control | SCTL_RESET);
        let _ = self.waiter.wait_until(2, &mut || false);
        self.write(PX_SCTL, control);
        let present = || self.read(PX_SSTS) & SSTS_DETECTION_MASK == SSTS_DEVICE_PRESENT;
        let _ = self.waiter.wait_until(DEVICE_TIMEOUT_MS, &mut || present());
        self.write(PX_SERR, u32::MAX);
    }

    /// Whether the drive is busy or asking for data (PxTFD.BSY or DRQ): then no
    /// command may be issued, nor the command engine started (AHCI 1.3.1, 10.1.2).
    pub(super) fn drive_busy(&self) -> bool {
        self.read(PX_TFD) & (TFD_BUSY | TFD_DATA_REQUEST) != 0
    }

    /// Waits until the drive is not busy (after a reset it is, until it sent
    /// its signature); `NotReady` with `DriveStayedBusy` if it stays so.
    pub(super) fn wait_drive_ready(&self) -> Result<(), IoFailure> {
        if self.waiter.wait_until(DEVICE_TIMEOUT_MS, &mut || !self.drive_busy()).is_ok() {
            return Ok(());
        }
        let cause = Cause::Ahci(AhciCause::DriveStayedBusy { task_file: self.read(PX_TFD) });
        Err(IoFailure::new(IoReturn::NotReady, cause))
    }

    /// Forgets every error and event the port recorded: PxSERR, PxIS and what
    /// the interrupt handler kept for `collect`.
    pub(super) fn clear_errors(&self) {
        self.write(PX_SERR, u32::MAX);
        self.clear_interrupts();
        self.pending_errors.store(0, Ordering::Relaxed);
    }

    /// Takes the port's error interrupt bits: those in PxIS now (cleared) and
    /// those the interrupt handler saw before.
    pub(super) fn take_errors(&self) -> u32 {
        let seen = self.read(PX_IS) & IS_ERRORS;
        if seen != 0 {
            self.write(PX_IS, seen);
        }
        self.pending_errors.swap(0, Ordering::AcqRel) | seen
    }

    /// Clears the port's interrupt status and its bit in the HBA's.
    pub(super) fn clear_interrupts(&self) {
        self.write(PX_IS, u32::MAX);
        self.registers.write32(IS, 1 << self.number);
    }

    /// Stops both engines (a port reset when one will not stop); says whether
    /// they stopped, so that the port's memory may go back.
    fn stop_engines(&self) -> bool {
        let mut stopped = self.stop_command_engine() && self.stop_fis_engine();
        if !stopped {
            self.port_reset();
            stopped = self.stop_command_engine() && self.stop_fis_engine();
        }
        stopped
    }

    /// Stops the port and gives it memory, then starts it (AHCI 1.3.1, 10.1.2).
    fn bring_up(&self) -> Result<(), IoFailure> {
        if !self.stop_engines() {
            let cause = Cause::Ahci(AhciCause::EnginesWouldNotStop);
            return Err(IoFailure::new(IoReturn::Busy, cause));
        }
        let memory = PortMemory::allocate(self.platform, self.capabilities.address_bits())?;
        let list = memory.command_list.device_address().as_u64();
        let fis = memory.received_fis.device_address().as_u64();
        self.write(PX_CLB, list as u32);
        self.write(PX_CLBU, (list >> 32) as u32);
        self.write(PX_FB, fis as u32);
        self.write(PX_FBU, (fis >> 32) as u32);
        self.write(PX_CMD, self.read(PX_CMD) | CMD_FIS_RECEIVE);
        // The errors and events of the reset are old news.
        self.clear_errors();
        if let Err(failure) = self.wait_drive_ready() {
            if self.stop_engines() {
                memory.release();
            }
            return Err(failure);
        }
        self.write(PX_IE, IE_ENABLED);
        self.write(PX_CMD, self.read(PX_CMD) | CMD_START | CMD_SPIN_UP | CMD_POWER_ON);
        self.state.lock().memory = Some(memory);
        Ok(())
    }

    /// Stops the port and releases its memory (or leaves it, leaked, when the
    /// port will not stop). Dropping the port does this.
    fn shut_down(&self) {
        let memory = self.state.lock().memory.take();
        if let Some(memory) = memory {
            if self.stop_engines() {
                memory.release();
            } else {
                log::error!("Ahci: port {} would not stop: its memory is left to it", self.number);
            }
        }
    }

    /// IDENTIFY DEVICE through slot 0, polled, with the data moved by DMA into
    /// the port's own IDENTIFY area (no request's buffer is involved).
    fn identify(&self) -> Result<DriveIdentity, IoFailure> {
        let fis = RegisterFis::command(COMMAND_IDENTIFY, 0, 0, 0, 0);
        {
            let state = self.state.lock();
            let memory = state.memory.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
            let area = Segment { address: memory.identify.device_address(), length: SECTOR_SIZE };
            let entry = PrdtEntry::from_segment(area, SegmentPosition::Only, IoDirection::In)?;
            memory.load_slot(0, &[entry], fis, 0)?;
        }
        self.write(PX_CI, 1);
        let answered = self
            .waiter
            .wait_until(DEVICE_TIMEOUT_MS, &mut || self.read(PX_CI) & 1 == 0 || self.read(PX_IS) & IS_ERRORS != 0);
        let errors = self.read(PX_IS) & IS_ERRORS;
        let status = self.read(PX_TFD);
        self.clear_interrupts();
        if answered.is_err() || errors != 0 || status & TFD_ERROR != 0 {
            // The area is the port's: it goes back with the port's memory, and
            // only once the engines stopped (`shut_down`).
            return Err(match answered {
                Err(_) => {
                    IoFailure::new(IoReturn::Timeout, Cause::TimedOut { milliseconds: DEVICE_TIMEOUT_MS, last: None })
                }
                Ok(()) => {
                    let meaning = "IDENTIFY DEVICE failed";
                    IoFailure::new(
                        IoReturn::IoError,
                        Cause::Ahci(AhciCause::CommandFailed { interrupts: errors, task_file: status, meaning }),
                    )
                }
            });
        }
        let mut bytes = [0u8; 512];
        let state = self.state.lock();
        let memory = state.memory.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        memory.identify.read_bytes(0, &mut bytes)?;
        DriveIdentity::from_bytes(&bytes)
    }

    /// The command FIS for a request in `slot`.
    fn command_fis(&self, operation: BlockOperation, lba: u64, count: u64, slot: usize) -> RegisterFis {
        // Requests are at most MAX_REQUEST_SECTORS: the count fits 16 bits.
        let sectors = count as u16;
        match (self.ncq, operation) {
            (true, BlockOperation::Read) => {
                RegisterFis::command(COMMAND_READ_FPDMA_QUEUED, lba, (slot as u16) << 3, sectors, DEVICE_LBA)
            }
            (true, BlockOperation::Write) => {
                RegisterFis::command(COMMAND_WRITE_FPDMA_QUEUED, lba, (slot as u16) << 3, sectors, DEVICE_LBA)
            }
            (false, BlockOperation::Read) => RegisterFis::command(COMMAND_READ_DMA_EXT, lba, sectors, 0, DEVICE_LBA),
            (false, BlockOperation::Write) => RegisterFis::command(COMMAND_WRITE_DMA_EXT, lba, sectors, 0, DEVICE_LBA),
        }
    }

    /// Ends the request in `slot` and reports it with the bytes moved (none
    /// after an error). A non-queued command's PRDBC is the HBA's count; one
    /// above what was prepared fails the command (`ByteCountAboveRequest`). An NCQ command has no count to read:
    /// nothing makes an HBA keep PRDBC for FPDMA commands, QEMU does not (its
    /// NCQ completion writes only the Set Device Bits FIS, which carries no
    /// count), so success means the
    /// whole length, as ATA ends an FPDMA command with success only once every
    /// sector moved. A drive that lies about it is trusted here; what that
    /// does to unfilled bounce memory is in docs/drivers.md ("How many bytes
    /// an NCQ command moved"). The block layer completes the transfer.
    pub(super) fn finish_slot(
        &self,
        state: &mut PortState,
        slot: usize,
        result: Result<(), IoFailure>,
        finished: &mut dyn FnMut(Slot, DeviceOutcome),
    ) {
        let Some(InFlight { length, .. }) = state.slots[slot].take() else {
            return;
        };
        let count = match (&result, &state.memory) {
            (Ok(()), Some(memory)) if !self.ncq => memory.bytes_moved(slot),
            (Ok(()), _) => length,
            (Err(_), _) => 0,
        };
        // The HBA moves data only through the PRDT: a count above it is not
        // a count, and the command's data is not believed either.
        let (moved, result) = match count {
            count if count > length => {
                let cause =
                    AhciCause::ByteCountAboveRequest { slot: slot as u8, count: count as u32, prepared: length };
                (0, Err(IoFailure::new(IoReturn::IoError, Cause::Ahci(cause))))
            }
            count => (count, result),
        };
        finished(slot, DeviceOutcome { moved, result });
    }
}

impl<R: RegisterIo> Drop for AhciPort<R> {
    /// A port that goes away (a disk whose block layer could not be made, or
    /// one dropped with the driver) is stopped before its memory goes back, as
    /// virtio resets its device and the IDE channel stops its engine.
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl<R: RegisterIo> HardwareQueue for AhciPort<R> {
    fn shape(&self) -> DiskShape {
        DiskShape {
            driver_name: "Ahci",
            block_size: SECTOR_SIZE as u32,
            block_count: self.identity.sectors,
            depth: self.depth,
            max_request_blocks: MAX_REQUEST_SECTORS,
            specification: data_specification(self.capabilities.address_bits()),
            platform: self.platform,
            write_cache: self.identity.flush.write_cache(),
            // Without NCQ the HBA counts the bytes (PRDBC); under NCQ it only
            // sets the tag's bit, and the whole length is assumed.
            byte_count: if self.ncq { ByteCount::Assumed } else { ByteCount::Reported },
        }
    }

    fn description(&self) -> String {
        let queue = match self.ncq {
            true => format!("NCQ depth {}", self.depth),
            false => String::from("no NCQ"),
        };
        let bits = self.capabilities.address_bits();
        format!("AHCI port {}: {} ({queue}, {bits}-bit DMA)", self.number, self.identity.model)
    }

    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        let memory = state.memory.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        if slot >= self.depth || state.slots[slot].is_some() {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::SlotNotFree { slot }));
        }
        let entries: Vec<PrdtEntry> = data.entries()?;
        let fis = self.command_fis(command.operation, command.lba, command.count, slot);
        let flags = if command.operation == BlockOperation::Write { HEADER_WRITE } else { 0 };
        // The HBA is told about the slot only below: an error here leaves it unseen.
        memory.load_slot(slot, &entries, fis, flags)?;
        state.slots[slot] = Some(InFlight { issued: Issued::Data, length: data.length(), reissues: 0 });
        // A queued command's PxSACT bit is set before its PxCI bit (AHCI 1.3.1, 5.3.2.3).
        if self.ncq {
            self.write(PX_SACT, 1 << slot);
        }
        self.write(PX_CI, 1 << slot);
        Ok(())
    }

    fn admit(&self, command: &SlotCommand) -> Result<(), IoFailure> {
        let state = self.state.lock();
        let busy = |cause| Err(IoFailure::new(IoReturn::Busy, Cause::Ahci(cause)));
        // While recovery isolates the failed NCQ command, one command runs at a time.
        if state.held_back != 0 {
            return busy(AhciCause::FindingFailedCommand);
        }
        // A flush runs alone: after what the port holds, before what follows.
        match command {
            SlotCommand::Flush if state.outstanding() != 0 => busy(AhciCause::FlushRunsAlone),
            SlotCommand::Transfer(_) if state.flushes() != 0 => busy(AhciCause::FlushRunsAlone),
            _ => Ok(()),
        }
    }

    /// A non-queued FLUSH CACHE EXT (or FLUSH CACHE): a command FIS and no
    /// PRDT, PxCI only. Refused (`Busy`) while the port holds any command,
    /// whatever `admit` said, so that it never meets a queued one.
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        let memory = state.memory.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        if slot >= self.depth || state.slots[slot].is_some() {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::SlotNotFree { slot }));
        }
        if state.outstanding() != 0 {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Ahci(AhciCause::FlushRunsAlone)));
        }
        let command = self.identity.flush.command();
        let command = command.ok_or(IoFailure::new(IoReturn::NotPermitted, Cause::Ahci(AhciCause::NoWriteCache)))?;
        memory.load_slot(slot, &[], RegisterFis::command(command, 0, 0, 0, 0), 0)?;
        state.slots[slot] = Some(InFlight { issued: Issued::Flush, length: 0, reissues: 0 });
        self.write(PX_CI, 1 << slot);
        Ok(())
    }

    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        self.collect_finished(finished)
    }

    fn acknowledge_interrupt(&self) -> bool {
        let status = self.read(PX_IS);
        if status == 0 {
            return false;
        }
        self.write(PX_IS, status);
        // `collect` clears nothing it did not see: keep the errors for it.
        self.pending_errors.fetch_or(status & IS_ERRORS, Ordering::AcqRel);
        self.registers.write32(IS, 1 << self.number);
        true
    }

    fn quiesce(&self) -> Quiesced {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(memory) = state.memory.take() else {
            return Quiesced::Stopped;
        };
        let outstanding = state.outstanding();
        let mut stopped = self.stop_command_engine();
        if !stopped || outstanding != 0 {
            // Clearing ST stops the command list engine, but a drive may still
            // hold queued commands (QEMU before 8.2 even keeps moving their
            // data): a port reset makes it drop them.
            self.port_reset();
            stopped = self.stop_command_engine();
        }
        stopped = stopped && self.stop_fis_engine();
        self.clear_interrupts();
        for slot in state.slots.iter_mut() {
            *slot = None;
        }
        state.held_back = 0;
        if stopped {
            memory.release();
            return Quiesced::Stopped;
        }
        log::error!("Ahci: port {} would not stop: its memory is abandoned to it", self.number);
        // Dropped unreleased: leaked and reported, never reused.
        drop(memory);
        let cause = Cause::Ahci(AhciCause::EnginesWouldNotStop);
        Quiesced::StillRunning(IoFailure::new(IoReturn::Timeout, cause))
    }

    fn reopen(&self) -> Result<(), IoFailure> {
        if self.state.lock().memory.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Ahci(AhciCause::PortRunning)));
        }
        self.bring_up()
    }

    fn last_status(&self) -> Option<DeviceStatus> {
        let (task_file, interrupts) = (self.read(PX_TFD), self.read(PX_IS));
        let (issued, active) = (self.read(PX_CI), self.read(PX_SACT));
        Some(DeviceStatus::Ahci { task_file, interrupts, issued, active })
    }
}
