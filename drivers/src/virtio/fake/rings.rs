//! The device side of the fakes' split virtqueues: simulated memory as the
//! device reaches it, each queue's rings, the chains it took off an available
//! ring, and the used elements it gives back.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::super::queue::{DESCRIPTOR_NEXT, VirtqDescriptor};

/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver asks the device not to interrupt
/// when it uses buffers on the queue.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Simulated physical memory as the device reaches it. Every write is
/// checked: the memory must still be allocated, so a driver that frees memory
/// under a device fails its test; and, once a test fences the device in
/// ([`DeviceMemory::fence_writes`]), it must lie inside the memory the test
/// knows the driver prepared for it.
pub struct DeviceMemory {
    platform: &'static SimulatedPlatform,
    /// `(address, length)` of every range the device may write; `None`: any
    /// allocated memory.
    fence: Mutex<Option<Vec<(u64, u64)>>>,
}

impl DeviceMemory {
    /// The device's view of `platform`.
    pub fn new(platform: &'static SimulatedPlatform) -> DeviceMemory {
        DeviceMemory { platform, fence: Mutex::new(None) }
    }

    /// From now on, every write must lie inside one of `ranges` (`None`: no
    /// fence). A driver that hands the device a descriptor outside what it
    /// prepared, or a fake whose lie would write elsewhere, fails the test.
    pub fn fence_writes(&self, ranges: Option<Vec<(u64, u64)>>) {
        *self.fence.lock() = ranges;
    }

    /// Whether `[address, address + length)` lies inside the fence.
    fn inside_fence(&self, address: u64, length: u64) -> bool {
        let inside = |&(start, bytes): &(u64, u64)| address >= start && address + length <= start + bytes;
        self.fence.lock().as_ref().is_none_or(|ranges| ranges.iter().any(inside))
    }

    /// The device's DMA read of `length` bytes at `address`.
    pub fn read(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        self.platform.device_read(address, &mut bytes);
        bytes
    }

    /// A little-endian `u16` at `address`.
    pub fn read_u16(&self, address: u64) -> u16 {
        u16::from_le_bytes(self.read(address, 2).try_into().expect("two bytes"))
    }

    /// The device's DMA write: memory it writes must still belong to someone.
    pub fn write(&self, address: u64, bytes: &[u8]) {
        assert!(self.allocated(address, bytes.len() as u64), "device wrote into freed memory at {address:#x}");
        let length = bytes.len() as u64;
        assert!(self.inside_fence(address, length), "device wrote {length} bytes at {address:#x}, outside its fence");
        self.platform.device_write(address, bytes);
    }

    /// Whether every page of `[address, address + length)` is allocated.
    pub fn allocated(&self, address: u64, length: u64) -> bool {
        let first = address / FRAME_SIZE;
        let last = (address + length.max(1) - 1) / FRAME_SIZE;
        (first..=last).all(|page| self.platform.is_allocated(page * FRAME_SIZE))
    }
}

/// Where one queue's three parts lie, as the device was told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Entries.
    pub size: u16,
    /// The descriptor table.
    pub descriptors: u64,
    /// The driver area (available ring).
    pub driver: u64,
    /// The device area (used ring).
    pub device: u64,
}

impl Ring {
    fn descriptor(&self, index: u16) -> u64 {
        self.descriptors + 16 * u64::from(index)
    }

    /// The available ring's `flags`: bit 0 is `VIRTQ_AVAIL_F_NO_INTERRUPT`.
    fn available_flags(&self) -> u64 {
        self.driver
    }

    pub(super) fn available_index(&self) -> u64 {
        self.driver + 2
    }

    fn available_slot(&self, slot: u16) -> u64 {
        self.driver + 4 + 2 * u64::from(slot % self.size)
    }

    fn used_index(&self) -> u64 {
        self.device + 2
    }

    fn used_slot(&self, slot: u16) -> u64 {
        self.device + 4 + 8 * u64::from(slot % self.size)
    }

    /// `(address, bytes)` of the three parts.
    pub fn parts(&self) -> [(u64, u64); 3] {
        let entries = u64::from(self.size);
        [(self.descriptors, 16 * entries), (self.driver, 6 + 2 * entries), (self.device, 6 + 8 * entries)]
    }
}

/// A chain taken off an available ring.
pub struct Chain {
    /// The index of its first descriptor: the id its used element gives back.
    pub head: u16,
    /// Its descriptors, in chain order.
    pub descriptors: Vec<VirtqDescriptor>,
}

/// One queue as the device keeps it; a reset makes the device forget all of
/// it.
#[derive(Default)]
pub struct QueueState {
    /// Modern: the queue registers the driver wrote, not enabled yet.
    pub staged: Ring,
    /// The ring the device uses (legacy: set by its page number; modern:
    /// enabled).
    pub ring: Option<Ring>,
    /// The next available entry the device will look at.
    pub last_available: u16,
    /// The device's used index.
    pub used_index: u16,
    /// Chains taken off the available ring and not given back yet, oldest
    /// first (held requests, receive buffers waiting for a frame).
    pub held: VecDeque<Chain>,
}

impl QueueState {
    /// A queue whose ring is `ring` from now, with both indices at 0, as a
    /// device starts a queue it is given.
    pub fn start(ring: Ring) -> QueueState {
        QueueState { ring: Some(ring), ..QueueState::default() }
    }
}

/// One queue in use, lent to a device personality while it answers: the
/// device's memory, the queue, and the ISR it raises.
pub struct QueueAccess<'a> {
    /// Which queue.
    pub index: u16,
    /// The features the driver accepted (virtio-net's header size depends on
    /// them).
    pub accepted: u64,
    /// The memory the device reaches.
    pub memory: &'a DeviceMemory,
    /// The queue's state (its ring is set).
    pub state: &'a mut QueueState,
    /// The device's interrupt status.
    pub isr: &'a mut u8,
}

impl<'a> QueueAccess<'a> {
    /// Queue `index` of `queues`, if the device uses it (has its ring).
    pub fn lend(
        queues: &'a mut [QueueState],
        index: u16,
        accepted: u64,
        memory: &'a DeviceMemory,
        isr: &'a mut u8,
    ) -> Option<QueueAccess<'a>> {
        let state = queues.get_mut(usize::from(index)).filter(|queue| queue.ring.is_some())?;
        Some(QueueAccess { index, accepted, memory, state, isr })
    }

    fn ring(&self) -> Ring {
        self.state.ring.expect("a queue in use has a ring")
    }

    /// Reads the chains the driver made available since the last call.
    pub fn take_available(&mut self) -> Vec<Chain> {
        let ring = self.ring();
        let available = self.memory.read_u16(ring.available_index());
        let mut chains = Vec::new();
        while self.state.last_available != available {
            let head = self.memory.read_u16(ring.available_slot(self.state.last_available));
            let mut descriptors = Vec::new();
            let mut index = head;
            loop {
                assert!(index < ring.size, "queue {}: descriptor {index} outside the table", self.index);
                let bytes: [u8; 16] = self.memory.read(ring.descriptor(index), 16).try_into().expect("16 bytes");
                let descriptor = VirtqDescriptor::from_bytes(&bytes);
                descriptors.push(descriptor);
                if descriptor.flags & DESCRIPTOR_NEXT == 0 {
                    break;
                }
                assert!(descriptors.len() <= usize::from(ring.size), "queue {}: a chain loops", self.index);
                index = descriptor.next;
            }
            chains.push(Chain { head, descriptors });
            self.state.last_available = self.state.last_available.wrapping_add(1);
        }
        chains
    }

    /// Puts the used element `(id, length)` on the used ring `times` times,
    /// then publishes the used index and raises the queue interrupt (ISR bit
    /// 0) unless the driver's available ring says `VIRTQ_AVAIL_F_NO_INTERRUPT`
    /// (virtio 1.0, 2.4.7: without `EVENT_IDX` the device looks at the flag
    /// each time it uses buffers, as QEMU does).
    pub fn give_back(&mut self, id: u32, length: u32, times: usize) {
        self.give_back_elements(&vec![(id, length); times]);
    }

    /// Puts the used elements `(id, length)` on the used ring in order, then
    /// publishes the used index once and raises the interrupt as
    /// [`QueueAccess::give_back`] does.
    pub fn give_back_elements(&mut self, elements: &[(u32, u32)]) {
        self.put_elements(elements);
        self.publish_used_index();
    }

    /// Writes the used elements `(id, length)` into the used ring's next
    /// slots, in order, moving the device's used index past them (not
    /// published yet).
    pub(super) fn put_elements(&mut self, elements: &[(u32, u32)]) {
        let ring = self.ring();
        for &(id, length) in elements {
            let mut element = [0u8; 8];
            element[..4].copy_from_slice(&id.to_le_bytes());
            element[4..].copy_from_slice(&length.to_le_bytes());
            self.memory.write(ring.used_slot(self.state.used_index), &element);
            self.state.used_index = self.state.used_index.wrapping_add(1);
        }
    }

    /// The id in every slot of the used ring (whatever the device last wrote
    /// there), in slot order.
    pub(super) fn used_ids(&self) -> Vec<u32> {
        let ring = self.ring();
        let slots = self.memory.read(ring.used_slot(0), 8 * usize::from(ring.size));
        slots.chunks_exact(8).map(|element| u32::from_le_bytes(element[..4].try_into().expect("4 bytes"))).collect()
    }

    /// Publishes the device's used index and raises the queue interrupt as
    /// [`QueueAccess::give_back`] says.
    pub(super) fn publish_used_index(&mut self) {
        let ring = self.ring();
        self.memory.write(ring.used_index(), &self.state.used_index.to_le_bytes());
        if self.memory.read_u16(ring.available_flags()) & AVAIL_F_NO_INTERRUPT == 0 {
            *self.isr |= 1;
        }
    }
}
