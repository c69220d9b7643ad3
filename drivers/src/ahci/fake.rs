//! A fake AHCI HBA for host tests, with one SATA disk on port 0 (port 1 is
//! implemented but empty). Like the real HBA it reads the command list, the
//! command tables and their PRDTs from (simulated) physical memory and moves
//! data only through the PRDT it was given; it checks the rules AHCI sets
//! (alignment, even counts, 32-bit addresses without S64A) and asserts that
//! every page it writes is still allocated.
//!
//! Queued (NCQ) commands complete at once, or are held until the test
//! completes them, in the order it chooses. The drive keeps what it queued
//! when PxCMD.ST is cleared (as QEMU's NCQ I/O runs on): only a COMRESET or
//! an HBA reset makes it drop them, and a tag issued again while the drive
//! still holds it is a protocol error the fake refuses. After a COMRESET the
//! drive is busy (PxTFD.BSY) for a moment, and setting PxCMD.ST before it is
//! ready breaks AHCI 1.3.1, 10.1.2.
//!
//! A flush (FLUSH CACHE EXT or FLUSH CACHE) is a non-queued command: issued
//! while queued commands are outstanding, or a queued one issued while it
//! runs, is the protocol error a real drive aborts everything for, and the
//! fake refuses it (QEMU does not check). It completes at once, or with
//! `hold` waits for [`FakeHba::complete_flush`].
//!
//! A failing LBA fails its command the way QEMU 7.2 does (PxSERR bit of the
//! tag, PxSACT bit left set, PxTFD ERR + ABRT, SDBS only) or, with
//! [`NcqErrorReport::Specification`], as AHCI and QEMU 8.2 do (TFES, no
//! PxSERR bit). The link can report SError events on a healthy port
//! ([`FakeHba::link_event`]). A silent drive never answers; a stuck port never stops
//! (PxCMD.CR stays set, even through a port reset), though clearing PxCMD.ST
//! still clears PxCI and PxSACT as AHCI says, and the commands it held still
//! move their data when the test completes them.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use dmakit::block::BlockOperation;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::identify::{DriveIdentity, words_to_bytes};
use super::registers::*;
use super::structures::*;
use crate::ata::registers::{COMMAND_FLUSH_CACHE, COMMAND_FLUSH_CACHE_EXT};

mod hostile;
mod registers;

use hostile::Hostility;
pub use hostile::{Busy, Lie};

/// The disk on port 0.
pub struct FakeDisk {
    /// The disk's bytes.
    pub image: Vec<u8>,
    /// What IDENTIFY answers.
    pub identity: DriveIdentity,
}

/// What the fake saw when the driver cleared PxCMD.ST: whether the command
/// list, the FIS area and the tables of the commands it held were still
/// allocated (they must be: the port may use them until it stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStop {
    /// Every page was allocated.
    pub memory_allocated: bool,
    /// Commands the port held at that moment (issued or queued).
    pub commands_held: usize,
}

/// How a failed NCQ command is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NcqErrorReport {
    /// QEMU before 8.2: the tag's bit in PxSERR, PxTFD ERR + ABRT, SDBS only.
    Qemu7,
    /// AHCI (and QEMU 8.2): PxTFD ERR + ABRT and PxIS.TFES; PxSERR untouched.
    Specification,
}

/// Looks at PxTFD that find the drive busy after a COMRESET.
const BUSY_LOOKS_AFTER_RESET: u32 = 2;

/// A queued command waiting to complete.
struct Queued {
    tag: usize,
    operation: BlockOperation,
    lba: u64,
    sectors: u64,
    entries: Vec<PrdtEntry>,
}

#[derive(Default)]
struct Port {
    clb: [u32; 2],
    fb: [u32; 2],
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    queued: Vec<Queued>,
    /// The slot of a flush held for [`FakeHba::complete_flush`].
    held_flush: Option<usize>,
    /// Looks at PxTFD left before the drive is ready after a COMRESET.
    busy_looks: u32,
}

struct State {
    cap: u32,
    ghc: u32,
    is: u32,
    port: Port,
}

/// The fake HBA.
pub struct FakeHba {
    platform: &'static SimulatedPlatform,
    state: Mutex<State>,
    /// The disk on port 0.
    pub disk: Mutex<FakeDisk>,
    /// A sector whose commands fail.
    pub bad_lba: Mutex<Option<u64>>,
    /// How a failed NCQ command is reported.
    pub ncq_errors: Mutex<NcqErrorReport>,
    /// After a COMRESET the drive stays busy until [`FakeHba::drive_ready`].
    pub busy_after_reset: AtomicBool,
    /// Queued commands wait for [`FakeHba::complete`].
    pub hold: AtomicBool,
    /// Commands are taken and never answered.
    pub silent: AtomicBool,
    /// The port never stops.
    pub stuck: AtomicBool,
    /// Every ATA command received.
    pub commands: Mutex<Vec<u8>>,
    /// Every flush received: (command, PRDT entries in its header, whether
    /// the header's W bit was set).
    pub flushes: Mutex<Vec<(u8, u16, bool)>>,
    /// Flushes fail (PxTFD ERR + ABRT, TFES; PxCI bit left set).
    pub flush_fails: AtomicBool,
    /// Every clearing of PxCMD.ST.
    pub stops: Mutex<Vec<PortStop>>,
    /// The most commands queued at once.
    pub most_queued: Mutex<usize>,
    /// The highest address a PRDT entry reached (one past its end).
    pub highest_address: Mutex<u64>,
    /// HBA resets seen.
    pub resets: Mutex<usize>,
    /// What the drive answers IDENTIFY with instead of its identity's words.
    pub identify_words: Mutex<Option<[u16; 256]>>,
    /// PI: the ports implemented (0 and 1 unless a test says otherwise; any
    /// port but 0 is empty).
    pub ports_implemented: AtomicU32,
    /// Bytes of the ABAR: an access past them panics, as the kernel's MMIO
    /// window asserts (0x1100 holds all 32 ports; QEMU's is 0x1000).
    pub abar_bytes: AtomicU32,
    /// The lying mode (`fake/hostile.rs`): off unless a test switches it on.
    hostility: Mutex<Hostility>,
}

/// The HBA's registers (its ABAR), as the driver sees them.
pub struct FakeRegisters(pub Arc<FakeHba>);

fn read_from(platform: &SimulatedPlatform, address: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    platform.device_read(address, &mut bytes);
    bytes
}

impl FakeHba {
    /// An HBA with 32 slots, NCQ and S64A as asked, and `disk` on port 0.
    pub fn new(platform: &'static SimulatedPlatform, addresses_64_bit: bool, disk: FakeDisk) -> Arc<FakeHba> {
        let mut cap = 1 | 31 << CAP_SLOTS_SHIFT | CAP_NCQ;
        if addresses_64_bit {
            cap |= CAP_64_BIT;
        }
        Arc::new(FakeHba {
            platform,
            state: Mutex::new(State { cap, ghc: 0, is: 0, port: Port { tfd: 0x50, ..Port::default() } }),
            disk: Mutex::new(disk),
            bad_lba: Mutex::new(None),
            ncq_errors: Mutex::new(NcqErrorReport::Qemu7),
            busy_after_reset: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            commands: Mutex::new(Vec::new()),
            flushes: Mutex::new(Vec::new()),
            flush_fails: AtomicBool::new(false),
            stops: Mutex::new(Vec::new()),
            most_queued: Mutex::new(0),
            highest_address: Mutex::new(0),
            resets: Mutex::new(0),
            identify_words: Mutex::new(None),
            ports_implemented: AtomicU32::new(0b11),
            abar_bytes: AtomicU32::new(0x1100),
            hostility: Mutex::new(Hostility::default()),
        })
    }

    /// Panics for a register past the ABAR, as the kernel's MMIO window does.
    fn inside_abar(&self, offset: u16) {
        let bytes = self.abar_bytes.load(Ordering::Relaxed);
        assert!(u32::from(offset) + 4 <= bytes, "register offset {offset:#x} outside the {bytes:#x}-byte ABAR");
    }

    /// The command list address port 0 was given.
    pub fn command_list(&self) -> u64 {
        let port = &self.state.lock().port;
        u64::from(port.clb[1]) << 32 | u64::from(port.clb[0])
    }

    /// The link had an event (`bits` of SError), the drive and its commands
    /// are fine: a real HBA sets such bits on a healthy port.
    pub fn link_event(&self, bits: u32) {
        self.state.lock().port.serr |= bits;
    }

    /// Port 0's PxCMD.
    pub fn port_command(&self) -> u32 {
        self.state.lock().port.cmd
    }

    /// Tags of the queued commands waiting to complete.
    pub fn queued_tags(&self) -> Vec<usize> {
        self.state.lock().port.queued.iter().map(|queued| queued.tag).collect()
    }

    /// Completes the flush held with `hold`, if there is one.
    pub fn complete_flush(&self) {
        let mut state = self.state.lock();
        if let Some(slot) = state.port.held_flush.take() {
            self.finish_flush(&mut state, slot);
        }
    }

    /// Ends the flush in `slot` as a non-queued command ends: its PxCI bit
    /// cleared and a D2H register FIS, or an error that leaves the bit set.
    fn finish_flush(&self, state: &mut State, slot: usize) {
        if self.flush_fails.load(Ordering::Relaxed) {
            state.port.tfd = 0x51 | TFD_ABORTED;
            state.port.is |= IS_TASK_FILE_ERROR;
            return;
        }
        state.port.ci &= !(1 << slot);
        state.port.tfd = 0x50;
        state.port.is |= IS_REGISTER_FIS;
    }

    /// Completes the queued command with tag `tag`, if there is one.
    pub fn complete(&self, tag: usize) {
        let mut state = self.state.lock();
        if let Some(position) = state.port.queued.iter().position(|queued| queued.tag == tag) {
            let queued = state.port.queued.remove(position);
            self.finish_queued(&mut state, &queued);
        }
    }

    /// The drive that stayed busy after a COMRESET is ready.
    pub fn drive_ready(&self) {
        let port = &mut self.state.lock().port;
        port.busy_looks = 0;
        port.tfd = 0x50;
    }

    fn allocated(&self, address: u64, length: u64) -> bool {
        (address / FRAME_SIZE..(address + length).div_ceil(FRAME_SIZE))
            .all(|page| self.platform.is_allocated(page * FRAME_SIZE))
    }

    fn read_header(&self, state: &State, slot: usize) -> CommandHeader {
        let list = u64::from(state.port.clb[1]) << 32 | u64::from(state.port.clb[0]);
        assert!(self.allocated(list, COMMAND_LIST_BYTES), "the port read a freed command list");
        let bytes = read_from(self.platform, list + 32 * slot as u64, 32);
        CommandHeader::from_bytes(bytes.as_slice().try_into().unwrap())
    }

    fn write_bytes_moved(&self, state: &State, slot: usize, moved: u64) {
        let list = u64::from(state.port.clb[1]) << 32 | u64::from(state.port.clb[0]);
        self.platform.device_write(list + 32 * slot as u64 + 4, &(moved as u32).to_le_bytes());
    }

    /// Reads the PRDT of `header`, checking every rule.
    fn read_prdt(&self, state: &State, header: &CommandHeader) -> Vec<PrdtEntry> {
        let table = header.table_address();
        assert_eq!(table % 128, 0, "command table not 128-byte aligned");
        let entries = usize::from(header.prdt_length);
        assert!(entries <= PRDT_ENTRIES, "PRDT longer than the table");
        let bytes = read_from(self.platform, table + PRDT_OFFSET, 16 * entries);
        let (records, _) = bytes.as_chunks::<16>();
        let entries: Vec<PrdtEntry> = records.iter().map(PrdtEntry::from_bytes).collect();
        for entry in &entries {
            let segment = entry.segment();
            let address = segment.address.as_u64();
            assert!(address % 2 == 0 && segment.length % 2 == 0, "PRDT entry not word aligned: {entry:?}");
            assert!(segment.length <= PRDT_ENTRY_LIMIT, "PRDT entry over 4 MiB");
            if state.cap & CAP_64_BIT == 0 {
                assert!(segment.end() <= 1 << 32, "a 32-bit HBA was given {address:#x}");
            }
            let mut highest = self.highest_address.lock();
            *highest = (*highest).max(segment.end());
        }
        entries
    }

    /// Moves `sectors` at `lba` through `entries`; `false` for a bad sector.
    fn transfer(&self, operation: BlockOperation, lba: u64, sectors: u64, entries: &[PrdtEntry]) -> bool {
        let mut disk = self.disk.lock();
        let end = lba + sectors;
        let bad = self.bad_lba.lock().is_some_and(|bad| (lba..end).contains(&bad));
        if bad || end * SECTOR_SIZE > disk.image.len() as u64 {
            return false;
        }
        let total: u64 = entries.iter().map(|entry| entry.segment().length).sum();
        assert!(total >= sectors * SECTOR_SIZE, "PRDT shorter than the command");
        let mut position = (lba * SECTOR_SIZE) as usize;
        let mut remaining = sectors * SECTOR_SIZE;
        for entry in entries {
            let segment = entry.segment();
            let length = segment.length.min(remaining) as usize;
            let address = segment.address.as_u64();
            match operation {
                BlockOperation::Read => {
                    assert!(
                        self.allocated(address, length as u64),
                        "the device wrote into freed memory at {address:#x}"
                    );
                    self.hostility.lock().wrote(address, length as u64);
                    self.platform.device_write(address, &disk.image[position..position + length]);
                }
                BlockOperation::Write => {
                    let bytes = read_from(self.platform, address, length);
                    disk.image[position..position + length].copy_from_slice(&bytes);
                }
            }
            position += length;
            remaining -= length as u64;
        }
        true
    }

    fn finish_queued(&self, state: &mut State, queued: &Queued) {
        let bit = 1 << queued.tag;
        if self.transfer(queued.operation, queued.lba, queued.sectors, &queued.entries) {
            state.port.sact &= !bit;
            state.port.tfd = 0x40;
        } else {
            // The tag's PxSACT bit stays set.
            state.port.tfd = 0x41 | TFD_ABORTED;
            match *self.ncq_errors.lock() {
                // QEMU before 8.2: the tag's PxSERR bit, SDBS only.
                NcqErrorReport::Qemu7 => state.port.serr |= bit,
                NcqErrorReport::Specification => state.port.is |= IS_TASK_FILE_ERROR,
            }
        }
        state.port.is |= IS_SET_DEVICE_BITS;
    }

    /// Runs the commands issued in PxCI while the port is started.
    fn run_issued(&self, state: &mut State) {
        if state.port.cmd & CMD_START == 0 || self.silent.load(Ordering::Relaxed) {
            return;
        }
        for slot in 0..32 {
            if state.port.ci & (1 << slot) != 0 && state.port.held_flush != Some(slot) {
                self.run(state, slot);
            }
        }
    }

    fn run(&self, state: &mut State, slot: usize) {
        let header = self.read_header(state, slot);
        assert_eq!(header.flags & 0x1f, HEADER_FIS_DWORDS, "CFL");
        let fis = RegisterFis::from_bytes(
            read_from(self.platform, header.table_address(), 20).as_slice().try_into().unwrap(),
        );
        assert_eq!((fis.fis_type, fis.flags), (FIS_TYPE_REGISTER_H2D, FIS_COMMAND));
        let entries = self.read_prdt(state, &header);
        self.commands.lock().push(fis.command);
        let writes = header.flags & HEADER_WRITE != 0;
        let bit = 1 << slot;
        match fis.command {
            COMMAND_IDENTIFY => {
                let words = self.identify_words.lock().unwrap_or_else(|| self.disk.lock().identity.to_words());
                let bytes = words_to_bytes(&words);
                let segment = entries[0].segment();
                assert!(self.allocated(segment.address.as_u64(), 512));
                self.platform.device_write(segment.address.as_u64(), &bytes[..segment.length.min(512) as usize]);
                self.write_bytes_moved(state, slot, 512);
                state.port.ci &= !bit;
                state.port.tfd = 0x50;
                state.port.is |= IS_PIO_SETUP | IS_REGISTER_FIS;
            }
            COMMAND_READ_DMA_EXT | COMMAND_WRITE_DMA_EXT => {
                let operation = if writes { BlockOperation::Write } else { BlockOperation::Read };
                assert_eq!(operation == BlockOperation::Write, fis.command == COMMAND_WRITE_DMA_EXT, "W bit");
                let sectors = u64::from(fis.count) | u64::from(fis.count_upper) << 8;
                if self.transfer(operation, fis.lba(), sectors, &entries) {
                    self.write_bytes_moved(state, slot, sectors * SECTOR_SIZE);
                    state.port.ci &= !bit;
                    state.port.tfd = 0x50;
                    state.port.is |= IS_REGISTER_FIS;
                } else {
                    // AHCI: a failed non-queued command keeps its PxCI bit.
                    state.port.tfd = 0x51 | TFD_ABORTED;
                    state.port.is |= IS_TASK_FILE_ERROR;
                }
            }
            COMMAND_FLUSH_CACHE | COMMAND_FLUSH_CACHE_EXT => {
                assert!(
                    state.port.sact == 0 && state.port.queued.is_empty(),
                    "a non-queued flush ({:#x}) issued while NCQ commands are outstanding (PxSACT {:#x})",
                    fis.command,
                    state.port.sact
                );
                self.flushes.lock().push((fis.command, header.prdt_length, writes));
                if self.hold.load(Ordering::Relaxed) {
                    state.port.held_flush = Some(slot);
                    state.port.tfd = TFD_BUSY;
                } else {
                    self.finish_flush(state, slot);
                }
            }
            COMMAND_READ_FPDMA_QUEUED | COMMAND_WRITE_FPDMA_QUEUED => {
                assert!(state.port.held_flush.is_none(), "an NCQ command issued while a non-queued flush runs");
                let tag = usize::from(fis.count >> 3);
                assert_eq!(tag, slot, "the NCQ tag is the slot");
                assert!(
                    state.port.queued.iter().all(|queued| queued.tag != tag),
                    "tag {tag} issued again while the drive still holds it (no COMRESET made it drop it)"
                );
                assert!(state.port.sact & bit != 0, "PxSACT set before PxCI");
                let operation = if writes { BlockOperation::Write } else { BlockOperation::Read };
                assert_eq!(operation == BlockOperation::Write, fis.command == COMMAND_WRITE_FPDMA_QUEUED, "W bit");
                let sectors = u64::from(fis.features) | u64::from(fis.features_upper) << 8;
                state.port.ci &= !bit;
                let queued = Queued { tag, operation, lba: fis.lba(), sectors, entries };
                if self.hold.load(Ordering::Relaxed) {
                    state.port.queued.push(queued);
                    let mut most = self.most_queued.lock();
                    *most = (*most).max(state.port.queued.len());
                } else {
                    self.finish_queued(state, &queued);
                }
            }
            other => panic!("unexpected ATA command {other:#x}"),
        }
        self.lie_after(state, slot);
    }

    fn port_write(&self, state: &mut State, register: u16, value: u32) {
        let port = &mut state.port;
        match register {
            PX_CLB => port.clb[0] = value,
            PX_CLBU => port.clb[1] = value,
            PX_FB => port.fb[0] = value,
            PX_FBU => port.fb[1] = value,
            PX_IS => port.is &= !value,
            PX_IE => port.ie = value,
            PX_CMD => {
                let was = port.cmd;
                assert!(
                    was & CMD_START != 0 || value & CMD_START == 0 || port.tfd & (TFD_BUSY | TFD_DATA_REQUEST) == 0,
                    "PxCMD.ST set while the drive is busy (PxTFD {:#x}; AHCI 1.3.1, 10.1.2)",
                    port.tfd
                );
                let stuck = self.stuck.load(Ordering::Relaxed);
                port.cmd = value & (CMD_START | CMD_SPIN_UP | CMD_POWER_ON | CMD_FIS_RECEIVE);
                if value & CMD_START != 0 || (stuck && was & CMD_LIST_RUNNING != 0) {
                    port.cmd |= CMD_LIST_RUNNING;
                }
                if value & CMD_FIS_RECEIVE != 0 || (stuck && was & CMD_FIS_RUNNING != 0) {
                    port.cmd |= CMD_FIS_RUNNING;
                }
                if was & CMD_START != 0 && value & CMD_START == 0 {
                    self.port_stopped(state);
                }
                self.run_issued(state);
            }
            PX_SCTL => {
                let reset_ends = port.sctl & SSTS_DETECTION_MASK == SCTL_RESET && value & SSTS_DETECTION_MASK == 0;
                port.sctl = value;
                if reset_ends && !self.stuck.load(Ordering::Relaxed) {
                    // COMRESET: the drive drops what it held, and is busy
                    // until it has sent its signature.
                    port.queued.clear();
                    port.sact = 0;
                    self.hostility.lock().reset();
                    port.tfd = TFD_BUSY;
                    port.busy_looks = match self.busy_after_reset.load(Ordering::Relaxed) {
                        true => u32::MAX,
                        false => BUSY_LOOKS_AFTER_RESET,
                    };
                }
            }
            PX_SERR => port.serr &= !value,
            PX_SACT => port.sact |= value,
            PX_CI => {
                self.next_lie();
                port.ci |= value;
                self.run_issued(state);
            }
            _ => panic!("write of port register {register:#x}"),
        }
    }

    /// PxCMD.ST went from 1 to 0: records whether the memory the port used
    /// was still allocated. PxCI and PxSACT clear at the write, even on a
    /// stuck port (AHCI 1.3.1, 3.3.14 and 3.3.15), so they no longer say what
    /// it holds; the drive keeps the commands it queued (only a COMRESET
    /// drops them).
    fn port_stopped(&self, state: &mut State) {
        let port = &mut state.port;
        let list = u64::from(port.clb[1]) << 32 | u64::from(port.clb[0]);
        let fis = u64::from(port.fb[1]) << 32 | u64::from(port.fb[0]);
        let tables_allocated = port.queued.iter().all(|queued| {
            queued.entries.iter().all(|entry| self.allocated(entry.segment().address.as_u64(), entry.segment().length))
        });
        let memory_allocated = self.allocated(list, COMMAND_LIST_BYTES) && self.allocated(fis, 256) && tables_allocated;
        let commands_held = port.queued.len() + port.ci.count_ones() as usize;
        self.stops.lock().push(PortStop { memory_allocated, commands_held });
        port.ci = 0;
        port.sact = 0;
        port.held_flush = None;
    }
}
