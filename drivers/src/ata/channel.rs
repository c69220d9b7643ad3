//! One IDE channel of a PIIX controller with bus-master DMA, and the disks on it.
//!
//! A channel runs one command at a time, so each drive is a hardware queue of
//! depth one ([`HardwareQueue`]): more requests wait in the block layer's queue,
//! and a request for the other drive of a busy channel is told `Busy` and tried
//! again. A request carries at most what one ATA command takes (256 sectors in
//! LBA28, 2048 in LBA48); the block layer splits larger synchronous transfers.
//! One DMA read, step by step:
//! 1. the block layer prepares the request's buffer under the channel's
//!    specification ([`PIIX_SPECIFICATION`]: 32-bit addresses, regions of at most
//!    64 KiB that never cross a 64 KiB boundary, even lengths, at most one table
//!    of entries; parts above 4 GiB are bounced) and lends it to `program`;
//! 2. program writes the PRD table: each segment becomes one [`PrdEntry`], the
//!    last one marked end-of-table, in the table (a [`CoherentMemory`] below
//!    4 GiB, shared with the controller for the channel's life), and the
//!    controller gets its address;
//! 3. it programs the drive (LBA, count, READ DMA written to `COMMAND`) and
//!    starts the bus-master engine, and returns: the request is in flight;
//! 4. the drive interrupts; the handler only reads the status (so the line
//!    drops) and signals the block layer's work loop;
//! 5. collect, in the work loop: stop the engine (after that write no DMA
//!    happens), check both statuses, and report the bytes the device moved: all
//!    of them on success, none after an error. The block layer completes the
//!    transfer with exactly those. A timeout is the block layer's: it quiesces
//!    the drive, which stops the engine (and resets the channel) before
//!    anything is completed.
//!
//! A flush (FLUSH CACHE EXT or FLUSH CACHE, `channel/flush.rs`) is a no-data
//! command: no PRD table, no engine; it is over when the drive drops BSY.
//!
//! No memory goes back while the engine may use it: the engine is stopped before
//! a slot is reported or quiesced; the controller learns the table's address
//! only per command, so a failed [`Channel::new`] leaves it nothing; dropping
//! the channel stops the engine, then releases the table. Nor does the drive
//! get memory to resume an old command through: a command cut short resets the
//! channel, and no command goes to a drive still in one (`channel/reset.rs`).

mod flush;
mod reset;
mod status;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use dmakit::block::{
    BlockCommand, BlockOperation, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Slot, SlotCommand,
};
use dmakit::dma::{
    AtaCause, ByteCount, Cause, CoherentMemory, DeviceStatus, DmaAddr, DmaPlatform, IoFailure, IoReturn, LentTransfer,
    Specification,
};
use dmakit::io::RegisterIo;
use dmakit::time::Waiter;
use spin::Mutex;

use super::identify::{Addressing, Identity};
use super::prd::{ENTRIES_PER_TABLE, PrdEntry, RECORD_FORMAT, REGION_LIMIT, TABLE_BYTES};
use super::registers::*;

/// How long one command may take.
const COMMAND_TIMEOUT_MS: u64 = 5_000;
/// Most sectors per LBA28 command (a count of 0 means 256).
const LBA28_MAX_SECTORS: u64 = 256;
/// Most sectors per LBA48 command dmakit issues (1 MiB): bounded by the PRD table
/// (512 entries x 64 KiB = 32 MiB) and kept modest for the bounce budget.
const LBA48_MAX_SECTORS: u64 = 2048;

/// What PIIX bus-master DMA can do, as an IoDmaCommand specification. The
/// output format is the one PRD entries are made from.
pub const PIIX_SPECIFICATION: Specification = Specification {
    output: RECORD_FORMAT,
    max_segment_size: REGION_LIMIT,
    max_transfer_size: LBA48_MAX_SECTORS * SECTOR_SIZE,
    alignment: 2,
    alignment_length: 2,
    alignment_internal_segments: 2,
    boundary: REGION_LIMIT,
    max_segments: ENTRIES_PER_TABLE,
    ..Specification::UNLIMITED_32
};

/// Where the PRD table may live: below 4 GiB (the register holds 32 bits),
/// dword aligned, not across a 64 KiB boundary (Intel 82371SB).
const TABLE_SPECIFICATION: Specification =
    Specification { alignment: 4, boundary: REGION_LIMIT, ..Specification::UNLIMITED_32 };

/// How the channel learns that a command finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupts {
    /// The drive raises its interrupt line; the waiter sleeps until it comes.
    Enabled,
    /// The drive's interrupt is masked (nIEN); the waiter polls the status.
    Disabled,
}

/// What each addressing form allows one command (the drive says which it has,
/// [`Identity::addressing`]; the channel picks per command).
impl Addressing {
    /// Most sectors one command carries.
    fn max_sectors(self) -> u64 {
        match self {
            Addressing::Lba28 => LBA28_MAX_SECTORS,
            Addressing::Lba48 => LBA48_MAX_SECTORS,
        }
    }

    /// The form one command uses on a drive that understands `self`: LBA28
    /// reaches 2^28 sectors and 256 per command; beyond that, LBA48.
    fn for_command(self, lba: u64, sectors: u64) -> Addressing {
        let needs_lba48 = lba + sectors > 1 << 28 || sectors > LBA28_MAX_SECTORS;
        match self {
            Addressing::Lba48 if needs_lba48 => Addressing::Lba48,
            _ => Addressing::Lba28,
        }
    }
}

/// The drive a request is for, and how it is addressed.
struct DriveRequest {
    drive: u8,
    addressing: Addressing,
    operation: BlockOperation,
}

/// What one ATA command moves.
struct Chunk {
    lba: u64,
    sectors: u64,
}

/// The one slot of a channel: an IDE channel runs one command at a time.
const ENGINE_SLOT: usize = 0;

/// How the channel learns that a running command ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A DMA command: the engine's interrupt, error or end of table.
    Engine,
    /// A no-data command (a flush): the drive drops BSY; the engine never ran.
    DriveNotBusy,
}

/// The command the channel is running: whose, and what it moves.
struct Running {
    drive: u8,
    lba: u64,
    sectors: u64,
    /// Bytes the PRD table describes (none for a flush).
    bytes: u64,
    ending: Ending,
}

/// What one command uses, behind the channel's lock.
struct Engine {
    /// Shared with the controller while the channel lives; `None` only once
    /// released, after the engine was stopped for good.
    prd_table: Option<CoherentMemory>,
    /// The PRD entries of the last transfer, for teaching and tests.
    last_table: Vec<PrdEntry>,
    /// The command byte of the last transfer.
    last_command: u8,
    /// The command the engine is running, if any.
    in_flight: Option<Running>,
}

/// An IDE channel: its task-file registers, its bus-master registers, its engine.
pub struct Channel<R: RegisterIo> {
    command_block: R,
    control_block: R,
    bus_master: R,
    waiter: &'static dyn Waiter,
    /// Where the controller's DMA goes (the bare machine or its IOMMU domain).
    platform: &'static dyn DmaPlatform,
    engine: Mutex<Engine>,
    interrupts: AtomicU64,
    /// What the device control register's nIEN says, again after each reset.
    interrupt_mode: Interrupts,
    /// The drive last written to the drive register (`NO_DRIVE` before any).
    selected: AtomicU8,
}

/// `Channel::selected` before any drive was selected.
const NO_DRIVE: u8 = u8::MAX;

/// A waiter's error as a failure: a timeout says how long the driver waited.
fn waited_too_long(code: IoReturn) -> IoFailure {
    match code {
        IoReturn::Timeout => IoFailure::new(code, Cause::TimedOut { milliseconds: COMMAND_TIMEOUT_MS, last: None }),
        _ => IoFailure::bare(code),
    }
}

impl<R: RegisterIo> Channel<R> {
    /// Sets up the channel: a PRD table in low memory. The
    /// controller is given the table's address only when a command starts, so if
    /// this fails it holds no address of ours.
    pub fn new(
        command_block: R,
        control_block: R,
        bus_master: R,
        platform: &'static dyn DmaPlatform,
        waiter: &'static dyn Waiter,
        interrupts: Interrupts,
    ) -> Result<Self, IoFailure> {
        // The last step that can fail: nothing after it needs giving back.
        let prd_table = CoherentMemory::allocate(platform, TABLE_BYTES, TABLE_SPECIFICATION)?;
        control_block.write8(DEVICE_CONTROL, reset::device_control(interrupts));
        let engine = Engine { prd_table: Some(prd_table), last_table: Vec::new(), last_command: 0, in_flight: None };
        Ok(Channel {
            command_block,
            control_block,
            bus_master,
            waiter,
            platform,
            engine: Mutex::new(engine),
            interrupts: AtomicU64::new(0),
            interrupt_mode: interrupts,
            selected: AtomicU8::new(NO_DRIVE),
        })
    }

    /// Acknowledges the channel's interrupt: the drive's INTRQ drops when its
    /// status is read. Called from the interrupt handler: registers only, no
    /// lock. Returns whether the channel had one.
    pub fn acknowledge_interrupt(&self) -> bool {
        if self.bus_master.read8(BM_STATUS) & BM_INTERRUPT == 0 {
            return false;
        }
        self.command_block.read8(STATUS);
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Interrupts handled so far.
    pub fn interrupt_count(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// The PRD entries and command byte of the last transfer.
    pub fn last_transfer(&self) -> (Vec<PrdEntry>, u8) {
        let engine = self.engine.lock();
        (engine.last_table.clone(), engine.last_command)
    }

    /// Where the channel's PRD table lies for the controller (the address
    /// written to its PRDT register; the physical address on a machine
    /// without an IOMMU), while the channel has one.
    pub fn table_address(&self) -> Option<DmaAddr> {
        self.engine.lock().prd_table.as_ref().map(CoherentMemory::device_address)
    }

    /// IDENTIFY DEVICE on `drive` (0 master, 1 slave): `None` if there is no ATA
    /// disk there (nothing, or an ATAPI/SATA signature); `Some(Err)` for a disk
    /// whose answer cannot be believed (its sector count, see `capacity`).
    pub fn identify(&self, drive: u8) -> Option<Result<Identity, IoFailure>> {
        // The lock keeps a DMA command of the other drive out of the registers.
        let _engine = self.engine.lock();
        self.select(drive, 0);
        for register in [SECTOR_COUNT, LBA_LOW, LBA_MID, LBA_HIGH] {
            self.command_block.write8(register, 0);
        }
        self.command_block.write8(COMMAND, COMMAND_IDENTIFY);
        let status = self.command_block.read8(STATUS);
        if status == 0 || status == 0xff {
            return None;
        }
        let status = self.wait_not_busy().ok()?;
        let signature = (self.command_block.read8(LBA_MID), self.command_block.read8(LBA_HIGH));
        if signature != (0, 0) || status & STATUS_ERROR != 0 {
            return None;
        }
        let mut ready = false;
        self.waiter
            .wait_until(COMMAND_TIMEOUT_MS, &mut || {
                ready = self.command_block.read8(STATUS) & (STATUS_DRQ | STATUS_ERROR) != 0;
                ready
            })
            .ok()?;
        if self.command_block.read8(STATUS) & STATUS_ERROR != 0 {
            return None;
        }
        let mut words = [0u16; 256];
        for word in words.iter_mut() {
            *word = self.command_block.read16(DATA);
        }
        Some(Identity::parse(&words))
    }

    /// Starts `command` on `drive` if the channel is free, with the lent
    /// `data`: writes the PRD table from its segments, programs the drive and
    /// starts the engine. `Busy` while the other drive's command runs. On an
    /// error the engine is stopped again before returning.
    fn program_request(
        &self,
        drive: &DriveRequest,
        command: &BlockCommand,
        data: &LentTransfer<'_>,
    ) -> Result<(), IoFailure> {
        let mut engine = self.engine.lock();
        let Engine { prd_table, last_table, last_command, in_flight } = &mut *engine;
        if in_flight.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Ata(AtaCause::ChannelBusy)));
        }
        let table = prd_table.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        let chunk = Chunk { lba: command.lba, sectors: command.count };
        let started = write_prd_table(table, data, last_table)
            .and_then(|()| self.start(table.device_address(), drive, &chunk, last_command));
        if let Err(failure) = started {
            // The engine may have been told the table: stop it before the
            // block layer gives the memory back.
            self.stop_engine();
            return Err(failure);
        }
        let (lba, sectors, bytes) = (command.lba, command.count, data.length());
        *in_flight = Some(Running { drive: drive.drive, lba, sectors, bytes, ending: Ending::Engine });
        Ok(())
    }

    /// If `drive`'s command is over (the drive's interrupt, an engine error, or
    /// the end of the table), stops the engine, checks both statuses and says
    /// how many bytes the device moved: all on success, none after an error, so
    /// nothing stale comes back from bounce memory.
    fn collect_request(&self, drive: u8) -> Option<DeviceOutcome> {
        let mut engine = self.engine.lock();
        let ending = match engine.in_flight.as_ref() {
            Some(running) if running.drive == drive => running.ending,
            _ => return None,
        };
        let over = match ending {
            Ending::Engine => {
                let status = self.bus_master.read8(BM_STATUS);
                status & (BM_INTERRUPT | BM_ERROR) != 0 || status & BM_ACTIVE == 0
            }
            // The alternate status: reading it does not acknowledge INTRQ.
            Ending::DriveNotBusy => self.control_block.read8(DEVICE_CONTROL) & STATUS_BUSY == 0,
        };
        if !over {
            return None;
        }
        let Running { drive, lba, sectors, bytes, .. } = engine.in_flight.take()?;
        // Whatever happened (done or error), the engine stops here, before the
        // block layer completes the transfer: no DMA after this write. A flush
        // never started it, but its interrupt bit is cleared all the same.
        let bus_status = self.stop_engine();
        let result = self.check_statuses(bus_status);
        if let Err(failure) = result {
            log::error!("PiixAta: drive {drive}, sectors {lba}+{sectors}: {failure}");
            self.recover_after_failure(drive, bus_status);
        }
        let moved = if result.is_ok() { bytes } else { 0 };
        Some(DeviceOutcome { moved, result })
    }

    /// The drive's and the engine's status registers as they are now, read
    /// without side effects (the alternate status does not acknowledge the
    /// drive's interrupt), for a timeout's cause.
    fn status_now(&self) -> DeviceStatus {
        let _engine = self.engine.lock();
        DeviceStatus::Ata {
            status: self.control_block.read8(DEVICE_CONTROL),
            error: self.command_block.read8(ERROR),
            bus_master: self.bus_master.read8(BM_STATUS),
        }
    }

    /// Stops the engine and forgets `drive`'s command, if one runs; that
    /// command was cut short, so the channel is reset.
    fn quiesce_drive(&self, drive: u8) -> Quiesced {
        let mut engine = self.engine.lock();
        match engine.in_flight.as_ref().map(|running| running.drive) {
            // The other drive's command runs: this drive holds nothing in the
            // device, and the engine is that command's, so it runs on.
            Some(other) if other != drive => {}
            Some(_) => {
                self.stop_engine();
                engine.in_flight = None;
                self.reset_after_cut_short(drive);
            }
            None => {
                self.stop_engine();
            }
        }
        Quiesced::Stopped
    }

    /// Gives the controller the table, programs the drive and starts the engine.
    fn start(
        &self,
        table: DmaAddr,
        request: &DriveRequest,
        chunk: &Chunk,
        last_command: &mut u8,
    ) -> Result<(), IoFailure> {
        let (drive, lba, count) = (request.drive, chunk.lba, chunk.sectors);
        self.bus_master.write8(BM_COMMAND, 0);
        self.bus_master.write8(BM_STATUS, BM_ERROR | BM_INTERRUPT);
        // The table's specification keeps it below 4 GiB: the address fits.
        self.bus_master.write32(BM_PRD_TABLE, table.as_u64() as u32);
        self.ready_for_command(drive)?;
        let opcode = match (request.addressing.for_command(lba, count), request.operation) {
            (Addressing::Lba48, operation) => {
                self.select(drive, 0);
                // LBA48: the high bytes go first, then the low ones, into the same registers.
                self.command_block.write8(SECTOR_COUNT, (count >> 8) as u8);
                self.command_block.write8(LBA_LOW, (lba >> 24) as u8);
                self.command_block.write8(LBA_MID, (lba >> 32) as u8);
                self.command_block.write8(LBA_HIGH, (lba >> 40) as u8);
                match operation {
                    BlockOperation::Read => COMMAND_READ_DMA_EXT,
                    BlockOperation::Write => COMMAND_WRITE_DMA_EXT,
                }
            }
            (Addressing::Lba28, BlockOperation::Read) => {
                self.select(drive, (lba >> 24) as u8 & 0x0f);
                COMMAND_READ_DMA
            }
            (Addressing::Lba28, BlockOperation::Write) => {
                self.select(drive, (lba >> 24) as u8 & 0x0f);
                COMMAND_WRITE_DMA
            }
        };
        // In LBA28 a count of 256 is written as 0.
        self.command_block.write8(SECTOR_COUNT, count as u8);
        self.command_block.write8(LBA_LOW, lba as u8);
        self.command_block.write8(LBA_MID, (lba >> 8) as u8);
        self.command_block.write8(LBA_HIGH, (lba >> 16) as u8);
        *last_command = opcode;
        self.command_block.write8(COMMAND, opcode);
        // The engine's direction is memory's: a disk read writes memory.
        let direction = match request.operation {
            BlockOperation::Read => BM_WRITES_MEMORY,
            BlockOperation::Write => 0,
        };
        self.bus_master.write8(BM_COMMAND, BM_START | direction);
        Ok(())
    }

    /// Stops the bus-master engine (after this write it does no more DMA), then
    /// clears its status; returns the status as it was *before* the stop, since
    /// stopping clears Active, the one sign of a transfer that ended short.
    fn stop_engine(&self) -> u8 {
        let status = self.bus_master.read8(BM_STATUS);
        self.bus_master.write8(BM_COMMAND, 0);
        let status = status | self.bus_master.read8(BM_STATUS) & BM_ERROR;
        self.bus_master.write8(BM_STATUS, BM_ERROR | BM_INTERRUPT);
        status
    }
}

/// Writes the PRD table from the lent transfer's segments, one typed entry
/// each, the last marked end-of-table. `last_table` gets the entries too.
fn write_prd_table(
    table: &CoherentMemory,
    data: &LentTransfer<'_>,
    last_table: &mut Vec<PrdEntry>,
) -> Result<(), IoFailure> {
    last_table.clear();
    let entries: Vec<PrdEntry> = data.entries()?;
    if entries.len() > ENTRIES_PER_TABLE {
        // The specification allows one table's entries, so this does not happen.
        let cause = Cause::EntryFormat { format: "PRD", rule: "one table holds at most 512 entries" };
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    for (index, entry) in entries.iter().enumerate() {
        table.write_bytes((index * size_of::<PrdEntry>()) as u64, &entry.to_bytes())?;
    }
    *last_table = entries;
    Ok(())
}

impl<R: RegisterIo> Drop for Channel<R> {
    /// Stops the engine, so that the controller no longer reads the PRD table or
    /// moves data, then releases the table.
    fn drop(&mut self) {
        self.stop_engine();
        if let Some(table) = self.engine.get_mut().prd_table.take()
            && let Err(failure) = table.release()
        {
            log::error!("PiixAta: PRD table not released: {failure}");
        }
    }
}

/// One ATA disk: a drive on a channel.
pub struct AtaDisk<R: RegisterIo> {
    channel: Arc<Channel<R>>,
    drive: u8,
    identity: Identity,
}

impl<R: RegisterIo> AtaDisk<R> {
    /// The disk `drive` (0 master, 1 slave) of `channel`, as IDENTIFY described it.
    pub fn new(channel: Arc<Channel<R>>, drive: u8, identity: Identity) -> AtaDisk<R> {
        AtaDisk { channel, drive, identity }
    }

    /// The channel the disk is on.
    pub fn channel(&self) -> &Arc<Channel<R>> {
        &self.channel
    }
}

impl<R: RegisterIo> HardwareQueue for AtaDisk<R> {
    /// Depth one: an IDE channel runs one command at a time; more requests
    /// wait in the block layer's queue.
    fn shape(&self) -> DiskShape {
        DiskShape {
            driver_name: "PiixAta",
            block_size: SECTOR_SIZE as u32,
            block_count: self.identity.sectors,
            depth: 1,
            max_request_blocks: self.identity.addressing.max_sectors(),
            specification: PIIX_SPECIFICATION,
            platform: self.channel.platform,
            write_cache: self.identity.flush.write_cache(),
            // The drive's status says done, not how many bytes.
            byte_count: ByteCount::Assumed,
        }
    }

    fn description(&self) -> String {
        let addressing = match self.identity.addressing {
            Addressing::Lba28 => "LBA28",
            Addressing::Lba48 => "LBA48",
        };
        let position = if self.drive == 0 { "master" } else { "slave" };
        format!("{} ({addressing}, {position}, one command at a time)", self.identity.model)
    }

    /// `Busy` while the other drive of the channel runs a command: nothing is
    /// prepared for a request that could not start.
    fn admit(&self, _command: &SlotCommand) -> Result<(), IoFailure> {
        if self.channel.engine.lock().in_flight.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Ata(AtaCause::ChannelBusy)));
        }
        Ok(())
    }

    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        if slot != ENGINE_SLOT {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot, depth: 1 }));
        }
        let addressing = self.identity.addressing;
        let drive = DriveRequest { drive: self.drive, addressing, operation: command.operation };
        self.channel.program_request(&drive, command, data)
    }

    /// The drive's FLUSH CACHE EXT (or FLUSH CACHE), with no data.
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure> {
        if slot != ENGINE_SLOT {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot, depth: 1 }));
        }
        self.channel.program_flush(self.drive, self.identity.flush)
    }

    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        if let Some(outcome) = self.channel.collect_request(self.drive) {
            finished(ENGINE_SLOT, outcome);
        }
        DeviceHealth::Running
    }

    fn acknowledge_interrupt(&self) -> bool {
        self.channel.acknowledge_interrupt()
    }

    /// Stops the engine, and resets the channel if the drive's command was cut
    /// short (the PRD table is the channel's, shared by both drives, and goes
    /// back when the channel is dropped).
    fn quiesce(&self) -> Quiesced {
        self.channel.quiesce_drive(self.drive)
    }

    /// Checks the drive is out of any command (a quiesce reset it), and resets
    /// the channel if not.
    fn reopen(&self) -> Result<(), IoFailure> {
        self.channel.reopen_drive(self.drive)
    }

    fn last_status(&self) -> Option<DeviceStatus> {
        Some(self.channel.status_now())
    }
}
