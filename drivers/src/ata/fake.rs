//! A fake PIIX IDE channel for host tests. Like the real controller it walks the
//! PRD table in (simulated) physical memory and moves data only through it; unlike
//! QEMU it also checks every rule the hardware documents (even addresses, no
//! region across a 64 KiB boundary, nothing above 4 GiB), so a driver that breaks
//! one fails the test.
//!
//! It also checks that memory is not freed under it: before every write into
//! memory it asserts that each page it touches is still allocated. In `late`
//! mode it behaves like a device that answers after the driver gave up: starting
//! the engine holds the DMA back (no data, no interrupt, so the driver times
//! out), and [`FakeChannel::finish_late`] performs it later, if the engine is
//! still started. A stopped engine does no more DMA.
//!
//! Its drives do what a real drive does and QEMU does not (QEMU finishes or
//! cancels the command when the engine stops; clear `keeps_stopped_command` for
//! that): a DMA command cut short (its engine stopped, or a bus-master error)
//! stays in the drive's data phase, BSY clear and DRQ set. The drive ignores
//! commands written meanwhile, and when the engine is started again it moves
//! the OLD command's data through whatever PRD table the engine has then. A
//! software reset (SRST in the device control register) ends it, for both
//! drives (but a `hung_drive`): BSY while SRST is set, then drive 0 selected.
//!
//! FLUSH CACHE (E7h) and, on a drive with the 48-bit feature set, FLUSH CACHE
//! EXT (EAh) are no-data commands: no engine, no PRD table. The drive stays
//! busy while it flushes (until [`FakeChannel::finish_flush`] when
//! `slow_flush` is set), then interrupts; a device fault fails it.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dmakit::block::BlockOperation;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::identify::{Addressing, Identity};
use super::prd::{ENTRIES_PER_TABLE, PrdEntry, REGION_LIMIT, TABLE_BYTES, TableEnd};
use super::registers::*;

mod hostile;
mod ports;

use hostile::Hostility;
pub use hostile::{Lie, case_machine, hostile_config, identify_answers, says_why};

/// A drive on the fake channel.
pub struct FakeDrive {
    /// The disk's bytes.
    pub image: Vec<u8>,
    /// What IDENTIFY answers.
    pub identity: Identity,
}

/// Whether memory the fake looked at was still allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Every page was allocated.
    Allocated,
    /// At least one page was free: given back while the device could use it.
    Freed,
}

/// What the fake saw when the driver wrote the bus-master command register
/// with the engine stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineStop {
    /// The memory of the PRD table the controller was last given (`None`
    /// before it was given one).
    pub table: Option<Memory>,
    /// The regions of a DMA held back in late mode (`None`: nothing held back).
    pub held_back: Option<Memory>,
}

/// A DMA the engine was started for.
struct Dma {
    operation: BlockOperation,
    drive: usize,
    lba: u64,
    sectors: u64,
    entries: Vec<PrdEntry>,
}

/// A DMA command the drive holds in its data phase, with what it still has to
/// move: it goes through the next PRD table the engine is started with.
struct Stalled {
    operation: BlockOperation,
    drive: usize,
    /// The next byte of the disk image to move.
    position: u64,
    /// Bytes still to move.
    remaining: u64,
}

impl Stalled {
    /// The whole of `dma`, none of it moved yet.
    fn whole(dma: &Dma) -> Stalled {
        let (position, remaining) = (dma.lba * SECTOR_SIZE, dma.sectors * SECTOR_SIZE);
        Stalled { operation: dma.operation, drive: dma.drive, position, remaining }
    }
}

#[derive(Default)]
struct State {
    drive: u8,
    count: [u8; 2],
    lba: [[u8; 2]; 3],
    status: u8,
    identify: Vec<u16>,
    /// A DMA command the drive took, waiting for the engine.
    pending: Option<u8>,
    /// A started DMA held back in late mode.
    held_back: Option<Dma>,
    /// A command cut short that the drive keeps in its data phase.
    stalled: Option<Stalled>,
    /// A flush the drive is busy with (`slow_flush`).
    flushing: bool,
    /// The device control register as last written (nIEN, SRST).
    control: u8,
    bm_command: u8,
    bm_status: u8,
    prd_table: u32,
}

/// The fake channel.
pub struct FakeChannel {
    platform: &'static SimulatedPlatform,
    /// Master and slave.
    pub drives: Mutex<[Option<FakeDrive>; 2]>,
    /// What every drive answers IDENTIFY with instead of its identity's words
    /// (a drive that says what it should not).
    pub identify_words: Mutex<Option<[u16; 256]>>,
    state: Mutex<State>,
    /// Every command byte received.
    pub commands: Mutex<Vec<u8>>,
    /// Most PRD entries in one transfer.
    pub most_entries: Mutex<usize>,
    /// The PRD entries the engine read from memory at its last start.
    pub last_table: Mutex<Vec<PrdEntry>>,
    /// A sector that fails: the sectors before it are moved, then the drive
    /// reports ERR.
    pub bad_sector: Mutex<Option<u64>>,
    /// The engine reports a bus-master error and moves nothing.
    pub bus_error: AtomicBool,
    /// The drive reports a device fault (DF and ERR) and moves nothing.
    pub device_fault: AtomicBool,
    /// The drive moves only this many sectors, then says all is well (no ERR)
    /// while the engine still has PRD entries left: a short transfer, which
    /// only the engine's Active bit shows.
    pub short_sectors: Mutex<Option<u64>>,
    /// Starting the engine holds the DMA back, with no interrupt, until
    /// [`FakeChannel::finish_late`].
    pub late: AtomicBool,
    /// Every write of the bus-master command that left the engine stopped.
    pub stops: Mutex<Vec<EngineStop>>,
    /// A DMA command cut short stays in the drive's data phase, and the next
    /// engine start moves its data (see the module's documentation). Set, as
    /// on a real drive, unless a test clears it.
    pub keeps_stopped_command: AtomicBool,
    /// A hung drive: it keeps a command it holds in its data phase through
    /// SRST, which resets only the other one.
    pub hung_drive: Mutex<Option<u8>>,
    /// Software resets: SRST set, then cleared.
    pub resets: AtomicUsize,
    /// A flush keeps the drive busy until [`FakeChannel::finish_flush`].
    pub slow_flush: AtomicBool,
    /// The lying mode (`fake/hostile.rs`): off unless a test switches it on.
    hostility: Mutex<Hostility>,
}

/// Which register block a port window shows.
#[derive(Clone, Copy)]
pub enum Block {
    /// The task file: data, LBA, count, drive, status and command.
    Command,
    /// Alternate status and device control.
    Control,
    /// This channel's bus-master registers.
    BusMaster,
}

/// One register block of a shared fake channel.
pub struct FakePorts(pub Arc<FakeChannel>, pub Block);

impl FakeChannel {
    /// A channel with these drives, moving data in `platform`'s memory.
    pub fn new(
        platform: &'static SimulatedPlatform,
        master: Option<FakeDrive>,
        slave: Option<FakeDrive>,
    ) -> Arc<FakeChannel> {
        Arc::new(FakeChannel {
            platform,
            drives: Mutex::new([master, slave]),
            identify_words: Mutex::new(None),
            state: Mutex::new(State { status: STATUS_READY, ..State::default() }),
            commands: Mutex::new(Vec::new()),
            most_entries: Mutex::new(0),
            last_table: Mutex::new(Vec::new()),
            bad_sector: Mutex::new(None),
            short_sectors: Mutex::new(None),
            bus_error: AtomicBool::new(false),
            device_fault: AtomicBool::new(false),
            late: AtomicBool::new(false),
            stops: Mutex::new(Vec::new()),
            keeps_stopped_command: AtomicBool::new(true),
            hung_drive: Mutex::new(None),
            resets: AtomicUsize::new(0),
            slow_flush: AtomicBool::new(false),
            hostility: Mutex::new(Hostility::default()),
        })
    }

    /// Leaves `drive` in the data phase of a READ DMA of `sectors` from `lba`
    /// that no driver of ours issued (as the firmware or a driver before might
    /// leave it): it shows DRQ, ignores commands, and moves those sectors at the
    /// next engine start.
    pub fn stall(&self, drive: u8, lba: u64, sectors: u64) {
        let mut state = self.state.lock();
        let (position, remaining) = (lba * SECTOR_SIZE, sectors * SECTOR_SIZE);
        let drive = usize::from(drive);
        state.stalled = Some(Stalled { operation: BlockOperation::Read, drive, position, remaining });
        if usize::from(state.drive) == drive {
            state.status = STATUS_READY | STATUS_DRQ;
        }
    }

    /// The device control register as last written.
    pub fn device_control(&self) -> u8 {
        self.state.lock().control
    }

    /// The PRD table address the controller was last given (0: none yet).
    pub fn prd_table(&self) -> u64 {
        u64::from(self.state.lock().prd_table)
    }

    /// Performs the DMA held back in late mode, as a device that answers after
    /// the driver gave up, but only if the engine is still started: a stopped
    /// engine does no more DMA. Returns the bytes moved.
    pub fn finish_late(&self) -> u64 {
        let mut state = self.state.lock();
        let Some(dma) = state.held_back.take() else {
            return 0;
        };
        if state.bm_command & BM_START == 0 {
            return 0;
        }
        self.perform(&mut state, &dma)
    }

    /// Ends the flush a `slow_flush` drive is busy with (a reset ended it
    /// already if one came in between).
    pub fn finish_flush(&self) {
        let mut state = self.state.lock();
        if core::mem::take(&mut state.flushing) {
            self.flushed(&mut state);
        }
    }

    /// The drive ends a flush: its status, and an interrupt as for any command.
    fn flushed(&self, state: &mut State) {
        state.status = match self.device_fault.load(Ordering::Relaxed) {
            true => STATUS_READY | STATUS_FAULT | STATUS_ERROR,
            false => STATUS_READY,
        };
        state.bm_status |= BM_INTERRUPT;
    }

    /// Whether every page of `[address, address + length)` is allocated.
    fn memory(&self, address: u64, length: u64) -> Memory {
        let mut pages = (address / FRAME_SIZE)..(address + length).div_ceil(FRAME_SIZE);
        if pages.all(|page| self.platform.is_allocated(page * FRAME_SIZE)) { Memory::Allocated } else { Memory::Freed }
    }

    /// Whether every page of every region of `entries` is allocated.
    fn regions(&self, entries: &[PrdEntry]) -> Memory {
        let mut memories = entries.iter().map(|entry| self.memory(u64::from(entry.address), entry.length()));
        if memories.all(|memory| memory == Memory::Allocated) { Memory::Allocated } else { Memory::Freed }
    }

    /// Writes memory as the engine does, after checking that every page it
    /// touches is still allocated: a driver that gave memory back while the
    /// device could write it fails here.
    /// Moves data between `image` and memory through `entries`, from byte
    /// `position` of the image, at most `remaining` bytes, as the engine walks
    /// the table; returns where it stopped and what is left.
    fn move_through(
        &self,
        image: &mut [u8],
        operation: BlockOperation,
        entries: &[PrdEntry],
        (mut position, mut remaining): (usize, u64),
    ) -> (usize, u64) {
        for entry in entries {
            let length = entry.length().min(remaining) as usize;
            let address = u64::from(entry.address);
            match operation {
                BlockOperation::Read => self.write_memory(address, &image[position..position + length]),
                BlockOperation::Write => {
                    let mut bytes = vec![0; length];
                    self.platform.device_read(address, &mut bytes);
                    image[position..position + length].copy_from_slice(&bytes);
                }
            }
            position += length;
            remaining -= length as u64;
        }
        (position, remaining)
    }

    fn write_memory(&self, address: u64, bytes: &[u8]) {
        let end = address + bytes.len() as u64;
        for page in (address / FRAME_SIZE)..end.div_ceil(FRAME_SIZE) {
            let first = (page * FRAME_SIZE).max(address);
            assert!(self.platform.is_allocated(first), "device wrote into freed memory at {first:#x}");
        }
        self.hostility.lock().wrote(address, bytes.len() as u64);
        self.platform.device_write(address, bytes);
    }

    fn command(&self, state: &mut State, command: u8) {
        self.commands.lock().push(command);
        self.next_lie(state);
        if state.stalled.is_some() {
            // A drive in a command's data phase takes no other (ATA: the host
            // must not write a command while DRQ is set); a real one ignores it.
            return;
        }
        let drives = self.drives.lock();
        let Some(drive) = drives[usize::from(state.drive)].as_ref() else {
            state.status = 0;
            return;
        };
        match command {
            COMMAND_IDENTIFY => {
                let words = self.identify_words.lock().unwrap_or_else(|| drive.identity.to_words());
                state.identify = words.to_vec();
                state.identify.reverse();
                state.status = STATUS_READY | STATUS_DRQ;
            }
            COMMAND_READ_DMA | COMMAND_WRITE_DMA | COMMAND_READ_DMA_EXT | COMMAND_WRITE_DMA_EXT => {
                state.pending = Some(command);
                state.status = STATUS_READY | STATUS_DRQ;
            }
            COMMAND_FLUSH_CACHE_EXT if drive.identity.addressing == Addressing::Lba28 => {
                // Not in its feature set: aborted.
                state.status = STATUS_READY | STATUS_ERROR;
            }
            COMMAND_FLUSH_CACHE | COMMAND_FLUSH_CACHE_EXT => match self.slow_flush.load(Ordering::Relaxed) {
                true => {
                    state.status = STATUS_BUSY;
                    state.flushing = true;
                }
                false => self.flushed(state),
            },
            _ => state.status = STATUS_READY | STATUS_ERROR,
        }
    }

    /// The engine starts: it reads the PRD table for the pending DMA command and
    /// runs it, or holds it back in late mode.
    fn start_engine(&self, state: &mut State) {
        if let Some(stalled) = state.stalled.take() {
            let entries = self.read_table(state);
            self.resume(state, stalled, &entries);
            return;
        }
        let Some(command) = state.pending.take() else {
            return;
        };
        let dma = self.read_dma(state, command);
        if self.late.load(Ordering::Relaxed) || self.hostility.lock().holds_back() {
            // Busy for ever, as far as the driver can tell.
            state.bm_status = BM_ACTIVE;
            state.held_back = Some(dma);
            return;
        }
        self.perform(state, &dma);
    }

    /// The engine is stopped: it forgets what it was doing, and says what
    /// memory it had been given was still allocated at this moment.
    fn stop_engine(&self, state: &mut State) {
        state.bm_status &= !BM_ACTIVE;
        let table = match state.prd_table {
            0 => None,
            address => Some(self.memory(u64::from(address), TABLE_BYTES)),
        };
        let held_back = state.held_back.as_ref().map(|dma| self.regions(&dma.entries));
        self.stops.lock().push(EngineStop { table, held_back });
        if self.keeps_stopped_command.load(Ordering::Relaxed)
            && let Some(dma) = state.held_back.take()
        {
            // The drive did not see the engine stop: it waits to move the data.
            state.stalled = Some(Stalled::whole(&dma));
        }
    }

    /// The SRST bit of the device control register changed to `reset`.
    fn software_reset(&self, state: &mut State, reset: bool) {
        if reset {
            // Both drives are busy resetting; whatever command either had
            // ends, but a hung drive's.
            let hung = self.hung_drive.lock().map(usize::from);
            state.status = STATUS_BUSY;
            state.pending = None;
            state.held_back = None;
            state.flushing = false;
            state.stalled.take_if(|stalled| Some(stalled.drive) != hung);
            state.identify.clear();
            self.hostility.lock().reset();
            return;
        }
        self.resets.fetch_add(1, Ordering::Relaxed);
        // The reset is over: drive 0 is selected.
        state.drive = 0;
        state.status = self.status_of(state, 0);
    }

    /// What `drive` shows when it is selected and runs no command of ours:
    /// nothing if it is absent, DRQ if it holds a command in its data phase.
    fn status_of(&self, state: &State, drive: u8) -> u8 {
        let present = self.drives.lock()[usize::from(drive)].is_some();
        let in_data_phase = state.stalled.as_ref().is_some_and(|stalled| stalled.drive == usize::from(drive));
        match (present, in_data_phase) {
            (false, _) => 0,
            (true, true) => STATUS_READY | STATUS_DRQ,
            (true, false) => STATUS_READY,
        }
    }

    /// Decodes the drive's registers and walks the PRD table, checking every
    /// rule the datasheet gives.
    fn read_dma(&self, state: &State, command: u8) -> Dma {
        let extended = matches!(command, COMMAND_READ_DMA_EXT | COMMAND_WRITE_DMA_EXT);
        let operation = match command {
            COMMAND_READ_DMA | COMMAND_READ_DMA_EXT => BlockOperation::Read,
            _ => BlockOperation::Write,
        };
        let writes_memory = state.bm_command & BM_WRITES_MEMORY != 0;
        assert_eq!(writes_memory, operation == BlockOperation::Read, "bus-master direction does not match the command");
        let (sectors, lba) = if extended {
            let count = u64::from(state.count[1]) << 8 | u64::from(state.count[0]);
            let lba = (0..3).fold(0u64, |lba, i| {
                lba | u64::from(state.lba[i][0]) << (8 * i) | u64::from(state.lba[i][1]) << (24 + 8 * i)
            });
            (if count == 0 { 65536 } else { count }, lba)
        } else {
            let count = u64::from(state.count[0]);
            let lba = (0..3).fold(0u64, |lba, i| lba | u64::from(state.lba[i][0]) << (8 * i));
            (if count == 0 { 256 } else { count }, lba)
        };
        let entries = self.read_table(state);
        let total: u64 = entries.iter().map(|e| e.length()).sum();
        assert_eq!(total, sectors * SECTOR_SIZE, "PRD table and sector count disagree");
        Dma { operation, drive: usize::from(state.drive), lba, sectors, entries }
    }

    /// Walks the PRD table the engine was given, checking every rule the
    /// datasheet gives.
    fn read_table(&self, state: &State) -> Vec<PrdEntry> {
        let table = u64::from(state.prd_table);
        assert_eq!(self.memory(table, TABLE_BYTES), Memory::Allocated, "engine started on a freed PRD table");
        let mut entries = Vec::new();
        for index in 0..ENTRIES_PER_TABLE {
            let mut bytes = [0u8; 8];
            self.platform.device_read(table + 8 * index as u64, &mut bytes);
            let entry = PrdEntry::from_bytes(bytes);
            let (address, length) = (u64::from(entry.address), entry.length());
            assert!(address % 2 == 0 && length % 2 == 0, "PRD entry {index} not even: {entry:?}");
            assert!(
                address % REGION_LIMIT + length <= REGION_LIMIT,
                "PRD entry {index} crosses a 64 KiB boundary: {entry:?}"
            );
            assert!(address + length <= 1 << 32, "PRD entry {index} beyond 4 GiB");
            entries.push(entry);
            if entry.table_end() == TableEnd::Last {
                break;
            }
        }
        assert!(entries.last().is_some_and(|e| e.table_end() == TableEnd::Last), "PRD table without end");
        {
            let mut most = self.most_entries.lock();
            *most = (*most).max(entries.len());
        }
        *self.last_table.lock() = entries.clone();
        entries
    }

    /// Moves the data through the PRD regions, sets both statuses and raises
    /// the interrupt; returns the bytes moved.
    fn perform(&self, state: &mut State, dma: &Dma) -> u64 {
        state.bm_status = BM_INTERRUPT;
        if self.bus_error.load(Ordering::Relaxed) {
            if self.keeps_stopped_command.load(Ordering::Relaxed) {
                // The engine gave up (Active clear, Error set); the drive did
                // not, and raised no interrupt: it waits to move the data.
                state.bm_status = BM_ERROR;
                state.status = STATUS_READY | STATUS_DRQ;
                state.stalled = Some(Stalled::whole(dma));
                return 0;
            }
            state.bm_status |= BM_ERROR;
            state.status = STATUS_READY;
            return 0;
        }
        if self.device_fault.load(Ordering::Relaxed) {
            state.status = STATUS_READY | STATUS_FAULT | STATUS_ERROR;
            return 0;
        }
        let mut drives = self.drives.lock();
        let drive = drives[dma.drive].as_mut().expect("selected drive exists");
        let start = dma.lba * SECTOR_SIZE;
        let end = start + dma.sectors * SECTOR_SIZE;
        let bad = self.bad_sector.lock().filter(|&bad| bad >= dma.lba && bad < dma.lba + dma.sectors);
        // The sectors before a bad one are moved; a request past the image, none.
        let good_sectors = match bad {
            _ if end > drive.image.len() as u64 => 0,
            Some(bad) => bad - dma.lba,
            None => dma.sectors,
        };
        let short = self.short_sectors.lock().filter(|&short| short < good_sectors);
        let good_sectors = short.unwrap_or(good_sectors);
        self.move_through(&mut drive.image, dma.operation, &dma.entries, (start as usize, good_sectors * SECTOR_SIZE));
        let moved = good_sectors * SECTOR_SIZE;
        state.status = match short {
            // The drive is satisfied; the engine is left waiting for more.
            Some(_) => {
                state.bm_status |= BM_ACTIVE;
                STATUS_READY
            }
            None if good_sectors < dma.sectors => STATUS_READY | STATUS_ERROR,
            None => STATUS_READY,
        };
        moved
    }

    /// The engine was started while the drive held `stalled` in its data
    /// phase: the drive moves that command's data through `entries`, the new
    /// table, as far as the table reaches. If the table holds the rest, the
    /// drive ends the command and interrupts (the engine stays Active if the
    /// table is longer); if not, the engine runs out of entries (Active clear,
    /// no interrupt) and the drive waits for more.
    fn resume(&self, state: &mut State, stalled: Stalled, entries: &[PrdEntry]) {
        let mut drives = self.drives.lock();
        let drive = drives[stalled.drive].as_mut().expect("a stalled drive exists");
        let at = (stalled.position as usize, stalled.remaining);
        let (position, remaining) = self.move_through(&mut drive.image, stalled.operation, entries, at);
        let table: u64 = entries.iter().map(PrdEntry::length).sum();
        if remaining > 0 {
            state.bm_status = 0;
            state.status = STATUS_READY | STATUS_DRQ;
            state.stalled = Some(Stalled { position: position as u64, remaining, ..stalled });
            return;
        }
        state.bm_status = if table > stalled.remaining { BM_INTERRUPT | BM_ACTIVE } else { BM_INTERRUPT };
        state.status = STATUS_READY;
    }
}
