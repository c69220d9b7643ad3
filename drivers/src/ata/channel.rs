//! One IDE channel of a PIIX controller with bus-master DMA, and the disks on it.
//!
//! A DMA read, step by step:
//! 1. prepare the buffer with the controller's specification (32-bit addresses,
//!    regions of at most 64 KiB that never cross a 64 KiB boundary, even lengths,
//!    at most one table of entries); parts above 4 GiB are bounced;
//! 2. write one PRD entry per segment into the PRD table (low memory) and give the
//!    controller the table's address;
//! 3. program the drive (LBA, count, READ DMA) and start the bus-master engine;
//! 4. wait for the interrupt (or poll), stop the engine, check both statuses;
//! 5. complete the command: bounced data is copied back into the buffer.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dmakit::block::{BlockDevice, BlockRequest, TransferOptions};
use dmakit::dma::{
    DmaAddr, DmaPlatform, IoDmaCommand, IoMemoryDescriptor, IoReturn, OutputFormat, Segment, Specification,
};
use dmakit::io::RegisterIo;
use dmakit::memory::{Constraints, FRAME_SIZE};
use dmakit::time::Waiter;
use spin::Mutex;
use x86_64::PhysAddr;

use super::identify::Identity;
use super::prd::{ENTRIES_PER_TABLE, PrdEntry, REGION_LIMIT};
use super::registers::*;

/// How long one command may take.
const COMMAND_TIMEOUT_MS: u64 = 5_000;
/// Most sectors per LBA28 command (a count of 0 means 256).
const LBA28_MAX_SECTORS: u64 = 256;
/// Most sectors per LBA48 command dmakit issues (1 MiB): bounded by the PRD table
/// (512 entries x 64 KiB = 32 MiB) and kept modest for the bounce budget.
const LBA48_MAX_SECTORS: u64 = 2048;

/// What PIIX bus-master DMA can do, as an IoDmaCommand specification.
pub const PIIX_SPECIFICATION: Specification = Specification {
    output: OutputFormat::LITTLE32,
    num_address_bits: 32,
    max_segment_size: REGION_LIMIT,
    max_transfer_size: LBA48_MAX_SECTORS * SECTOR_SIZE,
    alignment: 2,
    alignment_length: 2,
    alignment_internal_segments: 2,
    boundary: REGION_LIMIT,
    max_segments: ENTRIES_PER_TABLE,
};

/// One block request on a drive.
struct Transfer<'a> {
    drive: u8,
    lba48: bool,
    write: bool,
    lba: u64,
    sectors: u64,
    buffer: &'a Arc<IoMemoryDescriptor>,
    offset: u64,
    options: TransferOptions,
}

/// One ATA command's share of a [`Transfer`].
struct Command {
    lba: u64,
    count: u64,
    offset: u64,
}

struct Engine {
    prd_table: Arc<IoMemoryDescriptor>,
    prd_command: IoDmaCommand,
    data_command: IoDmaCommand,
    /// The PRD entries of the last transfer, for teaching and tests.
    last_table: alloc::vec::Vec<PrdEntry>,
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

impl<R: RegisterIo> Channel<R> {
    /// Sets up the channel: a PRD table in low memory, kept prepared.
    pub fn new(
        command_block: R,
        control_block: R,
        bus_master: R,
        platform: &'static dyn DmaPlatform,
        waiter: &'static dyn Waiter,
        use_interrupts: bool,
    ) -> Result<Self, IoReturn> {
        let below_4_gib = Constraints { below: Some(PhysAddr::new(1 << 32)), alignment: FRAME_SIZE, boundary: 0 };
        let prd_table = IoMemoryDescriptor::allocate_coherent(platform, FRAME_SIZE, below_4_gib)?;
        let table_specification =
            Specification { alignment: 4, boundary: REGION_LIMIT, max_segments: 1, ..Specification::UNLIMITED_32 };
        let mut prd_command = IoDmaCommand::new(platform, table_specification)?;
        prd_command.set_memory_descriptor(prd_table.clone(), true)?;
        let data_command = IoDmaCommand::new(platform, PIIX_SPECIFICATION)?;
        control_block.write8(DEVICE_CONTROL, if use_interrupts { 0 } else { CONTROL_NO_INTERRUPTS });
        Ok(Channel {
            command_block,
            control_block,
            bus_master,
            waiter,
            engine: Mutex::new(Engine {
                prd_table,
                prd_command,
                data_command,
                last_table: alloc::vec::Vec::new(),
                last_command: 0,
            }),
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
    pub fn last_transfer(&self) -> (alloc::vec::Vec<PrdEntry>, u8) {
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

    fn wait_not_busy(&self) -> Result<u8, IoReturn> {
        let mut status = 0;
        self.waiter.wait_until(COMMAND_TIMEOUT_MS, &mut || {
            status = self.control_block.read8(DEVICE_CONTROL);
            status & STATUS_BUSY == 0
        })?;
        Ok(status)
    }

    /// IDENTIFY DEVICE on `drive` (0 master, 1 slave): `None` if there is no ATA
    /// disk there (nothing, or an ATAPI/SATA signature).
    pub fn identify(&self, drive: u8) -> Option<Identity> {
        let _engine = self.engine.lock();
        self.select(drive, 0);
        for register in [SECTOR_COUNT, LBA_LOW, LBA_MID, LBA_HIGH] {
            self.command_block.write8(register, 0);
        }
        self.command_block.write8(STATUS, COMMAND_IDENTIFY);
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

    /// A DMA transfer, split into commands the drive accepts.
    fn transfer(&self, request: &Transfer) -> Result<(), IoReturn> {
        let mut engine = self.engine.lock();
        let chunk = if request.lba48 { LBA48_MAX_SECTORS } else { LBA28_MAX_SECTORS };
        let mut done = 0;
        while done < request.sectors {
            let command = Command {
                lba: request.lba + done,
                count: (request.sectors - done).min(chunk),
                offset: request.offset + done * SECTOR_SIZE,
            };
            self.dma_command(&mut engine, request, &command)?;
            done += command.count;
        }
        Ok(())
    }

    fn dma_command(&self, engine: &mut Engine, request: &Transfer, command: &Command) -> Result<(), IoReturn> {
        let Engine { prd_table, prd_command, data_command, last_table, last_command } = engine;
        let length = command.count * SECTOR_SIZE;
        data_command.with_transfer(request.buffer.clone(), command.offset, length, &request.options, |segments| {
            Self::write_prd_table(prd_table, last_table, segments)?;
            let table = prd_command.segments()[0].address.as_u64();
            self.run(table, last_command, request, command)
        })
    }

    /// One PRD entry per segment, the last one marked end-of-table.
    fn write_prd_table(
        table: &IoMemoryDescriptor,
        last_table: &mut alloc::vec::Vec<PrdEntry>,
        segments: &[Segment],
    ) -> Result<(), IoReturn> {
        last_table.clear();
        for (index, segment) in segments.iter().enumerate() {
            let entry = PrdEntry::new(*segment, index + 1 == segments.len());
            table.write_bytes(index as u64 * 8, &entry.to_bytes())?;
            last_table.push(entry);
        }
        Ok(())
    }

    /// Programs the drive and the engine for one command and waits for it.
    fn run(&self, table: u64, last_command: &mut u8, request: &Transfer, command: &Command) -> Result<(), IoReturn> {
        let (drive, write, lba, count) = (request.drive, request.write, command.lba, command.count);
        // LBA28 reaches 2^28 sectors and 256 per command; beyond that, LBA48.
        let extended = request.lba48 && (lba + count > 1 << 28 || count > LBA28_MAX_SECTORS);
        self.bus_master.write8(BM_COMMAND, 0);
        self.bus_master.write8(BM_STATUS, BM_ERROR | BM_INTERRUPT);
        self.bus_master.write32(BM_PRD_TABLE, table as u32);
        self.wait_not_busy()?;
        let opcode = if extended {
            self.select(drive, 0);
            // LBA48: the high bytes go first, then the low ones, into the same registers.
            self.command_block.write8(SECTOR_COUNT, (count >> 8) as u8);
            self.command_block.write8(LBA_LOW, (lba >> 24) as u8);
            self.command_block.write8(LBA_MID, (lba >> 32) as u8);
            self.command_block.write8(LBA_HIGH, (lba >> 40) as u8);
            if write { COMMAND_WRITE_DMA_EXT } else { COMMAND_READ_DMA_EXT }
        } else {
            self.select(drive, (lba >> 24) as u8 & 0x0f);
            if write { COMMAND_WRITE_DMA } else { COMMAND_READ_DMA }
        };
        // In LBA28 a count of 256 is written as 0.
        self.command_block.write8(SECTOR_COUNT, count as u8);
        self.command_block.write8(LBA_LOW, lba as u8);
        self.command_block.write8(LBA_MID, (lba >> 8) as u8);
        self.command_block.write8(LBA_HIGH, (lba >> 16) as u8);
        *last_command = opcode;
        self.command_block.write8(STATUS, opcode);
        self.bus_master.write8(BM_COMMAND, BM_START | if write { 0 } else { BM_WRITES_MEMORY });

        let waited = self.waiter.wait_until(COMMAND_TIMEOUT_MS, &mut || {
            let status = self.bus_master.read8(BM_STATUS);
            status & (BM_INTERRUPT | BM_ERROR) != 0 || status & BM_ACTIVE == 0
        });
        self.bus_master.write8(BM_COMMAND, 0);
        let bus_status = self.bus_master.read8(BM_STATUS);
        self.bus_master.write8(BM_STATUS, BM_ERROR | BM_INTERRUPT);
        waited?;
        let drive_status = self.wait_not_busy()?;
        self.command_block.read8(STATUS);
        if bus_status & BM_ERROR != 0 || drive_status & (STATUS_ERROR | STATUS_FAULT) != 0 {
            return Err(IoReturn::IoError);
        }
        Ok(())
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

    fn submit(&self, request: &BlockRequest) -> Result<(), IoReturn> {
        self.channel.transfer(&Transfer {
            drive: self.drive,
            lba48: self.identity.lba48,
            write: request.write,
            lba: request.lba,
            sectors: request.count,
            buffer: request.buffer,
            offset: request.offset,
            options: TransferOptions {
                force_double_buffer: request.options.force_double_buffer
                    || self.force_double_buffer.load(Ordering::Relaxed),
                ..request.options
            },
        })
    }

    fn description(&self) -> String {
        let addressing = if self.identity.lba48 { "LBA48" } else { "LBA28" };
        format!("{} ({addressing}, {})", self.identity.model, if self.drive == 0 { "master" } else { "slave" })
    }

    fn set_force_double_buffer(&self, enabled: bool) {
        self.force_double_buffer.store(enabled, Ordering::Relaxed);
    }

    fn last_segments(&self) -> alloc::vec::Vec<Segment> {
        let (table, _) = self.channel.last_transfer();
        table
            .iter()
            .map(|entry| Segment { address: DmaAddr::new(u64::from(entry.address)), length: entry.length() })
            .collect()
    }
}
