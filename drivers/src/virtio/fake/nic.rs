//! The virtio-net personality of the register fake ([`FakeVirtioNet`]):
//! receive queue 0 and transmit queue 1, each with its own maximum size and
//! notify offset, and the MAC in the device configuration. It moves frames
//! only through the descriptors of the chains it was given:
//!
//! - a receive chain must be all device-writable, with the header alone in its
//!   first descriptor (legacy without `ANY_LAYOUT`); a frame the test injects
//!   goes into the oldest chain the device took, header first (`num_buffers`
//!   1 with `VERSION_1`), every byte inside the chain's writable descriptors
//!   and in allocated memory, and the used length is what it wrote;
//! - a transmit chain must be all device-readable, its header alone and all
//!   zeroes (no offloads were negotiated); the frame after it is kept, and the
//!   chain goes back at once.
//!
//! It can lie about a receive ([`Lie`]): a used length above the chain, an id
//! that heads no chain, or the same element twice. `fake_net.rs`, the fake at
//! the level of the `Transport` trait, moves frames with the same functions.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use spin::Mutex;

use super::super::net::{FEATURE_MAC, HEADER_LEGACY, HEADER_VERSION_1, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::super::queue::DESCRIPTOR_WRITE;
use super::super::registers::{FEATURE_VERSION_1, STATUS_DRIVER_OK};
use super::super::transport::Interface;
use super::device::{FakeDevice, Personality, QueueOffer};
use super::rings::{Chain, DeviceMemory, QueueAccess};

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
    /// Stale elements first, one naming each chain the device still holds
    /// (no frame in them), then the chain's element twice, all published by
    /// one used index: an index ahead of the chains the driver has in flight.
    StaleReplay,
}

/// Bytes of virtio-net's configuration (virtio 1.0, 5.1.4): `mac` (6),
/// `status` (2), `max_virtqueue_pairs` (2).
pub const NET_CONFIG_BYTES: u32 = 10;

/// The fake virtio-net device on either register layout.
pub type FakeVirtioNet = FakeDevice<FakeNic>;

/// virtio-net's side of the fake.
pub struct FakeNic {
    /// Its MAC, in the configuration.
    pub mac: [u8; 6],
    /// What it says about the next frame it receives.
    pub lie: Mutex<Lie>,
    /// Frames read from transmit chains (without the header), in order.
    pub sent: Mutex<Vec<Vec<u8>>>,
}

/// The header's bytes for the features the driver accepted.
fn header_bytes(accepted: u64) -> u64 {
    match accepted & FEATURE_VERSION_1 {
        0 => HEADER_LEGACY,
        _ => HEADER_VERSION_1,
    }
}

/// Receives `frame` on the receive `queue`: into the oldest chain the device
/// took (taking the new ones first), then its used element as `lie` says;
/// `false` when the driver posted none.
pub fn receive(queue: &mut QueueAccess<'_>, frame: &[u8], lie: Lie) -> bool {
    let chains = queue.take_available();
    queue.state.held.extend(chains);
    let Some(chain) = queue.state.held.pop_front() else { return false };
    let Received { head, written, writable } = receive_into(queue.memory, &chain, frame, header_bytes(queue.accepted));
    let head = u32::from(head);
    let (id, length, times) = match lie {
        Lie::Honest => (head, written, 1),
        Lie::LengthAboveChain => (head, writable as u32 + 100, 1),
        Lie::IdNotAHead => (head + 1, written, 1),
        Lie::IdTwice | Lie::StaleReplay => (head, written, 2),
    };
    let mut elements = match lie {
        Lie::StaleReplay => queue.state.held.iter().map(|held| (u32::from(held.head), 0)).collect(),
        _ => Vec::new(),
    };
    elements.extend(core::iter::repeat_n((id, length), times));
    queue.give_back_elements(&elements);
    true
}

/// A receive chain a frame went into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its head: the id an honest element gives back.
    pub head: u16,
    /// Bytes written (header and frame): an honest used length.
    pub written: u32,
    /// Its device-writable bytes: no used length may say more.
    pub writable: u64,
}

/// Writes `frame`, after a `header_bytes` header, into the receive `chain`.
fn receive_into(memory: &DeviceMemory, chain: &Chain, frame: &[u8], header_bytes: u64) -> Received {
    let header_bytes = header_bytes as usize;
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
        memory.write(descriptor.address, &rest[..take]);
        rest = &rest[take..];
    }
    assert!(rest.is_empty(), "a {}-byte frame does not fit a {writable}-byte chain", frame.len());
    Received { head: chain.head, written: bytes.len() as u32, writable }
}

/// Sends every chain the driver made available on the transmit `queue`: each
/// frame (without its header) goes to `sent`, each chain back at once.
pub fn transmit(queue: &mut QueueAccess<'_>, sent: &Mutex<Vec<Vec<u8>>>) {
    let header_bytes = header_bytes(queue.accepted);
    for chain in queue.take_available() {
        assert_eq!(u64::from(chain.descriptors[0].length), header_bytes, "the header has a descriptor of its own");
        let mut bytes = Vec::new();
        for descriptor in &chain.descriptors {
            assert_eq!(descriptor.flags & DESCRIPTOR_WRITE, 0, "a transmit buffer is device-readable");
            bytes.extend(queue.memory.read(descriptor.address, descriptor.length as usize));
        }
        let frame = bytes.split_off(header_bytes as usize);
        assert!(bytes.iter().all(|byte| *byte == 0), "no offloads: the header is all zeroes");
        sent.lock().push(frame);
        queue.give_back(u32::from(chain.head), 0, 1);
    }
}

impl FakeVirtioNet {
    /// A device of `interface` offering the MAC (and on the modern interface
    /// `VERSION_1` and `ACCESS_PLATFORM`), plus offloads and mergeable
    /// buffers, which the driver must not take. Its receive queue has at most
    /// 64 entries, notified at 2 * 4 bytes into the notify structure; its
    /// transmit queue 128, at 5 * 4 bytes: a driver that mixes the queues up
    /// gets the other queue's size or notifies the wrong place.
    pub fn new(platform: &'static SimulatedPlatform, interface: Interface) -> Arc<FakeVirtioNet> {
        // CSUM (0), GUEST_CSUM (1), HOST_TSO4 (11), MRG_RXBUF (15).
        let offloads = 1 | 1 << 1 | 1 << 11 | 1 << 15;
        let nic = FakeNic {
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            lie: Mutex::new(Lie::Honest),
            sent: Mutex::new(Vec::new()),
        };
        let mut device = FakeDevice::with_personality(platform, interface, FEATURE_MAC | offloads, nic);
        device.max_queue_size = 64;
        device.queue_notify_off = 2;
        device.more_queues = alloc::vec![QueueOffer { max_size: 128, notify_off: 5 }];
        Arc::new(device)
    }

    /// Receives `frame` into the oldest receive chain the device took; `false`
    /// when the driver posted none (or the device is not running).
    pub fn inject(&self, frame: &[u8]) -> bool {
        if self.device_status() & STATUS_DRIVER_OK == 0 {
            return false;
        }
        let lie = *self.lie.lock();
        self.with_queue(RECEIVE_QUEUE, |queue| receive(queue, frame, lie)).unwrap_or(false)
    }

    /// Receives `frame` into the receive chain it holds at `pick` (modulo how
    /// many, oldest first; taking the new ones first), without putting it on
    /// the used ring (the test publishes what it likes:
    /// [`QueueAccess::publish`]). `None` when it holds none.
    pub fn receive_held(&self, pick: usize, frame: &[u8]) -> Option<Received> {
        self.with_queue(RECEIVE_QUEUE, |queue| {
            let chains = queue.take_available();
            queue.state.held.extend(chains);
            let chain = queue.take_held(pick)?;
            Some(receive_into(queue.memory, &chain, frame, header_bytes(queue.accepted)))
        })
        .flatten()
    }

    /// `(address, length)` of every descriptor of the receive chains it holds.
    pub fn held_receive_buffers(&self) -> Vec<(u64, u64)> {
        self.with_queue(RECEIVE_QUEUE, |queue| {
            let descriptors = queue.state.held.iter().flat_map(|chain| &chain.descriptors);
            descriptors.map(|descriptor| (descriptor.address, u64::from(descriptor.length))).collect()
        })
        .unwrap_or_default()
    }

    /// Receive chains the device holds, waiting for a frame.
    pub fn waiting(&self) -> usize {
        self.with_queue(RECEIVE_QUEUE, |queue| queue.state.held.len()).unwrap_or(0)
    }
}

impl Personality for FakeNic {
    fn config_bytes(&self) -> u32 {
        NET_CONFIG_BYTES
    }

    /// `mac`, then `status` and `max_virtqueue_pairs` (both 0: neither
    /// `STATUS` nor `MQ` is offered).
    fn config_read32(&self, offset: u16) -> u32 {
        let mut config = [0u8; NET_CONFIG_BYTES as usize];
        config[..6].copy_from_slice(&self.mac);
        let at = usize::from(offset);
        let bytes = config.get(at..at + 4).unwrap_or_else(|| panic!("virtio-net configuration read32 at {offset:#x}"));
        u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    }

    /// Receive chains wait for a frame; transmit chains are sent at once.
    fn notified(&self, queue: &mut QueueAccess<'_>) {
        match queue.index {
            RECEIVE_QUEUE => {
                let chains = queue.take_available();
                queue.state.held.extend(chains);
            }
            TRANSMIT_QUEUE => transmit(queue, &self.sent),
            other => panic!("virtio-net without multiqueue has queues 0 and 1, not {other}"),
        }
    }
}
