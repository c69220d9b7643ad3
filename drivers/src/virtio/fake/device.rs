//! The register fakes' device core, shared by every device type: status and
//! features, the queues it offers and what it keeps of each, resets, and the
//! dispatch of a notify to the device type (its [`Personality`]). The two
//! register layouts (`legacy_registers.rs`, `modern_registers.rs`) are views
//! of this core.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::AtomicU8;

use dmakit::dma::simulated::SimulatedPlatform;
use spin::Mutex;

use super::super::legacy::LegacyTransport;
use super::super::modern::{COMMON_BYTES, ModernRegisters, ModernTransport, Structure};
use super::super::registers::*;
use super::super::transport::{Interface, Transport};
use super::legacy_registers::FakeRegisters;
use super::modern_registers::{FakeStructure, StructureKind};
use super::rings::{DeviceMemory, QueueAccess, QueueState};

/// Bytes of the modern notify structure (QEMU's: 4 bytes for each of 1024 queues).
pub const NOTIFY_BYTES: u32 = 0x1000;

/// What a device type adds to the core: its configuration and what it does
/// with the chains a notify makes available.
pub trait Personality: Send + Sync {
    /// Bytes of its device configuration (the modern structure's length).
    fn config_bytes(&self) -> u32;
    /// The 32-bit field at `offset` of its device configuration.
    fn config_read32(&self, offset: u16) -> u32;
    /// The driver notified the queue `queue` lends: take the new chains, and
    /// answer them now or hold them.
    fn notified(&self, queue: &mut QueueAccess<'_>);
}

/// Whether the fake accepts the features the driver wrote (modern only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureCheck {
    /// Keeps `FEATURES_OK` set when the features are valid.
    Accept,
    /// Clears `FEATURES_OK` whatever the driver accepted.
    Refuse,
}

/// What the fake does when the driver writes 0 to the device status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetResponse {
    /// Resets: forgets features, queues and held chains (and records it).
    Confirm,
    /// Ignores the write, like a hung device: the status keeps its value, the
    /// device keeps its queues and its chains.
    Ignore,
}

/// How the modern device's `config_generation` behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigGeneration {
    /// Stays 0: the configuration never changes.
    Stable,
    /// Changes at every read: a configuration that never settles.
    NeverSettles,
}

/// What the device held when the driver reset it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The device address of queue 0's descriptor table (0: none).
    pub queue_address: u64,
    /// Whether the device had a queue and the memory of every queue it had
    /// was still allocated: a driver resets first and frees after.
    pub queue_memory_allocated: bool,
    /// Chains it had taken and not given back yet, on all queues, forgotten
    /// now.
    pub chains_forgotten: usize,
    /// Whether all memory those chains name was still allocated.
    pub chain_memory_allocated: bool,
}

/// What the device offers for a queue after queue 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOffer {
    /// Its maximum size (legacy: the only one it takes; 0: no such queue).
    pub max_size: u16,
    /// Modern: its `queue_notify_off`.
    pub notify_off: u16,
}

/// The registers' state, behind one lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) status: u8,
    pub(super) accepted: u64,
    pub(super) device_feature_select: u32,
    pub(super) driver_feature_select: u32,
    /// The queue the queue registers refer to (queue select).
    pub(super) selected: u16,
    /// Every queue the device offers, by index.
    pub(super) queues: Vec<QueueState>,
    pub(super) isr: u8,
}

/// A fake virtio device on either register layout: the core here, the
/// device type's behaviour in `personality` (reached through `Deref`).
pub struct FakeDevice<P: Personality> {
    pub(super) memory: DeviceMemory,
    /// Which register layout it has.
    pub interface: Interface,
    /// The device type's side.
    pub personality: P,
    pub(super) state: Mutex<State>,
    /// Queue 0's maximum size (legacy: the only one it takes).
    pub max_queue_size: u16,
    /// Modern: queue 0's `queue_notify_off`.
    pub queue_notify_off: u16,
    /// The queues after queue 0, from queue 1.
    pub more_queues: Vec<QueueOffer>,
    /// The features it offers.
    pub offered: u64,
    /// Modern: whether it keeps `FEATURES_OK`.
    pub feature_check: FeatureCheck,
    /// Modern: the notify capability's multiplier (0: every queue is
    /// notified at the same place, and the value written names it).
    pub notify_off_multiplier: u32,
    /// Modern: where in the notify structure each notify landed.
    pub notify_offsets: Mutex<Vec<u16>>,
    /// Both layouts: the queue each notify named, in order.
    pub notified_queues: Mutex<Vec<u16>>,
    /// Modern: how `config_generation` behaves.
    pub config_generation: ConfigGeneration,
    /// Reads of `config_generation` so far (what it says when it never
    /// settles).
    pub(super) generation_reads: AtomicU8,
    /// What a reset does (see [`FakeDevice::set_reset_response`]).
    reset_response: Mutex<ResetResponse>,
    /// Every reset, oldest first.
    pub resets: Mutex<Vec<Reset>>,
}

impl<P: Personality> Deref for FakeDevice<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.personality
    }
}

impl<P: Personality> DerefMut for FakeDevice<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.personality
    }
}

impl<P: Personality + 'static> FakeDevice<P> {
    /// A device of `interface` offering `offered` (a modern one also offers
    /// `VERSION_1` and `ACCESS_PLATFORM`), with QEMU's 256-entry queue 0,
    /// notified at 3 * 4 bytes into its notify structure, and no other queue.
    pub fn with_personality(
        platform: &'static SimulatedPlatform,
        interface: Interface,
        offered: u64,
        personality: P,
    ) -> FakeDevice<P> {
        let modern = match interface {
            Interface::Legacy => 0,
            Interface::Modern => FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM,
        };
        FakeDevice {
            memory: DeviceMemory::new(platform),
            interface,
            personality,
            state: Mutex::new(State::default()),
            max_queue_size: 256,
            queue_notify_off: 3,
            more_queues: Vec::new(),
            offered: offered | modern,
            feature_check: FeatureCheck::Accept,
            notify_off_multiplier: 4,
            config_generation: ConfigGeneration::Stable,
            generation_reads: AtomicU8::new(0),
            notify_offsets: Mutex::new(Vec::new()),
            notified_queues: Mutex::new(Vec::new()),
            reset_response: Mutex::new(ResetResponse::Confirm),
            resets: Mutex::new(Vec::new()),
        }
    }

    /// The legacy register block over this device, as the kernel would build
    /// it over the real device's I/O BAR.
    pub fn legacy_transport(self: &Arc<Self>) -> LegacyTransport<FakeRegisters<P>> {
        assert_eq!(self.interface, Interface::Legacy, "a legacy transport of a legacy device");
        LegacyTransport::new(FakeRegisters(self.clone()))
    }

    /// The modern structures over this device, as the kernel would map them
    /// from its capabilities.
    pub fn modern_transport(self: &Arc<Self>) -> ModernTransport<FakeStructure<P>> {
        assert_eq!(self.interface, Interface::Modern, "a modern transport of a modern device");
        let structure = |kind, length| Structure { registers: FakeStructure { fake: self.clone(), kind }, length };
        let registers = ModernRegisters {
            common: structure(StructureKind::Common, COMMON_BYTES),
            notify: structure(StructureKind::Notify, NOTIFY_BYTES),
            notify_off_multiplier: self.notify_off_multiplier,
            isr: structure(StructureKind::Isr, 1),
            device: structure(StructureKind::Device, self.personality.config_bytes()),
        };
        ModernTransport::new(registers).expect("the fake's structures are long enough")
    }

    /// A transport of the fake's interface over its registers.
    pub fn transport(self: &Arc<Self>) -> Box<dyn Transport> {
        match self.interface {
            Interface::Legacy => Box::new(self.legacy_transport()),
            Interface::Modern => Box::new(self.modern_transport()),
        }
    }
}

impl<P: Personality> FakeDevice<P> {
    /// The device status register.
    pub fn device_status(&self) -> u8 {
        self.state.lock().status
    }

    /// Whether the device's interrupt is raised: ISR bit 0 set and not read
    /// yet (the INTx line is asserted until the driver reads ISR). Looks
    /// without clearing it, as a test's probe on the line would.
    pub fn interrupt_pending(&self) -> bool {
        self.state.lock().isr & 1 != 0
    }

    /// The features the driver accepted.
    pub fn accepted(&self) -> u64 {
        self.state.lock().accepted
    }

    /// The ring of queue `queue` the device uses (`None`: not set up).
    pub fn ring(&self, queue: u16) -> Option<super::rings::Ring> {
        self.state.lock().queues.get(usize::from(queue)).and_then(|state| state.ring)
    }

    /// Whether every page of `[address, address + length)` is allocated.
    pub fn is_allocated(&self, address: u64, length: u64) -> bool {
        self.memory.allocated(address, length)
    }

    /// The device as firmware (or an earlier driver) left it: its status
    /// says `status`, so only a reset it confirms reads 0.
    pub fn leave_running(&self, status: u8) {
        self.state.lock().status = status;
    }

    /// From now on, every write of the device must lie inside one of
    /// `ranges` (`None`: anywhere allocated; see [`DeviceMemory::fence_writes`]).
    pub fn fence_writes(&self, ranges: Option<Vec<(u64, u64)>>) {
        self.memory.fence_writes(ranges);
    }

    /// From now on, answers a reset as `response` says.
    pub fn set_reset_response(&self, response: ResetResponse) {
        *self.reset_response.lock() = response;
    }

    /// Queues the device has.
    pub fn queue_count(&self) -> u16 {
        1 + self.more_queues.len() as u16
    }

    /// What it offers for queue `queue` (`None`: it has no such queue).
    pub fn offer(&self, queue: u16) -> Option<QueueOffer> {
        match queue {
            0 => Some(QueueOffer { max_size: self.max_queue_size, notify_off: self.queue_notify_off }),
            _ => self.more_queues.get(usize::from(queue) - 1).copied(),
        }
    }

    /// Runs `answer` on queue `queue` if the device uses it.
    pub fn with_queue<R>(&self, queue: u16, answer: impl FnOnce(&mut QueueAccess<'_>) -> R) -> Option<R> {
        let mut state = self.state.lock();
        let State { accepted, queues, isr, .. } = &mut *state;
        QueueAccess::lend(queues, queue, *accepted, &self.memory, isr).map(|mut access| answer(&mut access))
    }

    /// A notify of queue `queue` (what QEMU does on one): the device type
    /// takes what the driver made available.
    pub(super) fn process(&self, queue: u16) {
        {
            let state = self.state.lock();
            assert_eq!(state.status & STATUS_DRIVER_OK, STATUS_DRIVER_OK, "notify before DRIVER_OK");
            if self.interface == Interface::Modern {
                assert_ne!(state.status & STATUS_FEATURES_OK, 0, "a modern device runs only after FEATURES_OK");
            }
        }
        self.notified_queues.lock().push(queue);
        self.with_queue(queue, |access| self.personality.notified(access))
            .unwrap_or_else(|| panic!("notify of queue {queue}, which the device does not use"));
    }

    /// The queue state of queue `queue`, created on first use; `None` for a
    /// queue the device does not have.
    pub(super) fn queue_state<'a>(&self, state: &'a mut State, queue: u16) -> Option<&'a mut QueueState> {
        if queue >= self.queue_count() {
            return None;
        }
        let count = usize::from(self.queue_count());
        if state.queues.len() < count {
            state.queues.resize_with(count, QueueState::default);
        }
        state.queues.get_mut(usize::from(queue))
    }

    /// What a reset makes the device forget, for the test to look at.
    fn record_reset(&self, state: &State) -> Reset {
        let rings = || state.queues.iter().filter_map(|queue| queue.ring);
        let queue_address = state.queues.first().and_then(|queue| queue.ring).map_or(0, |ring| ring.descriptors);
        let queue_memory_allocated = rings().count() > 0
            && rings().all(|ring| ring.parts().iter().all(|&(address, length)| self.memory.allocated(address, length)));
        let held = || state.queues.iter().flat_map(|queue| &queue.held);
        let chain_memory_allocated = held()
            .flat_map(|chain| &chain.descriptors)
            .all(|descriptor| self.memory.allocated(descriptor.address, u64::from(descriptor.length)));
        Reset { queue_address, queue_memory_allocated, chains_forgotten: held().count(), chain_memory_allocated }
    }

    /// A device-status write, on either interface: 0 resets (recorded); on a
    /// modern device, `FEATURES_OK` stays set only for acceptable features.
    pub(super) fn write_status(&self, mut value: u8) {
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

    pub(super) fn accept_features(&self, state: &mut State, features: u64) {
        assert_eq!(features & !self.offered, 0, "accepted a feature not offered");
        assert_eq!(state.status & STATUS_FEATURES_OK, 0, "features written after FEATURES_OK");
        state.accepted = features;
    }
}
