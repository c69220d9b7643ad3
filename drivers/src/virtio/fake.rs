//! A fake legacy virtio-blk device for host tests. It reads the queue and moves
//! data only through the addresses in the descriptors, in simulated physical
//! memory, like the real device does.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::io::RegisterIo;
use spin::Mutex;

use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE, QueueLayout, VirtqDescriptor};
use super::registers::*;

#[derive(Default)]
struct State {
    status: u8,
    accepted: u32,
    queue_page: u32,
    last_available: u16,
    used_index: u16,
    isr: u8,
}

/// The fake device: a disk image in memory and the legacy registers.
pub struct FakeVirtio {
    platform: &'static SimulatedPlatform,
    pub disk: Mutex<Vec<u8>>,
    state: Mutex<State>,
    queue_size: u16,
    offered: u32,
    /// Sectors that fail with an I/O error.
    pub bad_sector: Option<u64>,
    /// Largest chain seen (descriptors).
    pub longest_chain: Mutex<usize>,
}

/// The registers of a shared fake.
pub struct FakeRegisters(pub Arc<FakeVirtio>);

impl FakeVirtio {
    /// A fake disk of `sectors` sectors holding `contents`.
    pub fn new(platform: &'static SimulatedPlatform, contents: Vec<u8>, read_only: bool) -> Arc<FakeVirtio> {
        Arc::new(FakeVirtio {
            platform,
            disk: Mutex::new(contents),
            state: Mutex::new(State::default()),
            queue_size: 64,
            offered: FEATURE_SEG_MAX | if read_only { FEATURE_READ_ONLY } else { 0 } | 1 << 28,
            bad_sector: None,
            longest_chain: Mutex::new(0),
        })
    }

    fn read(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        self.platform.device_read(address, &mut bytes);
        bytes
    }

    fn read_u16(&self, address: u64) -> u16 {
        u16::from_le_bytes(self.read(address, 2).try_into().expect("two bytes"))
    }

    /// Processes every new available entry (what QEMU does on a notify).
    fn process(&self) {
        let mut state = self.state.lock();
        assert_eq!(state.status & STATUS_DRIVER_OK, STATUS_DRIVER_OK, "notify before DRIVER_OK");
        let base = u64::from(state.queue_page) * QUEUE_ALIGNMENT;
        let layout = QueueLayout::new(self.queue_size);
        let available = self.read_u16(base + layout.available_index());
        while state.last_available != available {
            let head = self.read_u16(base + layout.available_slot(state.last_available));
            let mut chain = Vec::new();
            let mut index = head;
            loop {
                let bytes: [u8; 16] = self.read(base + layout.descriptor(index), 16).try_into().expect("16 bytes");
                let descriptor = VirtqDescriptor::from_bytes(&bytes);
                chain.push(descriptor);
                if descriptor.flags & DESCRIPTOR_NEXT == 0 {
                    break;
                }
                index = descriptor.next;
            }
            {
                let mut longest = self.longest_chain.lock();
                *longest = (*longest).max(chain.len());
            }
            let written = self.execute(&chain);
            let used_slot = base + layout.used_slot(state.used_index);
            let mut element = [0u8; 8];
            element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
            element[4..].copy_from_slice(&written.to_le_bytes());
            self.platform.device_write(used_slot, &element);
            state.used_index = state.used_index.wrapping_add(1);
            self.platform.device_write(base + layout.used_index(), &state.used_index.to_le_bytes());
            state.last_available = state.last_available.wrapping_add(1);
            state.isr = 1;
        }
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
        let result = if bad || start + length > disk.len() as u64 {
            1
        } else {
            let mut position = start as usize;
            for descriptor in data {
                let length = descriptor.length as usize;
                if kind == REQUEST_IN {
                    assert!(descriptor.flags & DESCRIPTOR_WRITE != 0, "read data must be device-writable");
                    self.platform.device_write(descriptor.address, &disk[position..position + length]);
                } else {
                    let bytes = self.read(descriptor.address, length);
                    disk[position..position + length].copy_from_slice(&bytes);
                }
                position += length;
            }
            STATUS_OK
        };
        self.platform.device_write(status.address, &[result]);
        if kind == REQUEST_IN { length as u32 + 1 } else { 1 }
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
            BLOCK_SEG_MAX => 16,
            _ => panic!("read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        assert_eq!(offset, DEVICE_STATUS, "write8 of {offset:#x}");
        let mut state = self.0.state.lock();
        if value == 0 {
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
