//! A fake virtio-net device for host tests, at the level of the [`Transport`]
//! trait: it speaks either interface's rules to the driver without registers
//! (the register-level fake is `fake/`, whose virtio-net personality drives
//! the real legacy and modern transports). Its queues, the chains it takes and
//! the frames it moves are the register fake's (`fake::receive`,
//! `fake::transmit`): a receive chain must be all device-writable with the
//! header alone in its first descriptor, a transmit chain all device-readable
//! with a zeroed header of its own, and every byte moves only through the
//! descriptors, in allocated simulated memory.
//!
//! It can lie about a receive ([`Lie`]): a used length above the chain, an id
//! that heads no chain, or the same element twice.
//!
//! Like QEMU it can say it needs no notifications
//! ([`FakeNet::set_notifications`]: `VIRTQ_USED_F_NO_NOTIFY` in both used
//! rings, virtio 1.0, 2.4.7.2): then, as QEMU's transmit bottom half does, it
//! looks at the transmit ring only when it gets round to it
//! ([`FakeNet::run_transmit`]), and a notify it is sent anyway is counted as
//! needless.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, IoFailure, IoReturn};
use spin::Mutex;

pub use super::fake::Lie;
use super::fake::{DeviceMemory, QueueAccess, QueueState, Ring, receive, transmit};
use super::net::{FEATURE_MAC, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::queue::QueueLayout;
use super::registers::*;
use super::transport::{Interface, QueueAreas, Transport};

/// The device's state, behind one lock; a reset forgets all of it.
#[derive(Default)]
struct State {
    status: u8,
    accepted: u64,
    queues: [QueueState; 2],
    isr: u8,
}

/// The fake device.
pub struct FakeNet {
    memory: DeviceMemory,
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
    /// Notifies of each queue.
    pub notifies: [AtomicU64; 2],
    /// Notifies sent while the device said it needed none.
    pub needless_notifies: AtomicU64,
}

/// What the device tells the driver about notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notifications {
    /// Notify after making buffers available.
    Wanted,
    /// `VIRTQ_USED_F_NO_NOTIFY`: it will look by itself.
    NotNeeded,
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
            memory: DeviceMemory::new(platform),
            interface,
            offered: FEATURE_MAC | offloads | modern,
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            queue_size,
            state: Mutex::new(State::default()),
            lie: Mutex::new(Lie::Honest),
            sent: Mutex::new(Vec::new()),
            resets: Mutex::new(Vec::new()),
            notifies: [const { AtomicU64::new(0) }; 2],
            needless_notifies: AtomicU64::new(0),
        })
    }

    /// Whether the device wants notifications (`Wanted`, the start) or not,
    /// written into the used ring of each queue set up (its flags' bit 0).
    pub fn set_notifications(&self, notifications: Notifications) {
        let flags: u16 = match notifications {
            Notifications::Wanted => 0,
            Notifications::NotNeeded => 1,
        };
        let state = self.state.lock();
        for ring in state.queues.iter().filter_map(|queue| queue.ring) {
            self.memory.write(ring.device, &flags.to_le_bytes());
        }
    }

    /// Whether the device said it needs no notifications on `queue`.
    fn notifications_off(&self, state: &State, queue: u16) -> bool {
        let ring = state.queues.get(usize::from(queue)).and_then(|queue| queue.ring);
        ring.is_some_and(|ring| self.memory.read_u16(ring.device) & 1 != 0)
    }

    /// Takes and sends what the transmit ring holds, unasked (what a device
    /// that needs no notifications does when it gets round to it).
    pub fn run_transmit(&self) {
        let mut state = self.state.lock();
        self.with_queue(&mut state, TRANSMIT_QUEUE, |access| transmit(access, &self.sent));
    }

    /// The features the driver accepted.
    pub fn accepted(&self) -> u64 {
        self.state.lock().accepted
    }

    /// The device status byte.
    pub fn device_status(&self) -> u8 {
        self.state.lock().status
    }

    /// Runs `answer` on queue `queue` if the driver set it up.
    fn with_queue<R>(
        &self,
        state: &mut State,
        queue: u16,
        answer: impl FnOnce(&mut QueueAccess<'_>) -> R,
    ) -> Option<R> {
        let State { accepted, queues, isr, .. } = state;
        QueueAccess::lend(queues, queue, *accepted, &self.memory, isr).map(|mut access| answer(&mut access))
    }

    /// Receives `frame` into the next posted receive chain; `false` when the
    /// driver posted none (or the queue is not set up).
    pub fn inject(&self, frame: &[u8]) -> bool {
        let lie = *self.lie.lock();
        let mut state = self.state.lock();
        self.with_queue(&mut state, RECEIVE_QUEUE, |queue| receive(queue, frame, lie)).unwrap_or(false)
    }

    fn reset(&self, state: &mut State) {
        let rings = state.queues.iter().filter_map(|queue| queue.ring);
        let rings_allocated = rings
            .clone()
            .all(|ring| ring.parts().iter().all(|&(address, length)| self.memory.allocated(address, length)));
        let chains_allocated = state.queues.iter().flat_map(|queue| &queue.held).all(|chain| {
            chain
                .descriptors
                .iter()
                .all(|descriptor| self.memory.allocated(descriptor.address, u64::from(descriptor.length)))
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
        let ring = Ring {
            size,
            descriptors: areas.descriptors.as_u64(),
            driver: areas.driver.as_u64(),
            device: areas.device.as_u64(),
        };
        state.queues[usize::from(queue)] = QueueState::start(ring);
        Ok(())
    }

    fn notify(&self, queue: u16) -> Result<(), IoFailure> {
        let mut state = self.0.state.lock();
        assert_ne!(state.status & STATUS_DRIVER_OK, 0, "notify before DRIVER_OK");
        if let Some(count) = self.0.notifies.get(usize::from(queue)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if self.0.notifications_off(&state, queue) {
            self.0.needless_notifies.fetch_add(1, Ordering::Relaxed);
        }
        // Receive chains are taken when a frame arrives.
        let answered = self.0.with_queue(&mut state, queue, |access| {
            if queue == TRANSMIT_QUEUE {
                transmit(access, &self.0.sent);
            }
        });
        answered.ok_or_else(|| {
            let cause = Cause::Virtio(dmakit::dma::VirtioCause::QueueNotSetUp { queue });
            IoFailure::new(IoReturn::NotReady, cause)
        })
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
