//! A fake PIIX IDE channel for host tests. Like the real controller it walks the
//! PRD table in (simulated) physical memory and moves data only through it; unlike
//! QEMU it also checks every rule the hardware documents (even addresses, no
//! region across a 64 KiB boundary, nothing above 4 GiB), so a driver that breaks
//! one fails the test.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::io::RegisterIo;
use spin::Mutex;

use super::identify::Identity;
use super::prd::{END_OF_TABLE, ENTRIES_PER_TABLE, PrdEntry, REGION_LIMIT};
use super::registers::*;

/// A drive on the fake channel.
pub struct FakeDrive {
    pub image: Vec<u8>,
    pub identity: Identity,
}

#[derive(Default)]
struct State {
    drive: u8,
    count: [u8; 2],
    lba: [[u8; 2]; 3],
    status: u8,
    identify: Vec<u16>,
    pending: Option<u8>,
    bm_command: u8,
    bm_status: u8,
    prd_table: u32,
}

/// The fake channel.
pub struct FakeChannel {
    platform: &'static SimulatedPlatform,
    pub drives: Mutex<[Option<FakeDrive>; 2]>,
    state: Mutex<State>,
    /// Every command byte received.
    pub commands: Mutex<Vec<u8>>,
    /// Most PRD entries in one transfer.
    pub most_entries: Mutex<usize>,
    /// A sector that fails.
    pub bad_sector: Mutex<Option<u64>>,
}

/// Which register block a port window shows.
#[derive(Clone, Copy)]
pub enum Block {
    Command,
    Control,
    BusMaster,
}

/// One register block of a shared fake channel.
pub struct FakePorts(pub Arc<FakeChannel>, pub Block);

impl FakeChannel {
    pub fn new(
        platform: &'static SimulatedPlatform,
        master: Option<FakeDrive>,
        slave: Option<FakeDrive>,
    ) -> Arc<FakeChannel> {
        Arc::new(FakeChannel {
            platform,
            drives: Mutex::new([master, slave]),
            state: Mutex::new(State { status: STATUS_READY, ..State::default() }),
            commands: Mutex::new(Vec::new()),
            most_entries: Mutex::new(0),
            bad_sector: Mutex::new(None),
        })
    }

    fn command(&self, state: &mut State, command: u8) {
        self.commands.lock().push(command);
        let drives = self.drives.lock();
        let Some(drive) = drives[usize::from(state.drive)].as_ref() else {
            state.status = 0;
            return;
        };
        match command {
            COMMAND_IDENTIFY => {
                state.identify = drive.identity.to_words().to_vec();
                state.identify.reverse();
                state.status = STATUS_READY | STATUS_DRQ;
            }
            COMMAND_READ_DMA | COMMAND_WRITE_DMA | COMMAND_READ_DMA_EXT | COMMAND_WRITE_DMA_EXT => {
                state.pending = Some(command);
                state.status = STATUS_READY | STATUS_DRQ;
            }
            _ => state.status = STATUS_READY | STATUS_ERROR,
        }
    }

    /// The bus-master engine runs the pending DMA command through the PRD table.
    fn run(&self, state: &mut State) {
        let Some(command) = state.pending.take() else {
            return;
        };
        let extended = matches!(command, COMMAND_READ_DMA_EXT | COMMAND_WRITE_DMA_EXT);
        let read = matches!(command, COMMAND_READ_DMA | COMMAND_READ_DMA_EXT);
        assert_eq!(state.bm_command & BM_WRITES_MEMORY != 0, read, "bus-master direction does not match the command");
        let (count, lba) = if extended {
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
        let mut entries = Vec::new();
        for index in 0..ENTRIES_PER_TABLE {
            let mut bytes = [0u8; 8];
            self.platform.device_read(u64::from(state.prd_table) + 8 * index as u64, &mut bytes);
            let entry = PrdEntry::from_bytes(bytes);
            let (address, length) = (u64::from(entry.address), entry.length());
            assert!(address % 2 == 0 && length % 2 == 0, "PRD entry {index} not even: {entry:?}");
            assert!(
                address % REGION_LIMIT + length <= REGION_LIMIT,
                "PRD entry {index} crosses a 64 KiB boundary: {entry:?}"
            );
            assert!(address + length <= 1 << 32, "PRD entry {index} beyond 4 GiB");
            entries.push(entry);
            if entry.flags & END_OF_TABLE != 0 {
                break;
            }
        }
        assert!(entries.last().is_some_and(|e| e.flags & END_OF_TABLE != 0), "PRD table without end");
        {
            let mut most = self.most_entries.lock();
            *most = (*most).max(entries.len());
        }
        let total: u64 = entries.iter().map(|e| e.length()).sum();
        assert_eq!(total, count * SECTOR_SIZE, "PRD table and sector count disagree");
        let mut drives = self.drives.lock();
        let drive = drives[usize::from(state.drive)].as_mut().expect("selected drive exists");
        let start = (lba * SECTOR_SIZE) as usize;
        let bad = self.bad_sector.lock().is_some_and(|bad| bad >= lba && bad < lba + count);
        if bad || start + total as usize > drive.image.len() {
            state.status = STATUS_READY | STATUS_ERROR;
            state.bm_status = BM_INTERRUPT;
            return;
        }
        let mut position = start;
        for entry in entries {
            let length = entry.length() as usize;
            if read {
                self.platform.device_write(u64::from(entry.address), &drive.image[position..position + length]);
            } else {
                let mut bytes = vec![0; length];
                self.platform.device_read(u64::from(entry.address), &mut bytes);
                drive.image[position..position + length].copy_from_slice(&bytes);
            }
            position += length;
        }
        state.status = STATUS_READY;
        state.bm_status = BM_INTERRUPT;
    }
}

fn push(pair: &mut [u8; 2], value: u8) {
    pair[1] = pair[0];
    pair[0] = value;
}

impl RegisterIo for FakePorts {
    fn read8(&self, offset: u16) -> u8 {
        let state = self.0.state.lock();
        match (self.1, offset) {
            (Block::Command, STATUS) | (Block::Control, DEVICE_CONTROL) => state.status,
            (Block::Command, LBA_MID | LBA_HIGH) => 0,
            (Block::BusMaster, BM_STATUS) => state.bm_status,
            _ => panic!("read8 of {offset:#x}"),
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        assert!(matches!(self.1, Block::Command) && offset == DATA, "read16 of {offset:#x}");
        let mut state = self.0.state.lock();
        let word = state.identify.pop().unwrap_or(0);
        if state.identify.is_empty() {
            state.status = STATUS_READY;
        }
        word
    }

    fn read32(&self, offset: u16) -> u32 {
        panic!("read32 of {offset:#x}")
    }

    fn write8(&self, offset: u16, value: u8) {
        let mut state = self.0.state.lock();
        match (self.1, offset) {
            (Block::Command, SECTOR_COUNT) => push(&mut state.count, value),
            (Block::Command, LBA_LOW) => push(&mut state.lba[0], value),
            (Block::Command, LBA_MID) => push(&mut state.lba[1], value),
            (Block::Command, LBA_HIGH) => push(&mut state.lba[2], value),
            (Block::Command, DRIVE) => {
                assert_eq!(value & DRIVE_LBA, DRIVE_LBA, "LBA mode");
                state.drive = (value >> 4) & 1;
                let present = self.0.drives.lock()[usize::from(state.drive)].is_some();
                state.status = if present { STATUS_READY } else { 0 };
            }
            (Block::Command, STATUS) => self.0.command(&mut state, value),
            (Block::Control, DEVICE_CONTROL) => {}
            (Block::BusMaster, BM_COMMAND) => {
                state.bm_command = value;
                if value & BM_START != 0 {
                    self.0.run(&mut state);
                }
            }
            (Block::BusMaster, BM_STATUS) => state.bm_status &= !(value & (BM_ERROR | BM_INTERRUPT)),
            _ => panic!("write8 of {offset:#x}"),
        }
    }

    fn write16(&self, offset: u16, _value: u16) {
        panic!("write16 of {offset:#x}")
    }

    fn write32(&self, offset: u16, value: u32) {
        assert!(matches!(self.1, Block::BusMaster) && offset == BM_PRD_TABLE, "write32 of {offset:#x}");
        assert_eq!(value % 4, 0, "PRD table must be dword aligned");
        self.0.state.lock().prd_table = value;
    }
}
