//! One IDE channel of a PIIX controller with bus-master DMA, and the disks on it.
//!
//! A request is split into ATA commands the drive accepts (256 sectors in LBA28,
//! 2048 in LBA48). One DMA read command, step by step:
//! 1. prepare: [`DmaTransfer::prepare`] lends the command's share of the caller's
//!    buffer to the controller, under its specification (32-bit addresses,
//!    regions of at most 64 KiB that never cross a 64 KiB boundary, even lengths,
//!    at most one table of entries); parts above 4 GiB are bounced. From here
//!    until `complete` the buffer is the device's: the compiler refuses CPU
//!    access to it;
//! 2. write the PRD table: `write_segments` writes the segments as the
//!    specification's records (little-endian 32-bit address and length); each
//!    record becomes one [`PrdEntry`], the last one marked end-of-table, written
//!    into the table (a [`CoherentMemory`] below 4 GiB, shared with the
//!    controller for the channel's life), and the controller gets its address;
//! 3. program the drive (LBA, count, READ DMA written to `COMMAND`) and start the
//!    bus-master engine;
//! 4. wait for the interrupt (or poll), then stop the engine, on every path,
//!    timeouts and errors too: after that write no DMA happens. Check both
//!    statuses;
//! 5. complete the transfer with the bytes the device moved: all of them on
//!    success, none after an error or a timeout. Only those come back from a
//!    bounce buffer, so the caller never sees stale bounce memory.
//!
//! No memory goes back while the engine may use it: the engine is stopped before
//! every `complete`; the controller learns the table's address only per command,
//! so a failed [`Channel::new`] leaves it nothing; dropping the channel stops the
//! engine, then releases the table.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, DoubleBuffering, TransferOptions};
use dmakit::dma::{
    Cause, CoherentMemory, DmaAddr, DmaBuffer, DmaPlatform, DmaTransfer, IoDmaCommand, IoFailure, IoReturn, Segment,
    Specification,
};
use dmakit::io::RegisterIo;
use dmakit::time::Waiter;
use spin::Mutex;

use super::identify::{Addressing, Identity};
use super::prd::{ENTRIES_PER_TABLE, PrdEntry, RECORD_FORMAT, RECORD_SIZE, REGION_LIMIT, TABLE_BYTES, TableEnd};
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
    num_address_bits: 32,
    max_segment_size: REGION_LIMIT,
    max_transfer_size: LBA48_MAX_SECTORS * SECTOR_SIZE,
    alignment: 2,
    alignment_length: 2,
    alignment_internal_segments: 2,
    boundary: REGION_LIMIT,
    max_segments: ENTRIES_PER_TABLE,
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

/// One block request on a drive.
struct DriveRequest {
    drive: u8,
    addressing: Addressing,
    operation: BlockOperation,
    lba: u64,
    sectors: u64,
    /// Where the request starts in the caller's buffer.
    offset: u64,
    options: TransferOptions,
}

/// One ATA command's share of a [`DriveRequest`].
struct Chunk {
    lba: u64,
    sectors: u64,
    /// Where the chunk starts in the caller's buffer.
    offset: u64,
}

/// What one command uses, behind the channel's lock.
struct Engine {
    /// Shared with the controller while the channel lives; `None` only once
    /// released, after the engine was stopped for good.
    prd_table: Option<CoherentMemory>,
    data_command: IoDmaCommand,
    /// Room for one table's records, as `write_segments` writes them.
    records: Vec<u8>,
    /// The PRD entries of the last transfer, for teaching and tests.
    last_table: Vec<PrdEntry>,
    /// The command byte of the last transfer.
    last_command: u8,
}

/// An IDE channel: its task-file registers, its bus-master registers, its engine.
pub struct Channel<R: RegisterIo> {
    command_block: R,
    control_block: R,
    bus_master: R,
    waiter: &'static dyn Waiter,
    engine: Mutex<Engine>,
    interrupts: AtomicU64,
}

/// A waiter's error as a failure: a timeout says how long the driver waited.
fn waited_too_long(code: IoReturn) -> IoFailure {
    match code {
        IoReturn::Timeout => IoFailure::new(code, Cause::TimedOut { milliseconds: COMMAND_TIMEOUT_MS }),
        _ => IoFailure::from(code),
    }
}

impl<R: RegisterIo> Channel<R> {
    /// Sets up the channel: a data command and a PRD table in low memory. The
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
        let data_command = IoDmaCommand::new(platform, PIIX_SPECIFICATION)?;
        // The last step that can fail: nothing after it needs giving back.
        let prd_table = CoherentMemory::allocate(platform, TABLE_BYTES, TABLE_SPECIFICATION)?;
        let control = match interrupts {
            Interrupts::Enabled => 0,
            Interrupts::Disabled => CONTROL_NO_INTERRUPTS,
        };
        control_block.write8(DEVICE_CONTROL, control);
        let engine = Engine {
            prd_table: Some(prd_table),
            data_command,
            records: vec![0; ENTRIES_PER_TABLE * RECORD_SIZE],
            last_table: Vec::new(),
            last_command: 0,
        };
        Ok(Channel {
            command_block,
            control_block,
            bus_master,
            waiter,
            engine: Mutex::new(engine),
            interrupts: AtomicU64::new(0),
        })
    }

    /// Acknowledges the channel's interrupt: the drive's INTRQ drops when its
    /// status is read. Called by the kernel's interrupt handler.
    pub fn handle_interrupt(&self) {
        if self.bus_master.read8(BM_STATUS) & BM_INTERRUPT != 0 {
            self.command_block.read8(STATUS);
            self.interrupts.fetch_add(1, Ordering::Relaxed);
        }
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

    fn select(&self, drive: u8, lba_top: u8) {
        self.command_block.write8(DRIVE, DRIVE_LBA | drive << 4 | lba_top);
        // Reading the alternate status four times gives the drive its 400 ns.
        for _ in 0..4 {
            self.control_block.read8(DEVICE_CONTROL);
        }
    }

    /// Waits until the drive is not busy; returns its (alternate) status.
    fn wait_not_busy(&self) -> Result<u8, IoFailure> {
        let mut status = 0;
        self.waiter
            .wait_until(COMMAND_TIMEOUT_MS, &mut || {
                status = self.control_block.read8(DEVICE_CONTROL);
                status & STATUS_BUSY == 0
            })
            .map_err(waited_too_long)?;
        Ok(status)
    }

    /// IDENTIFY DEVICE on `drive` (0 master, 1 slave): `None` if there is no ATA
    /// disk there (nothing, or an ATAPI/SATA signature).
    pub fn identify(&self, drive: u8) -> Option<Identity> {
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

    /// A DMA transfer, split into commands the drive accepts; the first failure
    /// ends it.
    fn transfer(&self, request: &DriveRequest, buffer: &mut DmaBuffer) -> Result<(), IoFailure> {
        let mut engine = self.engine.lock();
        let most = request.addressing.max_sectors();
        let mut done = 0;
        while done < request.sectors {
            let chunk = Chunk {
                lba: request.lba + done,
                sectors: (request.sectors - done).min(most),
                offset: request.offset + done * SECTOR_SIZE,
            };
            self.run_chunk(&mut engine, request, &chunk, buffer)?;
            done += chunk.sectors;
        }
        Ok(())
    }

    /// One ATA command: prepare, write the PRD table, run, stop the engine,
    /// complete with the bytes the device moved.
    fn run_chunk(
        &self,
        engine: &mut Engine,
        request: &DriveRequest,
        chunk: &Chunk,
        buffer: &mut DmaBuffer,
    ) -> Result<(), IoFailure> {
        let Engine { prd_table, data_command, records, last_table, last_command } = engine;
        let table = prd_table.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DeviceStopped))?;
        let length = chunk.sectors * SECTOR_SIZE;
        let data = DmaTransfer::prepare(data_command, buffer, chunk.offset, length, &request.options)?;

        let finished = write_prd_table(table, records, &data, last_table)
            .and_then(|()| self.start(table.device_address(), request, chunk, last_command))
            .and_then(|()| self.wait_for_engine());
        // Whatever happened (done, error, timeout), the engine stops here, before
        // the buffer and its bounce memory go back: no DMA after this write.
        let bus_status = self.stop_engine();
        let outcome = finished.and_then(|()| self.check_statuses(bus_status));

        // After an error or a timeout nothing the device wrote is trusted: no
        // byte comes back from bounce memory, and the caller's buffer keeps what
        // it held.
        let moved = match outcome {
            Ok(()) => length,
            Err(_) => 0,
        };
        let completed = data.complete(moved);
        if let Err(failure) = outcome {
            log::error!("PiixAta: drive {}, sectors {}+{}: {failure}", request.drive, chunk.lba, chunk.sectors);
            return Err(failure);
        }
        completed.result
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
        self.wait_not_busy()?;
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

    /// Waits for the engine: the drive's interrupt, an engine error, or the end
    /// of the table.
    fn wait_for_engine(&self) -> Result<(), IoFailure> {
        self.waiter
            .wait_until(COMMAND_TIMEOUT_MS, &mut || {
                let status = self.bus_master.read8(BM_STATUS);
                status & (BM_INTERRUPT | BM_ERROR) != 0 || status & BM_ACTIVE == 0
            })
            .map_err(waited_too_long)
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

    /// The command's result from the engine's status (`bus_status`, read when
    /// it was stopped) and the drive's.
    fn check_statuses(&self, bus_status: u8) -> Result<(), IoFailure> {
        if bus_status & BM_ERROR != 0 {
            return Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError("bus-master error")));
        }
        if bus_status & BM_ACTIVE != 0 {
            // The drive finished while the engine still had PRD entries to fill:
            // fewer bytes moved than asked, and the count is not known.
            let cause = Cause::DeviceError("the drive ended before the PRD table was used up (short transfer)");
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        let drive_status = self.wait_not_busy()?;
        // Reading the status (not the alternate one) acknowledges the drive's interrupt.
        self.command_block.read8(STATUS);
        if drive_status & STATUS_FAULT != 0 {
            return Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError("device fault")));
        }
        if drive_status & STATUS_ERROR != 0 {
            return Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError("drive reported ERR")));
        }
        Ok(())
    }
}

/// The transfer of one command's data: the caller's buffer and the channel's
/// command, both borrowed.
type DataTransfer<'a> = DmaTransfer<&'a mut DmaBuffer, &'a mut IoDmaCommand>;

/// Writes the PRD table from the records `write_segments` gives in the
/// specification's output format: one entry per record, the last marked
/// end-of-table. `last_table` gets the entries too.
fn write_prd_table(
    table: &CoherentMemory,
    records: &mut [u8],
    data: &DataTransfer<'_>,
    last_table: &mut Vec<PrdEntry>,
) -> Result<(), IoFailure> {
    last_table.clear();
    let (count, end) = data.write_segments(0, records)?;
    if end < data.length() {
        // The specification allows one table's entries, so this does not happen.
        let cause = Cause::Other("the transfer needs more PRD entries than one table holds");
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    let (records, _) = records[..count * RECORD_SIZE].as_chunks::<RECORD_SIZE>();
    for (index, record) in records.iter().enumerate() {
        let end = if index + 1 == count { TableEnd::Last } else { TableEnd::More };
        let entry = PrdEntry::from_record(record, end)?;
        table.write_bytes((index * size_of::<PrdEntry>()) as u64, &entry.to_bytes())?;
        last_table.push(entry);
    }
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
    force_double_buffer: AtomicBool,
}

impl<R: RegisterIo> AtaDisk<R> {
    /// The disk `drive` (0 master, 1 slave) of `channel`, as IDENTIFY described it.
    pub fn new(channel: Arc<Channel<R>>, drive: u8, identity: Identity) -> AtaDisk<R> {
        AtaDisk { channel, drive, identity, force_double_buffer: AtomicBool::new(false) }
    }

    /// The channel the disk is on.
    pub fn channel(&self) -> &Arc<Channel<R>> {
        &self.channel
    }
}

impl<R: RegisterIo> BlockDevice for AtaDisk<R> {
    fn driver_name(&self) -> &'static str {
        "PiixAta"
    }

    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.identity.sectors
    }

    fn submit(&self, request: BlockRequest<'_>) -> Result<(), IoFailure> {
        let mut options = request.options;
        options.force_double_buffer |= self.force_double_buffer.load(Ordering::Relaxed);
        let drive_request = DriveRequest {
            drive: self.drive,
            addressing: self.identity.addressing,
            operation: request.operation,
            lba: request.lba,
            sectors: request.count,
            offset: request.offset,
            options,
        };
        self.channel.transfer(&drive_request, request.buffer)
    }

    fn description(&self) -> String {
        let addressing = match self.identity.addressing {
            Addressing::Lba28 => "LBA28",
            Addressing::Lba48 => "LBA48",
        };
        format!("{} ({addressing}, {})", self.identity.model, if self.drive == 0 { "master" } else { "slave" })
    }

    fn set_double_buffering(&self, policy: DoubleBuffering) {
        self.force_double_buffer.store(policy == DoubleBuffering::Forced, Ordering::Relaxed);
    }

    fn last_segments(&self) -> Vec<Segment> {
        let (table, _) = self.channel.last_transfer();
        table.iter().map(PrdEntry::segment).collect()
    }
}
