//! The virtio-net device (virtio 1.0, 5.1), on top of the same transports and
//! virtqueue as virtio-blk: receive queue 0 and transmit queue 1, the MAC from
//! the device configuration, no offloads and no mergeable buffers. It is a
//! [`NetworkHardware`]: the network layer (`dmakit::net::Nic`) owns every
//! buffer, prepares each once and recycles it with `synchronize_range`; this
//! file only turns a lent buffer into a chain and reports the chains the
//! device gave back.
//!
//! # Buffers and chains
//!
//! Every buffer is the device's header (`virtio_net_hdr`), then a frame of at
//! most [`MAX_FRAME`] bytes. The header is 12 bytes once `VERSION_1` is
//! negotiated (`num_buffers` is always there) and 10 on the legacy interface
//! without `MRG_RXBUF`. A legacy driver that has not negotiated `ANY_LAYOUT`
//! must give the header a descriptor of its own (virtio 1.0, 5.1.6.6), so
//! every chain here does, on both interfaces:
//!
//! ```text
//! slot i of a queue: descriptors [i*K, (i+1)*K), K = 1 + FRAME_SEGMENTS
//! chain: [header] -> [frame, first segment's rest] -> [frame, next segments]...
//!        receive: all device-writable        transmit: all device-readable,
//!                                            cut to the bytes to send
//! ```
//!
//! The static split is the block driver's (see `block.rs`): a used element's
//! id names its slot by a division.
//!
//! # A device is not trusted
//!
//! Each used element's id must head a slot's chain and that slot must be the
//! device's; otherwise the device's ring can no longer be believed, and
//! `collect` says `MustStop` (Linux marks such a queue broken). A receive
//! length above the chain's writable bytes is not believed either: the slot is
//! reported as `ReceiveRefused`, and the network layer drops the frame and
//! posts the buffer again.

use alloc::vec::Vec;

use dmakit::block::claim_slot;
use dmakit::dma::{Cause, DeviceStatus, IoFailure, IoReturn, LentTransfer, Specification, VirtioCause};
use dmakit::net::{DeviceHealth, Interrupts, NetEvent, NetworkHardware, NicShape, Quiesced, Slot};
use spin::Mutex;

use super::bring_up::{self, Negotiated};
use super::queue::{SEGMENT_FORMAT, VirtqDescriptor};
use super::registers::FEATURE_VERSION_1;
use super::transport::{DmaPlatforms, Interface, Transport};
use super::virtqueue::Virtqueue;

/// Feature `VIRTIO_NET_F_MAC`: the device's configuration holds its MAC.
pub const FEATURE_MAC: u64 = 1 << 5;
/// The virtio-net features the driver accepts: the MAC only (no checksum or
/// segmentation offloads, no mergeable receive buffers).
pub const NET_FEATURES: u64 = FEATURE_MAC;
/// virtio-net configuration, offset 0: `mac`, 6 bytes.
pub const CONFIG_MAC: u16 = 0;
/// The receive queue.
pub const RECEIVE_QUEUE: u16 = 0;
/// The transmit queue.
pub const TRANSMIT_QUEUE: u16 = 1;
/// The longest frame: Ethernet's 14-byte header and 1500 bytes of payload.
pub const MAX_FRAME: u64 = 1514;
/// The header with `VERSION_1`: flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers.
pub const HEADER_VERSION_1: u64 = 12;
/// The legacy header without `MRG_RXBUF`: the same, without `num_buffers`.
pub const HEADER_LEGACY: u64 = 10;
/// Segments one buffer may take: 1526 bytes of one contiguous buffer span at
/// most two pages; one more for a buffer in pieces.
pub const FRAME_SEGMENTS: usize = 3;
/// Descriptors per slot: the header's own, then the segments.
pub const DESCRIPTORS_PER_SLOT: usize = 1 + FRAME_SEGMENTS;
/// The most buffers per queue.
pub const MAX_NET_DEPTH: usize = 64;
/// The MAC used when the device offers none: locally administered (bit 1 of
/// the first byte), unicast.
pub const FALLBACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The two queues the device is given at bring-up and forgets at a reset.
struct Rings {
    receive: Virtqueue,
    transmit: Virtqueue,
}

impl Rings {
    fn release_after(self, reset: &Result<(), IoFailure>) {
        self.receive.release_after(reset);
        self.transmit.release_after(reset);
    }

    fn queue(&mut self, queue: u16) -> &mut Virtqueue {
        match queue {
            RECEIVE_QUEUE => &mut self.receive,
            _ => &mut self.transmit,
        }
    }
}

/// What the device holds, behind one lock.
struct Channel {
    /// `None` once released after a reset: the driver is stopped.
    rings: Option<Rings>,
    /// Per receive slot the device holds: the bytes its chain lets it write.
    receive: Vec<Option<u64>>,
    /// Per transmit slot the device holds: the bytes it was given to send.
    transmit: Vec<Option<u64>>,
}

/// A virtio network device on either virtio-PCI interface.
pub struct VirtioNet<T: Transport> {
    transport: T,
    platforms: DmaPlatforms,
    negotiated: Negotiated,
    mac: [u8; 6],
    header_bytes: u64,
    receive_depth: usize,
    transmit_depth: usize,
    channel: Mutex<Channel>,
}

/// The specification for a buffer: 64 bits, no segment longer than a
/// descriptor's 32-bit length, at most `FRAME_SEGMENTS` of them.
const BUFFER_SPECIFICATION: Specification = Specification {
    output: SEGMENT_FORMAT,
    max_segment_size: u32::MAX as u64,
    max_segments: FRAME_SEGMENTS,
    ..Specification::UNLIMITED_64
};

impl<T: Transport> VirtioNet<T> {
    /// Brings the device up: features (the MAC; on the modern interface
    /// `VERSION_1` and `ACCESS_PLATFORM`), both queues on the platform the
    /// features call for, the MAC, DRIVER_OK. Whatever fails, the device ends
    /// reset and FAILED, holding no memory of ours.
    pub fn new(transport: T, platforms: DmaPlatforms) -> Result<Self, IoFailure> {
        let negotiated = bring_up::negotiate(&transport, NET_FEATURES)?;
        let platform = negotiated.platform(&platforms);
        let minimum = DESCRIPTORS_PER_SLOT as u16;
        let receive = bring_up::set_up_queue(&transport, platform, RECEIVE_QUEUE, minimum).inspect_err(|_| {
            let _ = bring_up::give_up(&transport);
        })?;
        let transmit = match bring_up::set_up_queue(&transport, platform, TRANSMIT_QUEUE, minimum) {
            Ok(transmit) => transmit,
            Err(failure) => {
                // The device has the receive queue's address.
                receive.release_after(&bring_up::give_up(&transport));
                return Err(failure);
            }
        };
        let rings = Rings { receive, transmit };
        // No interrupts until a handler can quiet them (`set_interrupts`):
        // nothing may hold a shared line asserted with no handler to quiet it.
        let suppressed = Interrupts::Suppressed;
        if let Err(failure) = rings.receive.set_interrupts(suppressed).and(rings.transmit.set_interrupts(suppressed)) {
            rings.release_after(&bring_up::give_up(&transport));
            return Err(failure);
        }
        let mac = match negotiated.accepted & FEATURE_MAC {
            0 => Ok(FALLBACK_MAC),
            _ => transport.config_read64(CONFIG_MAC).map(|word| {
                let bytes = word.to_le_bytes();
                [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]
            }),
        };
        let mac = match mac {
            Ok(mac) => mac,
            Err(failure) => {
                rings.release_after(&bring_up::give_up(&transport));
                return Err(failure);
            }
        };
        let header_bytes = match negotiated.accepted & FEATURE_VERSION_1 {
            0 => HEADER_LEGACY,
            _ => HEADER_VERSION_1,
        };
        let depth = |ring: &Virtqueue| (usize::from(ring.size()) / DESCRIPTORS_PER_SLOT).min(MAX_NET_DEPTH);
        let (receive_depth, transmit_depth) = (depth(&rings.receive), depth(&rings.transmit));
        bring_up::ready(&transport, &negotiated);
        let channel = Channel {
            rings: Some(rings),
            receive: alloc::vec![None; receive_depth],
            transmit: alloc::vec![None; transmit_depth],
        };
        Ok(VirtioNet {
            transport,
            platforms,
            negotiated,
            mac,
            header_bytes,
            receive_depth,
            transmit_depth,
            channel: Mutex::new(channel),
        })
    }

    /// Features the device offered and the driver accepted.
    pub fn features(&self) -> (u64, u64) {
        (self.negotiated.offered, self.negotiated.accepted)
    }

    /// Which interface the device is driven through.
    pub fn interface(&self) -> Interface {
        self.transport.interface()
    }

    /// Bytes of the device's header in front of every frame.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// The chain for a lent buffer: one descriptor per segment, the first cut
    /// after the header so the header has a descriptor of its own, and only
    /// the first `length` bytes. `EntryFormat` for a header split across
    /// segments or more segments than a slot has descriptors for (the
    /// specification keeps both from happening).
    fn chain(&self, buffer: &LentTransfer<'_>, length: u64) -> Result<Vec<VirtqDescriptor>, IoFailure> {
        let broken = |rule| IoFailure::new(IoReturn::NoResources, Cause::EntryFormat { format: "virtio-net", rule });
        let entries: Vec<VirtqDescriptor> = buffer.entries()?;
        let header = self.header_bytes as u32;
        let Some((first, rest)) = entries.split_first() else { return Err(broken("a buffer has a segment")) };
        if first.length < header {
            return Err(broken("the header lies in one segment"));
        }
        let mut chain = Vec::with_capacity(entries.len() + 1);
        chain.push(VirtqDescriptor { length: header, ..*first });
        let after =
            VirtqDescriptor { address: first.address + u64::from(header), length: first.length - header, ..*first };
        let mut left = length.saturating_sub(u64::from(header));
        for descriptor in core::iter::once(after).chain(rest.iter().copied()) {
            if left == 0 {
                break;
            }
            let take = u64::from(descriptor.length).min(left);
            chain.push(VirtqDescriptor { length: take as u32, ..descriptor });
            left -= take;
        }
        if chain.len() > DESCRIPTORS_PER_SLOT {
            return Err(broken("a buffer takes at most the slot's descriptors"));
        }
        Ok(chain)
    }

    /// Puts `buffer`'s chain (its first `length` bytes) in free slot `slot`
    /// of `queue` and notifies the device.
    fn post(&self, queue: u16, slot: Slot, buffer: &LentTransfer<'_>, length: u64) -> Result<(), IoFailure> {
        let chain = self.chain(buffer, length)?;
        {
            let mut channel = self.channel.lock();
            let Channel { rings, receive, transmit } = &mut *channel;
            let slots = if queue == RECEIVE_QUEUE { receive } else { transmit };
            let (rings, free) = claim_slot(rings, slots, slot)?;
            // Below the queue's size (a u16): depth * K entries fit in it.
            let head = (slot * DESCRIPTORS_PER_SLOT) as u16;
            let ring = rings.queue(queue);
            ring.add_chain(head, &chain)?;
            *free = Some(length);
            // A device that will look by itself is not interrupted (each
            // notify is a register write the emulator serves under its lock).
            // A ring it cannot be asked about is notified, to be safe.
            if !ring.device_wants_notification().unwrap_or(true) {
                return Ok(());
            }
        }
        if let Err(failure) = self.transport.notify(queue) {
            // The chain is available: the device may take it whenever it looks.
            log::error!("virtio-net: notify of queue {queue} failed: {failure}");
        }
        Ok(())
    }

    /// Takes every new used element of `queue`, checked, as events. `Err`
    /// for an element that cannot be believed: the device must stop.
    fn collect_queue(
        queue: u16,
        ring: &mut Virtqueue,
        slots: &mut [Option<u64>],
        events: &mut Vec<NetEvent>,
    ) -> Result<(), IoFailure> {
        let broken = |cause| IoFailure::new(IoReturn::IoError, Cause::Virtio(cause));
        while let Some(element) = ring.pop_used()? {
            let id = element.id as usize;
            let slot = id / DESCRIPTORS_PER_SLOT;
            if !id.is_multiple_of(DESCRIPTORS_PER_SLOT) || slot >= slots.len() {
                return Err(broken(VirtioCause::UsedIdNotAHead { queue, id: element.id }));
            }
            let Some(writable) = slots[slot].take() else {
                return Err(broken(VirtioCause::UsedIdNotInFlight { queue, id: element.id }));
            };
            let length = u64::from(element.length);
            events.push(match queue {
                RECEIVE_QUEUE if length > writable => {
                    let cause = VirtioCause::UsedLengthAboveChain { queue, length: element.length, writable };
                    NetEvent::ReceiveRefused { slot, failure: IoFailure::new(IoReturn::Overrun, Cause::Virtio(cause)) }
                }
                RECEIVE_QUEUE => NetEvent::Received { slot, length },
                _ => NetEvent::Transmitted { slot },
            });
        }
        Ok(())
    }

    /// Resets the device, forgets every buffer it held, then releases both
    /// queues (or leaks them if the reset was not confirmed).
    fn shut_down(&self) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        let Some(rings) = channel.rings.take() else { return Ok(()) };
        let reset = self.transport.reset();
        channel.receive.fill(None);
        channel.transmit.fill(None);
        rings.release_after(&reset);
        reset
    }
}

impl<T: Transport> Drop for VirtioNet<T> {
    /// Resets the device, so that it forgets the queues, then releases them.
    fn drop(&mut self) {
        bring_up::dropped("virtio-net", self.shut_down());
    }
}

impl<T: Transport> NetworkHardware for VirtioNet<T> {
    fn shape(&self) -> NicShape {
        NicShape {
            driver_name: "VirtioNet",
            mac: self.mac,
            receive_depth: self.receive_depth,
            transmit_depth: self.transmit_depth,
            header_bytes: self.header_bytes,
            max_frame: MAX_FRAME,
            specification: BUFFER_SPECIFICATION,
            platform: self.negotiated.platform(&self.platforms),
        }
    }

    /// The whole buffer, device-writable (the lent transfer is `In`).
    fn post_receive(&self, slot: Slot, buffer: &LentTransfer<'_>) -> Result<(), IoFailure> {
        self.post(RECEIVE_QUEUE, slot, buffer, buffer.length())
    }

    /// The first `length` bytes, device-readable (the lent transfer is `Out`):
    /// the device sends every byte of the chain.
    fn post_transmit(&self, slot: Slot, frame: &LentTransfer<'_>, length: u64) -> Result<(), IoFailure> {
        if length > frame.length() || length <= self.header_bytes {
            let (length, max) = (length.saturating_sub(self.header_bytes), MAX_FRAME);
            return Err(IoFailure::new(
                IoReturn::BadArgument,
                Cause::Net(dmakit::dma::NetCause::FrameLength { length, max }),
            ));
        }
        self.post(TRANSMIT_QUEUE, slot, frame, length)
    }

    fn collect(&self, event: &mut dyn FnMut(NetEvent)) -> DeviceHealth {
        let mut events = Vec::new();
        let health = {
            let mut channel = self.channel.lock();
            let Channel { rings: Some(rings), receive, transmit } = &mut *channel else { return DeviceHealth::Running };
            Self::collect_queue(RECEIVE_QUEUE, &mut rings.receive, receive, &mut events)
                .and_then(|()| Self::collect_queue(TRANSMIT_QUEUE, &mut rings.transmit, transmit, &mut events))
        };
        // Reported once the lock is dropped: the layer's bookkeeping never
        // runs inside the driver's.
        events.into_iter().for_each(&mut *event);
        match health {
            Ok(()) => DeviceHealth::Running,
            Err(failure) => {
                log::error!("virtio-net: {failure}");
                DeviceHealth::MustStop(failure)
            }
        }
    }

    /// Both queues: the receive queue's interrupt wakes the CPU for a frame,
    /// the transmit queue's for buffers to take back when the ring was full.
    fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure> {
        let channel = self.channel.lock();
        let rings = channel.rings.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        rings.receive.set_interrupts(interrupts).and(rings.transmit.set_interrupts(interrupts))
    }

    /// Reading ISR acknowledges the interrupt; bit 0 says a queue has news.
    fn acknowledge_interrupt(&self) -> bool {
        self.transport.acknowledge_interrupt() & 1 != 0
    }

    fn quiesce(&self) -> Quiesced {
        bring_up::quiesced(self.shut_down())
    }
}

impl<T: Transport> VirtioNet<T> {
    /// What the device status register says now (for a report).
    pub fn last_status(&self) -> DeviceStatus {
        DeviceStatus::Virtio { device_status: self.transport.status() }
    }
}
