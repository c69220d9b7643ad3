//! A fake virtio-blk device for host tests, with both register layouts: the
//! legacy block (one `RegisterIo`) and the modern structures (common, notify,
//! ISR, device configuration: one `RegisterIo` window each, as the kernel maps
//! them). It reads the queue and moves data only through the addresses in the
//! descriptors, in simulated physical memory, like the real device does.
//!
//! The modern layout checks the rules of virtio 1.0: features accepted only
//! from those offered, `VERSION_1` among them, `FEATURES_OK` before the queue
//! is enabled, a power-of-two queue size no larger than the maximum, and every
//! notify at `queue_notify_off * notify_off_multiplier`. It can refuse the
//! features (clear `FEATURES_OK`) like a device that cannot work with them.
//!
//! It checks every write it makes: the memory must still be allocated, so a
//! driver that frees memory under a device fails its test. It answers at once
//! (inside the notify) by default; in [`Answer::Held`] mode a notify only takes
//! the new chains off the available ring, and [`FakeVirtio::finish_held`] runs
//! them later, in the order the test chooses (so requests finish out of order,
//! as on a real device), unless the driver reset the device in between (a reset
//! makes a device forget its queue and everything on it). It can also ignore a
//! reset, like a device that hangs, so that the driver must give its memory up.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::io::RegisterIo;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::legacy::LegacyTransport;
use super::modern::{COMMON_BYTES, CommonConfiguration, ModernRegisters, ModernTransport, Structure};
use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE, QueueLayout, VirtqDescriptor};
use super::registers::*;
use super::transport::{Interface, Transport};

/// Whether the fake disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// Reads and writes.
    Writable,
    /// Offers `VIRTIO_BLK_F_RO`.
    ReadOnly,
}

/// Whether the fake accepts the features the driver wrote (modern only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureCheck {
    /// Keeps `FEATURES_OK` set when the features are valid.
    Accept,
    /// Clears `FEATURES_OK` whatever the driver accepted.
    Refuse,
}

/// When the fake runs the chains a notify makes available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Inside the notify, in the order the driver made them available.
    AtNotify,
    /// When the test calls [`FakeVirtio::finish_held`].
    Held,
}

/// In which order [`FakeVirtio::finish_held`] runs the chains it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishOrder {
    /// The order the driver made them available.
    AsTaken,
    /// The newest first: each request finishes before those made available
    /// earlier.
    Reverse,
}

/// What the fake does when the driver writes 0 to the device status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetResponse {
    /// Resets: forgets features, queue and held chains (and records it).
    Confirm,
    /// Ignores the write, like a hung device: the status keeps its value, the
    /// device keeps its queue and its chains.
    Ignore,
}

/// What the fake says about a chain it ran, on the used ring and in the
/// status byte: a device is not trusted, so the driver must not believe a
/// wrong answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misreport {
    /// The truth.
    Honest,
    /// A used length 4096 bytes above what it wrote.
    LengthAbovePrepared,
    /// Leaves the status byte alone, and the used length says it wrote it.
    StatusUnwritten,
    /// The id of the descriptor after the chain's head, which heads no chain.
    IdOfNoChain,
    /// The chain's element twice on the used ring.
    ChainTwice,
}

/// The queue as the device uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FakeQueue {
    size: u16,
    descriptors: u64,
    driver: u64,
    device: u64,
}

impl FakeQueue {
    fn descriptor(&self, index: u16) -> u64 {
        self.descriptors + 16 * u64::from(index % self.size)
    }

    fn available_index(&self) -> u64 {
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
    fn parts(&self) -> [(u64, u64); 3] {
        let entries = u64::from(self.size);
        [(self.descriptors, 16 * entries), (self.driver, 6 + 2 * entries), (self.device, 6 + 8 * entries)]
    }
}

/// A chain taken off the available ring.
struct Chain {
    head: u16,
    descriptors: Vec<VirtqDescriptor>,
}

#[derive(Default)]
struct State {
    status: u8,
    accepted: u64,
    /// The queue the device uses (legacy: set by its address; modern: enabled).
    queue: Option<FakeQueue>,
    /// Modern: the queue registers the driver wrote, not enabled yet.
    staged: FakeQueue,
    device_feature_select: u32,
    driver_feature_select: u32,
    last_available: u16,
    used_index: u16,
    isr: u8,
    /// Chains taken but not run yet (held mode); a reset forgets them.
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

/// The fake device: a disk image in memory and the registers of one interface.
pub struct FakeVirtio {
    platform: &'static SimulatedPlatform,
    /// Which register layout it has.
    pub interface: Interface,
    /// The disk image.
    pub disk: Mutex<Vec<u8>>,
    state: Mutex<State>,
    /// The queue size it offers (legacy: the only one it takes).
    pub max_queue_size: u16,
    /// The features it offers.
    pub offered: u64,
    /// Modern: whether it keeps `FEATURES_OK`.
    pub feature_check: FeatureCheck,
    /// Modern: the notify capability's multiplier.
    pub notify_off_multiplier: u32,
    /// Modern: queue 0's `queue_notify_off`.
    pub queue_notify_off: u16,
    /// Modern: where in the notify structure each notify landed.
    pub notify_offsets: Mutex<Vec<u16>>,
    /// Sectors that fail with an I/O error.
    pub bad_sector: Option<u64>,
    /// `seg_max` in the configuration (0 is a broken device).
    pub seg_max: u32,
    /// Most data bytes a read writes: the device stops early, still reports OK,
    /// and its used element counts only the bytes it wrote.
    pub read_limit: Option<u64>,
    /// When chains run (see [`FakeVirtio::set_answer`]).
    answer: Mutex<Answer>,
    /// What it says about each chain it runs.
    pub misreport: Mutex<Misreport>,
    /// What a reset does (see [`FakeVirtio::set_reset_response`]).
    reset_response: Mutex<ResetResponse>,
    /// Largest chain seen (descriptors).
    pub longest_chain: Mutex<usize>,
    /// Every reset, oldest first.
    pub resets: Mutex<Vec<Reset>>,
}

/// The registers of a shared fake.
pub struct FakeRegisters(pub Arc<FakeVirtio>);

/// Bytes of the modern notify structure (QEMU's: 4 bytes for each of 1024 queues).
pub const NOTIFY_BYTES: u32 = 0x1000;
/// Bytes of the modern device configuration (virtio-blk's, as QEMU sizes it).
pub const DEVICE_CONFIG_BYTES: u32 = 0x3c;

impl FakeVirtio {
    /// A fake disk holding `contents`, with the registers of `interface` and a
    /// 256-entry queue, as QEMU's. A modern one offers `VERSION_1` and
    /// `ACCESS_PLATFORM` too, and notifies queue 0 at 3 * 4 bytes into its
    /// notify structure.
    pub fn new(
        platform: &'static SimulatedPlatform,
        contents: Vec<u8>,
        medium: Medium,
        interface: Interface,
    ) -> Arc<FakeVirtio> {
        let read_only = match medium {
            Medium::Writable => 0,
            Medium::ReadOnly => FEATURE_READ_ONLY,
        };
        let modern = match interface {
            Interface::Legacy => 0,
            Interface::Modern => FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM,
        };
        Arc::new(FakeVirtio {
            platform,
            interface,
            disk: Mutex::new(contents),
            state: Mutex::new(State::default()),
            max_queue_size: 256,
            offered: FEATURE_SEG_MAX | read_only | 1 << 28 | modern,
            feature_check: FeatureCheck::Accept,
            notify_off_multiplier: 4,
            queue_notify_off: 3,
            notify_offsets: Mutex::new(Vec::new()),
            bad_sector: None,
            seg_max: 16,
            read_limit: None,
            answer: Mutex::new(Answer::AtNotify),
            misreport: Mutex::new(Misreport::Honest),
            reset_response: Mutex::new(ResetResponse::Confirm),
            longest_chain: Mutex::new(0),
            resets: Mutex::new(Vec::new()),
        })
    }

    /// The device status register.
    pub fn device_status(&self) -> u8 {
        self.state.lock().status
    }

    /// The features the driver accepted.
    pub fn accepted(&self) -> u64 {
        self.state.lock().accepted
    }

    /// The size of the queue in use (0: none).
    pub fn queue_size(&self) -> u16 {
        self.state.lock().queue.map_or(0, |queue| queue.size)
    }

    /// A transport of the fake's interface over its registers, as the kernel
    /// would build one over the real device's.
    pub fn transport(self: &Arc<Self>) -> Box<dyn Transport> {
        match self.interface {
            Interface::Legacy => Box::new(LegacyTransport::new(FakeRegisters(self.clone()))),
            Interface::Modern => {
                let structure =
                    |kind, length| Structure { registers: FakeStructure { fake: self.clone(), kind }, length };
                let registers = ModernRegisters {
                    common: structure(StructureKind::Common, COMMON_BYTES),
                    notify: structure(StructureKind::Notify, NOTIFY_BYTES),
                    notify_off_multiplier: self.notify_off_multiplier,
                    isr: structure(StructureKind::Isr, 1),
                    device: structure(StructureKind::Device, DEVICE_CONFIG_BYTES),
                };
                Box::new(ModernTransport::new(registers).expect("the fake's structures are long enough"))
            }
        }
    }

    /// From now on, runs chains as `answer` says (chains held already stay
    /// held until [`FakeVirtio::finish_held`]).
    pub fn set_answer(&self, answer: Answer) {
        *self.answer.lock() = answer;
    }

    /// From now on, answers a reset as `response` says.
    pub fn set_reset_response(&self, response: ResetResponse) {
        *self.reset_response.lock() = response;
    }

    /// Runs the chains held notifies took, in `order`, unless a reset made the
    /// device forget them; returns how many ran.
    pub fn finish_held(&self, order: FinishOrder) -> usize {
        let mut state = self.state.lock();
        let mut chains = core::mem::take(&mut state.pending);
        if order == FinishOrder::Reverse {
            chains.reverse();
        }
        let count = chains.len();
        for chain in chains {
            self.finish(&mut state, chain);
        }
        count
    }

    /// Chains the device holds now.
    pub fn held(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// `(address, length)` of every data descriptor of the chains the device
    /// holds (between header and status): request memory it may still read or
    /// write.
    pub fn held_data(&self) -> Vec<(u64, u64)> {
        let state = self.state.lock();
        let data = state.pending.iter().flat_map(|chain| &chain.descriptors[1..chain.descriptors.len() - 1]);
        data.map(|descriptor| (descriptor.address, u64::from(descriptor.length))).collect()
    }

    /// Whether every page of `[address, address + length)` is allocated.
    pub fn is_allocated(&self, address: u64, length: u64) -> bool {
        self.allocated(address, length)
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
    /// held mode only takes them.
    fn process(&self) {
        let mut state = self.state.lock();
        assert_eq!(state.status & STATUS_DRIVER_OK, STATUS_DRIVER_OK, "notify before DRIVER_OK");
        if self.interface == Interface::Modern {
            assert_ne!(state.status & STATUS_FEATURES_OK, 0, "a modern device runs only after FEATURES_OK");
        }
        let chains = self.take_available(&mut state);
        if *self.answer.lock() == Answer::Held {
            state.pending.extend(chains);
            return;
        }
        for chain in chains {
            self.finish(&mut state, chain);
        }
    }

    /// Reads the chains the driver made available since the last call.
    fn take_available(&self, state: &mut State) -> Vec<Chain> {
        let queue = state.queue.expect("notify of a queue the device does not have");
        let available = self.read_u16(queue.available_index());
        let mut chains = Vec::new();
        while state.last_available != available {
            let head = self.read_u16(queue.available_slot(state.last_available));
            let mut descriptors = Vec::new();
            let mut index = head;
            loop {
                let bytes: [u8; 16] = self.read(queue.descriptor(index), 16).try_into().expect("16 bytes");
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
        let queue = state.queue.expect("a chain of a queue the device has");
        let misreport = *self.misreport.lock();
        let written = self.execute(&chain.descriptors, misreport);
        let (id, written, times) = match misreport {
            Misreport::Honest | Misreport::StatusUnwritten => (u32::from(chain.head), written, 1),
            Misreport::LengthAbovePrepared => (u32::from(chain.head), written + 4096, 1),
            Misreport::IdOfNoChain => (u32::from(chain.head) + 1, written, 1),
            Misreport::ChainTwice => (u32::from(chain.head), written, 2),
        };
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&id.to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        for _ in 0..times {
            self.write(queue.used_slot(state.used_index), &element);
            state.used_index = state.used_index.wrapping_add(1);
        }
        self.write(queue.used_index(), &state.used_index.to_le_bytes());
        state.isr = 1;
    }

    /// Runs one request; returns the bytes written to the driver (counting
    /// the status byte even when `misreport` leaves it unwritten).
    fn execute(&self, chain: &[VirtqDescriptor], misreport: Misreport) -> u32 {
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
        if misreport != Misreport::StatusUnwritten {
            self.write(status.address, &[STATUS_OK]);
        }
        if kind == REQUEST_IN { moved as u32 + 1 } else { 1 }
    }

    /// What a reset makes the device forget, for the test to look at.
    fn record_reset(&self, state: &State) -> Reset {
        let queue_address = state.queue.map_or(0, |queue| queue.descriptors);
        let queue_memory_allocated = state
            .queue
            .is_some_and(|queue| queue.parts().iter().all(|&(address, length)| self.allocated(address, length)));
        let chain_memory_allocated = state
            .pending
            .iter()
            .flat_map(|chain| &chain.descriptors)
            .all(|descriptor| self.allocated(descriptor.address, u64::from(descriptor.length)));
        Reset { queue_address, queue_memory_allocated, chains_forgotten: state.pending.len(), chain_memory_allocated }
    }

    /// A device-status write, on either interface: 0 resets (recorded); on a
    /// modern device, `FEATURES_OK` stays set only for acceptable features.
    fn write_status(&self, mut value: u8) {
        let mut state = self.state.lock();
        if value == 0 && *self.reset_response.lock() == ResetResponse::Ignore {
            return;
        }
        if value == 0 {
            let reset = self.record_reset(&state);
            self.resets.lock().push(reset);
            *state = State::default();
        }
        if self.interface == Interface::Modern && value & STATUS_FEATURES_OK != 0 {
            let valid = state.accepted & FEATURE_VERSION_1 != 0;
            if !valid || self.feature_check == FeatureCheck::Refuse {
                value &= !STATUS_FEATURES_OK;
            }
        }
        state.status = value;
    }

    /// virtio-blk's configuration, at `offset` from its start.
    fn config_read32(&self, offset: u16) -> u32 {
        let sectors = self.disk.lock().len() as u64 / SECTOR_SIZE;
        match offset {
            CONFIG_CAPACITY => sectors as u32,
            o if o == CONFIG_CAPACITY + 4 => (sectors >> 32) as u32,
            CONFIG_SEG_MAX => self.seg_max,
            _ => panic!("device configuration read32 of {offset:#x}"),
        }
    }

    fn accept_features(&self, state: &mut State, features: u64) {
        assert_eq!(features & !self.offered, 0, "accepted a feature not offered");
        assert_eq!(state.status & STATUS_FEATURES_OK, 0, "features written after FEATURES_OK");
        state.accepted = features;
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
            QUEUE_SIZE => self.0.max_queue_size,
            _ => panic!("read16 of {offset:#x}"),
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        match offset {
            DEVICE_FEATURES => {
                assert_eq!(self.0.offered >> 32, 0, "a legacy device has 32 feature bits");
                self.0.offered as u32
            }
            o if o >= LEGACY_DEVICE_CONFIG => self.0.config_read32(o - LEGACY_DEVICE_CONFIG),
            _ => panic!("read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        assert_eq!(offset, DEVICE_STATUS, "write8 of {offset:#x}");
        self.0.write_status(value);
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
            GUEST_FEATURES => self.0.accept_features(&mut state, u64::from(value)),
            QUEUE_ADDRESS => {
                let base = u64::from(value) * QUEUE_ALIGNMENT;
                let areas = QueueLayout::new(self.0.max_queue_size).areas(dmakit::dma::DmaAddr::new(base));
                state.queue = (value != 0).then_some(FakeQueue {
                    size: self.0.max_queue_size,
                    descriptors: areas.descriptors.as_u64(),
                    driver: areas.driver.as_u64(),
                    device: areas.device.as_u64(),
                });
            }
            _ => panic!("write32 of {offset:#x}"),
        }
    }
}

/// Which modern structure a [`FakeStructure`] window shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureKind {
    /// Common configuration.
    Common,
    /// Notify.
    Notify,
    /// ISR.
    Isr,
    /// Device configuration.
    Device,
}

/// One modern register structure of a shared fake, offsets from its start.
pub struct FakeStructure {
    fake: Arc<FakeVirtio>,
    kind: StructureKind,
}

macro_rules! common {
    ($field:ident) => {
        core::mem::offset_of!(CommonConfiguration, $field) as u16
    };
}

impl FakeStructure {
    fn only(&self, kind: StructureKind, width: u16, offset: u16) {
        assert_eq!(self.kind, kind, "{width}-bit access at {offset:#x} of the {:?} structure", self.kind);
    }

    /// The low half of a 64-bit queue address register.
    fn low_half(target: &mut u64, value: u32) {
        *target = (*target & !0xffff_ffff) | u64::from(value);
    }

    /// The high half of a 64-bit queue address register.
    fn high_half(target: &mut u64, value: u32) {
        *target = (*target & 0xffff_ffff) | u64::from(value) << 32;
    }
}

impl RegisterIo for FakeStructure {
    fn read8(&self, offset: u16) -> u8 {
        let mut state = self.fake.state.lock();
        match (self.kind, offset) {
            (StructureKind::Common, o) if o == common!(device_status) => state.status,
            (StructureKind::Common, o) if o == common!(config_generation) => 0,
            (StructureKind::Isr, 0) => core::mem::take(&mut state.isr),
            (kind, _) => panic!("read8 at {offset:#x} of the {kind:?} structure"),
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        self.only(StructureKind::Common, 16, offset);
        let state = self.fake.state.lock();
        match offset {
            // The maximum after a reset, then whatever the driver wrote.
            o if o == common!(queue_size) => match state.staged.size {
                0 => self.fake.max_queue_size,
                written => written,
            },
            o if o == common!(queue_notify_off) => self.fake.queue_notify_off,
            o if o == common!(queue_enable) => u16::from(state.queue.is_some()),
            _ => panic!("common read16 of {offset:#x}"),
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        if self.kind == StructureKind::Device {
            return self.fake.config_read32(offset);
        }
        self.only(StructureKind::Common, 32, offset);
        let state = self.fake.state.lock();
        match offset {
            o if o == common!(device_feature) => (self.fake.offered >> (32 * state.device_feature_select)) as u32,
            _ => panic!("common read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        self.only(StructureKind::Common, 8, offset);
        assert_eq!(offset, common!(device_status), "common write8 of {offset:#x}");
        self.fake.write_status(value);
    }

    fn write16(&self, offset: u16, value: u16) {
        if self.kind == StructureKind::Notify {
            self.fake.notify_offsets.lock().push(offset);
            let expected = u32::from(self.fake.queue_notify_off) * self.fake.notify_off_multiplier;
            assert_eq!(u32::from(offset), expected, "notify at queue_notify_off * notify_off_multiplier");
            assert_eq!(value, 0, "the notify names queue 0");
            return self.fake.process();
        }
        self.only(StructureKind::Common, 16, offset);
        let mut state = self.fake.state.lock();
        match offset {
            o if o == common!(queue_select) => assert_eq!(value, 0, "one queue"),
            o if o == common!(queue_size) => {
                let max = self.fake.max_queue_size;
                assert!(value.is_power_of_two() && value <= max, "queue size {value} (max {max})");
                state.staged.size = value;
            }
            o if o == common!(queue_enable) => {
                assert_eq!(value, 1, "a queue is enabled, never disabled, by writing 1");
                assert_ne!(state.status & STATUS_FEATURES_OK, 0, "queue enabled before FEATURES_OK");
                let mut queue = state.staged;
                if queue.size == 0 {
                    queue.size = self.fake.max_queue_size;
                }
                assert!(queue.descriptors != 0 && queue.driver != 0 && queue.device != 0, "{queue:?}");
                state.queue = Some(queue);
            }
            _ => panic!("common write16 of {offset:#x}"),
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        self.only(StructureKind::Common, 32, offset);
        let mut state = self.fake.state.lock();
        let select = state.driver_feature_select;
        match offset {
            o if o == common!(device_feature_select) => state.device_feature_select = value,
            o if o == common!(driver_feature_select) => state.driver_feature_select = value,
            o if o == common!(driver_feature) => {
                let accepted = match select {
                    0 => (state.accepted & !0xffff_ffff) | u64::from(value),
                    _ => (state.accepted & 0xffff_ffff) | u64::from(value) << 32,
                };
                self.fake.accept_features(&mut state, accepted);
            }
            o if o == common!(queue_desc) => Self::low_half(&mut state.staged.descriptors, value),
            o if o == common!(queue_desc) + 4 => Self::high_half(&mut state.staged.descriptors, value),
            o if o == common!(queue_driver) => Self::low_half(&mut state.staged.driver, value),
            o if o == common!(queue_driver) + 4 => Self::high_half(&mut state.staged.driver, value),
            o if o == common!(queue_device) => Self::low_half(&mut state.staged.device, value),
            o if o == common!(queue_device) + 4 => Self::high_half(&mut state.staged.device, value),
            _ => panic!("common write32 of {offset:#x}"),
        }
    }
}
