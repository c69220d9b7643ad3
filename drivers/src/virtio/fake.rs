//! A fake legacy virtio-blk device for host tests. It reads the queue and moves
//! data only through the addresses in the descriptors, in simulated physical
//! memory, like the real device does.
//!
//! It checks every write it makes: the memory must still be allocated, so a
//! driver that frees memory under a device fails its test. It can also answer
//! late, as a slow device does: with `late` set, a notify only takes the new
//! chains off the available ring, and [`FakeVirtio::finish_late`] runs them
//! later, unless the driver reset the device in between (a reset makes a device
//! forget its queue and everything on it).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::io::RegisterIo;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE, QueueLayout, VirtqDescriptor};
use super::registers::*;

/// Whether the fake disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// Reads and writes.
    Writable,
    /// Offers `VIRTIO_BLK_F_RO`.
    ReadOnly,
}

/// A chain taken off the available ring.
struct Chain {
    head: u16,
    descriptors: Vec<VirtqDescriptor>,
}

#[derive(Default)]
struct State {
    status: u8,
    accepted: u32,
    queue_page: u32,
    last_available: u16,
    used_index: u16,
    isr: u8,
    /// Chains taken but not run yet (late mode); a reset forgets them.
    pending: Vec<Chain>,
}

/// What the device held when the driver reset it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The device address of the queue it was using (0: none).
    pub queue_address: u64,
    /// Whether the queue memory was still allocated: a driver resets first and
    /// frees after.
    pub queue_memory_allocated: bool,
    /// Chains it had taken and not run yet, forgotten now.
    pub chains_forgotten: usize,
    /// Whether all memory those chains name was still allocated.
    pub chain_memory_allocated: bool,
}

/// The fake device: a disk image in memory and the legacy registers.
pub struct FakeVirtio {
    platform: &'static SimulatedPlatform,
    /// The disk image.
    pub disk: Mutex<Vec<u8>>,
    state: Mutex<State>,
    queue_size: u16,
    offered: u32,
    /// Sectors that fail with an I/O error.
    pub bad_sector: Option<u64>,
    /// `seg_max` in the configuration (0 is a broken device).
    pub seg_max: u32,
    /// Most data bytes a read writes: the device stops early, still reports OK,
    /// and its used element counts only the bytes it wrote.
    pub read_limit: Option<u64>,
    /// A notify only takes the chains; [`FakeVirtio::finish_late`] runs them.
    pub late: AtomicBool,
    /// Largest chain seen (descriptors).
    pub longest_chain: Mutex<usize>,
    /// Every reset, oldest first.
    pub resets: Mutex<Vec<Reset>>,
}

/// The registers of a shared fake.
pub struct FakeRegisters(pub Arc<FakeVirtio>);

impl FakeVirtio {
    /// A fake disk holding `contents`.
    pub fn new(platform: &'static SimulatedPlatform, contents: Vec<u8>, medium: Medium) -> Arc<FakeVirtio> {
        let read_only = match medium {
            Medium::Writable => 0,
            Medium::ReadOnly => FEATURE_READ_ONLY,
        };
        Arc::new(FakeVirtio {
            platform,
            disk: Mutex::new(contents),
            state: Mutex::new(State::default()),
            queue_size: 64,
            offered: FEATURE_SEG_MAX | read_only | 1 << 28,
            bad_sector: None,
            seg_max: 16,
            read_limit: None,
            late: AtomicBool::new(false),
            longest_chain: Mutex::new(0),
            resets: Mutex::new(Vec::new()),
        })
    }

    /// The device status register.
    pub fn device_status(&self) -> u8 {
        self.state.lock().status
    }

    /// Runs the chains a late notify took, unless a reset made the device
    /// forget them; returns how many ran.
    pub fn finish_late(&self) -> usize {
        let mut state = self.state.lock();
        let chains = core::mem::take(&mut state.pending);
        let count = chains.len();
        for chain in chains {
            self.finish(&mut state, chain);
        }
        count
    }

    fn read(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        self.platform.device_read(address, &mut bytes);
        bytes
    }

    fn read_u16(&self, address: u64) -> u16 {
        u16::from_le_bytes(self.read(address, 2).try_into().expect("two bytes"))
    }

    /// Whether every page of `[address, address + length)` is allocated.
    fn allocated(&self, address: u64, length: u64) -> bool {
        let first = address / FRAME_SIZE;
        let last = (address + length.max(1) - 1) / FRAME_SIZE;
        (first..=last).all(|page| self.platform.is_allocated(page * FRAME_SIZE))
    }

    /// The device's DMA write: memory it writes must still belong to someone.
    fn write(&self, address: u64, bytes: &[u8]) {
        assert!(self.allocated(address, bytes.len() as u64), "device wrote into freed memory at {address:#x}");
        self.platform.device_write(address, bytes);
    }

    /// Processes every new available entry (what QEMU does on a notify), or in
    /// late mode only takes them.
    fn process(&self) {
        let mut state = self.state.lock();
        assert_eq!(state.status & STATUS_DRIVER_OK, STATUS_DRIVER_OK, "notify before DRIVER_OK");
        let chains = self.take_available(&mut state);
        if self.late.load(Ordering::Relaxed) {
            state.pending.extend(chains);
            return;
        }
        for chain in chains {
            self.finish(&mut state, chain);
        }
    }

    /// Reads the chains the driver made available since the last call.
    fn take_available(&self, state: &mut State) -> Vec<Chain> {
        let base = u64::from(state.queue_page) * QUEUE_ALIGNMENT;
        let layout = QueueLayout::new(self.queue_size);
        let available = self.read_u16(base + layout.available_index());
        let mut chains = Vec::new();
        while state.last_available != available {
            let head = self.read_u16(base + layout.available_slot(state.last_available));
            let mut descriptors = Vec::new();
            let mut index = head;
            loop {
                let bytes: [u8; 16] = self.read(base + layout.descriptor(index), 16).try_into().expect("16 bytes");
                let descriptor = VirtqDescriptor::from_bytes(&bytes);
                descriptors.push(descriptor);
                if descriptor.flags & DESCRIPTOR_NEXT == 0 {
                    break;
                }
                index = descriptor.next;
            }
            {
                let mut longest = self.longest_chain.lock();
                *longest = (*longest).max(descriptors.len());
            }
            chains.push(Chain { head, descriptors });
            state.last_available = state.last_available.wrapping_add(1);
        }
        chains
    }

    /// Runs a chain and puts it on the used ring.
    fn finish(&self, state: &mut State, chain: Chain) {
        let base = u64::from(state.queue_page) * QUEUE_ALIGNMENT;
        let layout = QueueLayout::new(self.queue_size);
        let written = self.execute(&chain.descriptors);
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(chain.head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        self.write(base + layout.used_slot(state.used_index), &element);
        state.used_index = state.used_index.wrapping_add(1);
        self.write(base + layout.used_index(), &state.used_index.to_le_bytes());
        state.isr = 1;
    }

    /// Runs one request; returns the bytes written to the driver.
    fn execute(&self, chain: &[VirtqDescriptor]) -> u32 {
        let header = self.read(chain[0].address, 16);
        let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let status = chain[chain.len() - 1];
        assert!(status.flags & DESCRIPTOR_WRITE != 0 && status.length == 1, "status is one writable byte");
        let data = &chain[1..chain.len() - 1];
        let length: u64 = data.iter().map(|d| u64::from(d.length)).sum();
        let mut disk = self.disk.lock();
        let start = sector * SECTOR_SIZE;
        let bad = self.bad_sector.is_some_and(|bad| bad >= sector && bad * SECTOR_SIZE < start + length);
        if bad || start + length > disk.len() as u64 {
            self.write(status.address, &[STATUS_IOERR]);
            return 1;
        }
        let mut remaining = match kind {
            REQUEST_IN => self.read_limit.unwrap_or(length).min(length),
            _ => length,
        };
        let moved = remaining;
        let mut position = start as usize;
        for descriptor in data {
            let length = u64::from(descriptor.length).min(remaining) as usize;
            if kind == REQUEST_IN {
                assert!(descriptor.flags & DESCRIPTOR_WRITE != 0, "read data must be device-writable");
                self.write(descriptor.address, &disk[position..position + length]);
            } else {
                assert!(descriptor.flags & DESCRIPTOR_WRITE == 0, "write data must be device-readable");
                let bytes = self.read(descriptor.address, length);
                disk[position..position + length].copy_from_slice(&bytes);
            }
            position += length;
            remaining -= length as u64;
        }
        self.write(status.address, &[STATUS_OK]);
        if kind == REQUEST_IN { moved as u32 + 1 } else { 1 }
    }

    /// What a reset makes the device forget, for the test to look at.
    fn record_reset(&self, state: &State) -> Reset {
        let queue_address = u64::from(state.queue_page) * QUEUE_ALIGNMENT;
        let queue_length = QueueLayout::new(self.queue_size).total;
        let queue_memory_allocated = queue_address != 0 && self.allocated(queue_address, queue_length);
        let chain_memory_allocated = state
            .pending
            .iter()
            .flat_map(|chain| &chain.descriptors)
            .all(|descriptor| self.allocated(descriptor.address, u64::from(descriptor.length)));
        Reset { queue_address, queue_memory_allocated, chains_forgotten: state.pending.len(), chain_memory_allocated }
    }
}

impl RegisterIo for FakeRegisters {
    fn read8(&self, offset: u16) -> u8 {
        let mut state = self.0.state.lock();
        match offset {
            DEVICE_STATUS => state.status,
            ISR_STATUS => core::mem::take(&mut state.isr),
            _ => panic!("read8 of {offset:#x}"),
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        match offset {
            QUEUE_SIZE => self.0.queue_size,
            _ => panic!("read16 of {offset:#x}"),
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        let sectors = self.0.disk.lock().len() as u64 / SECTOR_SIZE;
        match offset {
            DEVICE_FEATURES => self.0.offered,
            BLOCK_CAPACITY => sectors as u32,
            o if o == BLOCK_CAPACITY + 4 => (sectors >> 32) as u32,
            BLOCK_SEG_MAX => self.0.seg_max,
            _ => panic!("read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        assert_eq!(offset, DEVICE_STATUS, "write8 of {offset:#x}");
        let mut state = self.0.state.lock();
        if value == 0 {
            let reset = self.0.record_reset(&state);
            self.0.resets.lock().push(reset);
            *state = State::default();
        }
        state.status = value;
    }

    fn write16(&self, offset: u16, value: u16) {
        match offset {
            QUEUE_SELECT => assert_eq!(value, 0, "one queue"),
            QUEUE_NOTIFY => self.0.process(),
            _ => panic!("write16 of {offset:#x}"),
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        let mut state = self.0.state.lock();
        match offset {
            GUEST_FEATURES => {
                assert_eq!(value & !self.0.offered, 0, "accepted a feature not offered");
                state.accepted = value;
            }
            QUEUE_ADDRESS => state.queue_page = value,
            _ => panic!("write32 of {offset:#x}"),
        }
    }
}
