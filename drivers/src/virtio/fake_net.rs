//! A fake virtio-net device for host tests, at the level of the [`Transport`]
//! trait (the register layouts are `fake.rs`'s, tested with virtio-blk; this
//! one speaks either interface's rules to the driver). It reads the two queues
//! and moves frames only through the descriptors of the chains it was given,
//! in simulated physical memory, as the device does:
//!
//! - a receive chain must be all device-writable, with the header alone in its
//!   first descriptor (legacy without `ANY_LAYOUT`); a frame the test injects
//!   goes into the next posted chain, header first (`num_buffers` 1 with
//!   `VERSION_1`), every byte inside the chain's writable descriptors and in
//!   allocated memory, and the used length is what it wrote;
//! - a transmit chain must be all device-readable, its header alone and all
//!   zeroes (no offloads were negotiated); the frame after it is kept.
//!
//! It can lie about a receive ([`Lie`]): a used length above the chain, an id
//! that heads no chain, or the same element twice.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, IoFailure, IoReturn};
use spin::Mutex;

use super::net::{FEATURE_MAC, HEADER_LEGACY, HEADER_VERSION_1, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE, QueueLayout, VirtqDescriptor};
use super::registers::*;
use super::transport::{Interface, QueueAreas, Transport};

/// What the fake says about the next frame it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// The truth.
    Honest,
    /// A used length 100 bytes above the chain's writable bytes.
    LengthAboveChain,
    /// The id of the descriptor after the chain's head, which heads no chain.
    IdNotAHead,
    /// The chain's element twice on the used ring.
    IdTwice,
}

/// A chain taken off an available ring.
struct Chain {
    head: u16,
    descriptors: Vec<VirtqDescriptor>,
}

/// One queue as the device uses it.
#[derive(Default)]
struct Queue {
    areas: Option<QueueAreas>,
    size: u16,
    last_available: u16,
    used_index: u16,
    /// Receive chains taken, waiting for a frame.
    waiting: VecDeque<Chain>,
}

#[derive(Default)]
struct State {
    status: u8,
    accepted: u64,
    queues: [Queue; 2],
    isr: u8,
}

/// The fake device.
pub struct FakeNet {
    platform: &'static SimulatedPlatform,
    interface: Interface,
    /// The features it offers.
    pub offered: u64,
    /// Its MAC, in the configuration.
    pub mac: [u8; 6],
    /// Entries of each queue (legacy: the only size it takes).
    pub queue_size: u16,
    state: Mutex<State>,
    /// What it says about the next frame.
    pub lie: Mutex<Lie>,
    /// Frames read from transmit chains (without the header), in order.
    pub sent: Mutex<Vec<Vec<u8>>>,
    /// Resets, and whether every ring and waiting chain was still allocated.
    pub resets: Mutex<Vec<bool>>,
}

/// The transport over a shared fake.
pub struct FakeNetTransport(pub Arc<FakeNet>);

impl FakeNet {
    /// A device of `interface` with `queue_size`-entry queues, offering the
    /// MAC (and on the modern interface `VERSION_1` and `ACCESS_PLATFORM`),
    /// plus offloads and mergeable buffers, which the driver must not take.
    pub fn new(platform: &'static SimulatedPlatform, interface: Interface, queue_size: u16) -> Arc<FakeNet> {
        let modern = match interface {
            Interface::Legacy => 0,
            Interface::Modern => FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM,
        };
        // CSUM (0), GUEST_CSUM (1), HOST_TSO4 (11), MRG_RXBUF (15).
        let offloads = 1 | 1 << 1 | 1 << 11 | 1 << 15;
        Arc::new(FakeNet {
            platform,
            interface,
            offered: FEATURE_MAC | offloads | modern,
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            queue_size,
            state: Mutex::new(State::default()),
            lie: Mutex::new(Lie::Honest),
            sent: Mutex::new(Vec::new()),
            resets: Mutex::new(Vec::new()),
        })
    }

    /// The features the driver accepted.
    pub fn accepted(&self) -> u64 {
        self.state.lock().accepted
    }

    /// The device status byte.
    pub fn device_status(&self) -> u8 {
        self.state.lock().status
    }

    fn header_bytes(&self, state: &State) -> u64 {
        match state.accepted & FEATURE_VERSION_1 {
            0 => HEADER_LEGACY,
            _ => HEADER_VERSION_1,
        }
    }

    fn read(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = alloc::vec![0; length];
        self.platform.device_read(address, &mut bytes);
        bytes
    }

    fn write(&self, address: u64, bytes: &[u8]) {
        for page in (address / 4096)..(address + bytes.len() as u64).div_ceil(4096) {
            assert!(self.platform.is_allocated(page * 4096), "device wrote into freed memory at {address:#x}");
        }
        self.platform.device_write(address, bytes);
    }

    fn read_u16(&self, address: u64) -> u16 {
        u16::from_le_bytes(self.read(address, 2).try_into().expect("2 bytes"))
    }

    /// The chains the driver made available on `queue` since the last look.
    fn take_available(&self, state: &mut State, queue: u16) -> Vec<Chain> {
        let ring = &mut state.queues[usize::from(queue)];
        let areas = ring.areas.expect("a queue the driver set up");
        let available = self.read_u16(areas.driver.as_u64() + 2);
        let mut chains = Vec::new();
        while ring.last_available != available {
            let slot = areas.driver.as_u64() + 4 + 2 * u64::from(ring.last_available % ring.size);
            let head = self.read_u16(slot);
            let mut descriptors = Vec::new();
            let mut index = head;
            loop {
                assert!(index < ring.size, "descriptor {index} outside the table");
                let at = areas.descriptors.as_u64() + 16 * u64::from(index);
                let descriptor = VirtqDescriptor::from_bytes(&self.read(at, 16).try_into().expect("16 bytes"));
                descriptors.push(descriptor);
                if descriptor.flags & DESCRIPTOR_NEXT == 0 {
                    break;
                }
                index = descriptor.next;
            }
            chains.push(Chain { head, descriptors });
            ring.last_available = ring.last_available.wrapping_add(1);
        }
        chains
    }

    /// Puts `(id, length)` on `queue`'s used ring `times` times.
    fn give_back(&self, state: &mut State, queue: u16, (id, length): (u32, u32), times: usize) {
        let ring = &mut state.queues[usize::from(queue)];
        let device = ring.areas.expect("a queue the driver set up").device.as_u64();
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&id.to_le_bytes());
        element[4..].copy_from_slice(&length.to_le_bytes());
        for _ in 0..times {
            self.write(device + 4 + 8 * u64::from(ring.used_index % ring.size), &element);
            ring.used_index = ring.used_index.wrapping_add(1);
        }
        self.write(device + 2, &ring.used_index.to_le_bytes());
        state.isr = 1;
    }

    /// Receives `frame` into the next posted receive chain; `false` when the
    /// driver posted none (or the queue is not set up).
    pub fn inject(&self, frame: &[u8]) -> bool {
        let mut state = self.state.lock();
        if state.queues[usize::from(RECEIVE_QUEUE)].areas.is_none() {
            return false;
        }
        let chains = self.take_available(&mut state, RECEIVE_QUEUE);
        state.queues[usize::from(RECEIVE_QUEUE)].waiting.extend(chains);
        let Some(chain) = state.queues[usize::from(RECEIVE_QUEUE)].waiting.pop_front() else { return false };
        let header_bytes = self.header_bytes(&state) as usize;
        assert_eq!(chain.descriptors[0].length as usize, header_bytes, "the header has a descriptor of its own");
        let mut bytes = alloc::vec![0u8; header_bytes];
        if header_bytes == HEADER_VERSION_1 as usize {
            bytes[10] = 1; // num_buffers
        }
        bytes.extend_from_slice(frame);
        let mut rest = &bytes[..];
        let mut writable = 0u64;
        for descriptor in &chain.descriptors {
            assert!(descriptor.flags & DESCRIPTOR_WRITE != 0, "a receive buffer is device-writable");
            writable += u64::from(descriptor.length);
            let take = (descriptor.length as usize).min(rest.len());
            self.write(descriptor.address, &rest[..take]);
            rest = &rest[take..];
        }
        assert!(rest.is_empty(), "a {}-byte frame does not fit a {writable}-byte chain", frame.len());
        let head = u32::from(chain.head);
        let written = bytes.len() as u32;
        let lie = *self.lie.lock();
        let (element, times) = match lie {
            Lie::Honest => ((head, written), 1),
            Lie::LengthAboveChain => ((head, writable as u32 + 100), 1),
            Lie::IdNotAHead => ((head + 1, written), 1),
            Lie::IdTwice => ((head, written), 2),
        };
        self.give_back(&mut state, RECEIVE_QUEUE, element, times);
        true
    }

    /// Sends what the driver made available on the transmit queue.
    fn transmit(&self, state: &mut State) {
        let header_bytes = self.header_bytes(state);
        for chain in self.take_available(state, TRANSMIT_QUEUE) {
            assert_eq!(u64::from(chain.descriptors[0].length), header_bytes, "the header has a descriptor of its own");
            let mut bytes = Vec::new();
            for descriptor in &chain.descriptors {
                assert_eq!(descriptor.flags & DESCRIPTOR_WRITE, 0, "a transmit buffer is device-readable");
                bytes.extend(self.read(descriptor.address, descriptor.length as usize));
            }
            let frame = bytes.split_off(header_bytes as usize);
            assert!(bytes.iter().all(|byte| *byte == 0), "no offloads: the header is all zeroes");
            self.sent.lock().push(frame);
            self.give_back(state, TRANSMIT_QUEUE, (u32::from(chain.head), 0), 1);
        }
    }

    /// Whether all of `[address, address + length)` is allocated.
    fn allocated(&self, address: u64, length: u64) -> bool {
        (address / 4096..(address + length).div_ceil(4096)).all(|page| self.platform.is_allocated(page * 4096))
    }

    fn reset(&self, state: &mut State) {
        let rings = state.queues.iter().filter_map(|queue| queue.areas.map(|areas| (areas, queue.size)));
        let rings_allocated = rings.clone().all(|(areas, size)| {
            let layout = QueueLayout::new(size);
            self.allocated(areas.descriptors.as_u64(), layout.total)
        });
        let chains_allocated = state.queues.iter().flat_map(|queue| &queue.waiting).all(|chain| {
            chain.descriptors.iter().all(|descriptor| self.allocated(descriptor.address, u64::from(descriptor.length)))
        });
        if rings.count() > 0 {
            self.resets.lock().push(rings_allocated && chains_allocated);
        }
        *state = State::default();
    }
}

impl Transport for FakeNetTransport {
    fn interface(&self) -> Interface {
        self.0.interface
    }

    fn reset(&self) -> Result<(), IoFailure> {
        self.0.reset(&mut self.0.state.lock());
        Ok(())
    }

    fn status(&self) -> u8 {
        self.0.state.lock().status
    }

    fn set_status(&self, status: u8) {
        let mut state = self.0.state.lock();
        assert_ne!(status, 0, "a reset goes through reset()");
        let mut status = status;
        if self.0.interface == Interface::Modern
            && status & STATUS_FEATURES_OK != 0
            && state.accepted & FEATURE_VERSION_1 == 0
        {
            status &= !STATUS_FEATURES_OK;
        }
        state.status = status;
    }

    fn device_features(&self) -> u64 {
        match self.0.interface {
            Interface::Legacy => self.0.offered & 0xffff_ffff,
            Interface::Modern => self.0.offered,
        }
    }

    fn set_driver_features(&self, features: u64) {
        let mut state = self.0.state.lock();
        assert_eq!(features & !self.0.offered, 0, "accepted a feature not offered");
        assert_eq!(state.status & STATUS_FEATURES_OK, 0, "features written after FEATURES_OK");
        state.accepted = features;
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        match queue {
            RECEIVE_QUEUE | TRANSMIT_QUEUE => self.0.queue_size,
            _ => 0,
        }
    }

    fn set_up_queue(&self, queue: u16, size: u16, areas: QueueAreas) -> Result<(), IoFailure> {
        let mut state = self.0.state.lock();
        assert!(queue <= TRANSMIT_QUEUE, "virtio-net without multiqueue has queues 0 and 1");
        match self.0.interface {
            Interface::Legacy => {
                assert_eq!(size, self.0.queue_size, "a legacy queue has the device's size");
                assert_eq!(areas, QueueLayout::new(size).areas(areas.descriptors), "the legacy layout");
            }
            Interface::Modern => {
                assert!(size.is_power_of_two() && size <= self.0.queue_size, "queue size {size}");
                assert_ne!(state.status & STATUS_FEATURES_OK, 0, "queue set up before FEATURES_OK");
            }
        }
        state.queues[usize::from(queue)] = Queue { areas: Some(areas), size, ..Queue::default() };
        Ok(())
    }

    fn notify(&self, queue: u16) -> Result<(), IoFailure> {
        let mut state = self.0.state.lock();
        assert_ne!(state.status & STATUS_DRIVER_OK, 0, "notify before DRIVER_OK");
        if state.queues.get(usize::from(queue)).is_none_or(|ring| ring.areas.is_none()) {
            let cause = Cause::Virtio(dmakit::dma::VirtioCause::QueueNotSetUp { queue });
            return Err(IoFailure::new(IoReturn::NotReady, cause));
        }
        if queue == TRANSMIT_QUEUE {
            self.0.transmit(&mut state);
        }
        Ok(())
    }

    fn acknowledge_interrupt(&self) -> u8 {
        core::mem::take(&mut self.0.state.lock().isr)
    }

    fn config_read32(&self, offset: u16) -> Result<u32, IoFailure> {
        let mut config = [0u8; 12];
        config[..6].copy_from_slice(&self.0.mac);
        let at = usize::from(offset);
        let bytes = config.get(at..at + 4).ok_or(IoFailure::new(
            IoReturn::IoError,
            Cause::OutOfRange { offset: u64::from(offset), length: 4, size: 12 },
        ))?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn config_read64(&self, offset: u16) -> Result<u64, IoFailure> {
        Ok(u64::from(self.config_read32(offset)?) | u64::from(self.config_read32(offset + 4)?) << 32)
    }
}
