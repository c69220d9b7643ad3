//! The virtio-blk device, the top of three layers: the transport (legacy or
//! modern virtio-PCI, `transport.rs`), the virtqueue (`virtqueue.rs`, which
//! knows chains, not block requests) and this file, which knows what a block
//! request looks like on the queue. It is generic over the transport, so it runs
//! on either, and on the host against fakes of both. It is a [`HardwareQueue`]:
//! the block layer's `QueuedDisk` prepares and completes the data, queues,
//! waits, defers and times out; this file only programs slots and reports the
//! ones the device finished.
//!
//! # Slots: a static split of the descriptor table
//!
//! The device takes up to `depth` requests at once, one per slot. Each slot owns
//! a fixed share of everything a request needs, made once at start:
//!
//! ```text
//! slot i:  descriptors [i*K, (i+1)*K)     K = queue_size / depth
//!          a 16-byte header (Out) and a 1-byte status (In) in the driver's
//!          request area, coherent memory the device is given at bring-up
//!          the data: lent by the block layer, prepared with its slot's command
//! chain:   [header] -> [data] ... [data] -> [status]    at most K - 2 data segments
//!           device reads  device writes (read) or reads (write)  device writes
//! ```
//!
//! `depth = min(32, queue_size / (6 + 2))`, aiming at six data segments per
//! slot (fewer if the device's `seg_max` says so); a larger queue gives each
//! slot more. QEMU's 256-entry queue makes 32 slots of 8 descriptors. The head
//! of slot i's chain is descriptor `i*K`, so the id in a used element names the
//! slot by a division.
//!
//! This is FreeBSD's way (vtblk preallocates a fixed set of requests, each with
//! its header, status and busdma map), carried down to the descriptors. Linux's
//! virtio ring instead keeps a free list of descriptors and takes as many as
//! each request needs, which packs the table better (one request may use all
//! of it) but makes "out of descriptors" a state the driver must handle at run
//! time, and the free list's bookkeeping must stay right while the device
//! returns chains in any order. The static split is simpler to teach: nothing
//! is allocated or reclaimed per request, a slot cannot run short, and a
//! request cannot starve the others. Its price: a request gets at most K - 2
//! data segments; a buffer in more pieces is double-buffered whole by the DMA
//! layer into one contiguous bounce buffer. Buffers from `DmaBuffer::allocate`
//! are one piece, so this stays rare.
//!
//! # One request's life
//!
//! 1. `program`: the CPU fills the slot's header (type, sector) and marks the
//!    status byte unwritten, in the request area. The data is a prepared
//!    transfer the block layer lends: each of its segments becomes one typed
//!    [`VirtqDescriptor`], between the header's and the status's. The chain goes
//!    into the slot's descriptors, its head into the available ring, the index
//!    is bumped, the device notified.
//! 2. `collect`: for each new used element, the status byte is read and the
//!    bytes the device moved are reported: a short read is an `Underrun` once
//!    the block layer completes the transfer with them, and only what the
//!    device wrote comes back from a bounce buffer. An error status, or a used
//!    length above what the chain let the device write, fails only that
//!    request; the device keeps running.
//!
//! A flush (`VIRTIO_BLK_T_FLUSH`, only with `VIRTIO_BLK_F_FLUSH` negotiated)
//! is the same chain without data: header -> status, sector 0.
//!
//! No memory the device was given goes back while the device may still use it:
//! `quiesce` (and dropping the driver) resets the device before the block layer
//! completes any transfer or the queue is released; if the device does not
//! confirm the reset, it says so, the block layer abandons the transfers and the
//! queue and request area are leaked, never freed. A start
//! that fails after the queue was set up resets the device before freeing it.
//!
//! The device reaches all 64 bits of memory, so nothing is bounced unless a
//! request asks for a restriction or the driver is told to force double
//! buffering. Which platform its memory goes through (the bare machine, or the
//! function's IOMMU domain) follows from the negotiated features: `DmaRoute`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dmakit::block::{
    BlockCommand, BlockOperation, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Slot, SlotCommand,
    WriteCache, claim_slot,
};
use dmakit::dma::{
    ByteCount, Cause, CoherentMemory, DeviceStatus, DmaPlatform, IoFailure, IoReturn, LentTransfer, Specification,
    VirtioCause,
};
use spin::Mutex;

use super::bring_up;
use super::layout::{MAX_DEPTH, SlotLayout};
use super::queue::{DESCRIPTOR_WRITE, SEGMENT_FORMAT, VirtqDescriptor};
use super::registers::*;
use super::transport::{DmaPlatforms, DmaRoute, Interface, Transport};
use super::virtqueue::{Virtqueue, release_after};

/// The most sectors one request carries (1 MiB); `read` and `write` split larger
/// transfers.
const MAX_REQUEST_SECTORS: u64 = 2048;
/// Bytes of each slot's share of the request area: the header, then the status.
const REQUEST_AREA_STRIDE: u64 = 32;
/// What the status byte holds until the device writes it: no status a device
/// reports, so a device that never wrote it is not taken for a success.
const STATUS_UNWRITTEN: u8 = 0xff;

/// Whether the disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Medium {
    /// Reads and writes.
    Writable,
    /// Reads only (the device offered `VIRTIO_BLK_F_RO`).
    ReadOnly,
}

/// What the device is given at bring-up and forgets at a reset: queue 0, and
/// each slot's header and status (the request area).
struct Shared {
    queue: Virtqueue,
    /// `REQUEST_AREA_STRIDE` bytes per slot: header at 0, status at 16.
    requests: CoherentMemory,
    /// Where the device sees the request area's byte 0.
    requests_address: u64,
}

impl Shared {
    /// Gives both back once the device was told to forget them (see
    /// [`release_after`]).
    fn release_after(self, reset: &Result<(), IoFailure>) {
        self.queue.release_after(reset);
        release_after(self.requests, reset, "request area");
    }
}

/// A request the device holds: what the block layer lent, remembered.
#[derive(Clone, Copy)]
struct InFlight {
    command: SlotCommand,
    /// Data bytes prepared (none for a flush).
    length: u64,
}

/// Everything requests share, behind one lock (the block layer's gate already
/// keeps `program`, `collect`, `quiesce` and `reopen` apart; the lock makes the
/// driver safe on its own).
struct Channel {
    /// `None` once released after a reset: the driver is stopped.
    shared: Option<Shared>,
    /// The request in each slot.
    slots: Vec<Option<InFlight>>,
}

/// What a bring-up learned from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    features_offered: u64,
    features_accepted: u64,
    dma_route: DmaRoute,
    capacity: u64,
    layout: SlotLayout,
}

/// A specification for the request's data: the device reaches all 64 bits;
/// none is longer than a descriptor's 32-bit length holds, and a request uses
/// at most the slot's data descriptors.
const fn data_specification(max_segments: usize) -> Specification {
    Specification {
        output: SEGMENT_FORMAT,
        max_segment_size: u32::MAX as u64,
        max_segments,
        ..Specification::UNLIMITED_64
    }
}

/// A virtio block device on either virtio-PCI interface.
pub struct VirtioBlock<T: Transport> {
    transport: T,
    /// Kept for `reopen`, which must land on the same platform.
    platforms: DmaPlatforms,
    channel: Mutex<Channel>,
    link: Link,
    medium: Medium,
    dma_description: &'static str,
}

impl<T: Transport> VirtioBlock<T> {
    /// Brings the device up (`bring_up`).
    pub fn new(transport: T, platforms: DmaPlatforms) -> Result<Self, IoFailure> {
        let (link, shared) = Self::bring_up(&transport, &platforms, |_| Ok(()))?;
        let medium = match link.features_accepted & FEATURE_READ_ONLY {
            0 => Medium::Writable,
            _ => Medium::ReadOnly,
        };
        let channel = Channel { shared: Some(shared), slots: (0..link.layout.depth).map(|_| None).collect() };
        Ok(VirtioBlock {
            dma_description: link.dma_route.description(link.dma_route.platform(&platforms)),
            transport,
            platforms,
            channel: Mutex::new(channel),
            link,
            medium,
        })
    }

    /// The one way the device is set up, at start and at reopen: resets it,
    /// negotiates features (with the `FEATURES_OK` handshake on a modern
    /// device), picks the DMA platform the features call for, sets up queue 0
    /// and the request area, reads the configuration, lets `check` accept it,
    /// and says DRIVER_OK. Whatever fails, the device ends reset and FAILED, and
    /// holds no memory of ours.
    fn bring_up(
        transport: &T,
        platforms: &DmaPlatforms,
        check: impl FnOnce(&Link) -> Result<(), IoFailure>,
    ) -> Result<(Link, Shared), IoFailure> {
        let negotiated = bring_up::negotiate(transport, BLOCK_FEATURES)?;
        let shared = Self::set_up_queue(transport, negotiated.platform(platforms)).inspect_err(|_| {
            // `set_up_queue` took back whatever memory it gave the device.
            let _ = bring_up::give_up(transport);
        })?;
        let configured = Self::read_configuration(transport, negotiated.accepted, shared.queue.size()).and_then(
            |(capacity, layout)| {
                let link = Link {
                    features_offered: negotiated.offered,
                    features_accepted: negotiated.accepted,
                    dma_route: negotiated.dma_route,
                    capacity,
                    layout,
                };
                check(&link).map(|()| link)
            },
        );
        match configured {
            Ok(link) => {
                bring_up::ready(transport, &negotiated);
                Ok((link, shared))
            }
            Err(failure) => {
                // The device has the queue's address: it must forget it (reset)
                // before the memory can go back.
                shared.release_after(&bring_up::give_up(transport));
                Err(failure)
            }
        }
    }

    /// Allocates the request area and queue 0 and gives the queue to the
    /// device; an error in it is undone here (reset, then free).
    fn set_up_queue(transport: &T, platform: &'static dyn DmaPlatform) -> Result<Shared, IoFailure> {
        let area = Specification { alignment: 16, ..Specification::UNLIMITED_64 };
        let requests = CoherentMemory::allocate(platform, REQUEST_AREA_STRIDE * MAX_DEPTH as u64, area)?;
        match bring_up::set_up_queue(transport, platform, 0, 3) {
            Ok(queue) => {
                let requests_address = requests.device_address().as_u64();
                Ok(Shared { queue, requests, requests_address })
            }
            Err(failure) => {
                // The device was never told about the request area.
                release_after(requests, &Ok(()), "request area");
                Err(failure)
            }
        }
    }

    /// The disk's capacity and how the queue is split into slots. The device
    /// has the queue by now, so `bring_up` resets it if this fails.
    fn read_configuration(
        transport: &T,
        features_accepted: u64,
        queue_size: u16,
    ) -> Result<(u64, SlotLayout), IoFailure> {
        let capacity = transport.config_read64(CONFIG_CAPACITY)?;
        let seg_max = match features_accepted & FEATURE_SEG_MAX {
            0 => usize::MAX,
            _ => transport.config_read32(CONFIG_SEG_MAX)? as usize,
        };
        Ok((capacity, SlotLayout::new(queue_size, seg_max)?))
    }

    /// Features the device offered and the driver accepted, for the registry.
    pub fn features(&self) -> (u64, u64) {
        (self.link.features_offered, self.link.features_accepted)
    }

    /// Which interface the device is driven through.
    pub fn interface(&self) -> Interface {
        self.transport.interface()
    }

    /// How the device reaches memory (which platform its DMA goes through).
    pub fn dma_route(&self) -> DmaRoute {
        self.link.dma_route
    }

    /// [`VirtioBlock::dma_route`] in words, for the registry's `dma` property.
    pub fn dma_description(&self) -> &'static str {
        self.dma_description
    }

    /// Queue entries.
    pub fn queue_size(&self) -> u16 {
        self.link.layout.queue_size
    }

    /// How the queue is split into slots.
    pub fn slot_layout(&self) -> SlotLayout {
        self.link.layout
    }

    /// The device address of the queue memory; `None` while stopped (the
    /// queue was released).
    pub fn queue_address(&self) -> Option<u64> {
        self.channel.lock().shared.as_ref().map(|shared| shared.queue.address().as_u64())
    }

    /// The device address and bytes of the request area (every slot's header
    /// and status byte); `None` while stopped.
    pub fn request_area(&self) -> Option<(u64, u64)> {
        let channel = self.channel.lock();
        channel.shared.as_ref().map(|shared| (shared.requests_address, REQUEST_AREA_STRIDE * MAX_DEPTH as u64))
    }

    /// Resets the device, forgets every request it held, then releases the
    /// queue and request area (or leaks them if the reset was not confirmed).
    fn shut_down(&self) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        // A slot holds a request only while the queue is set up (`program`
        // needs it, and this clears both together).
        if channel.shared.is_none() {
            // Nothing of ours is in the device: it was shut down already.
            return Ok(());
        }
        // The device must forget the queue and every chain on it before any of
        // that memory goes back.
        let reset = self.transport.reset();
        channel.slots.iter_mut().for_each(|slot| *slot = None);
        if let Some(shared) = channel.shared.take() {
            shared.release_after(&reset);
        }
        reset
    }

    /// Whether the device took `VIRTIO_BLK_F_FLUSH` (its cache may hold
    /// finished writes until a flush).
    fn write_cache(&self) -> WriteCache {
        match self.link.features_accepted & FEATURE_FLUSH {
            0 => WriteCache::WriteThrough,
            _ => WriteCache::Volatile,
        }
    }

    /// Puts slot `slot`'s request on the queue: its header (type `kind`,
    /// `sector`) and status byte, marked unwritten, in the request area; the
    /// chain header -> `chain` (the data, if any) -> status in the slot's
    /// descriptors, made available; then notifies the device. An error before
    /// the chain was made available leaves it unseen by the device.
    fn post(
        &self,
        slot: Slot,
        (kind, sector): (u32, u64),
        mut chain: Vec<VirtqDescriptor>,
        request: InFlight,
    ) -> Result<(), IoFailure> {
        {
            let mut channel = self.channel.lock();
            let Channel { shared, slots } = &mut *channel;
            let (shared, free) = claim_slot(shared, slots, slot)?;
            if chain.len() > self.link.layout.data_segments {
                // The data specification allows no more segments than the slot
                // has descriptors for, so this is a broken promise, not a limit.
                let rule = "a request's data takes at most the slot's data descriptors";
                return Err(IoFailure::new(IoReturn::NoResources, Cause::EntryFormat { format: "virtq", rule }));
            }
            // The request (virtio 1.0, 5.2.6): the header, type (u32), reserved
            // (u32) and sector (u64), little-endian, then the status byte,
            // marked unwritten. The CPU's last touch before the device reads
            // the one and writes the other.
            let mut bytes = [0u8; (HEADER_BYTES + STATUS_BYTES) as usize];
            bytes[0..4].copy_from_slice(&kind.to_le_bytes());
            bytes[8..16].copy_from_slice(&sector.to_le_bytes());
            bytes[HEADER_BYTES as usize] = STATUS_UNWRITTEN;
            let header_at = slot as u64 * REQUEST_AREA_STRIDE;
            shared.requests.write_bytes(header_at, &bytes)?;
            // The device reads the header, writes the status: the driver's own
            // pieces, whose lengths fit a descriptor by construction.
            let header = shared.requests_address + header_at;
            let (header_length, status_length) = (HEADER_BYTES as u32, STATUS_BYTES as u32);
            chain.insert(0, VirtqDescriptor { address: header, length: header_length, flags: 0, next: 0 });
            let status = header + HEADER_BYTES;
            chain.push(VirtqDescriptor { address: status, length: status_length, flags: DESCRIPTOR_WRITE, next: 0 });
            // Slot i's chain starts at descriptor i*K, below the queue size (a u16).
            let head = (slot * self.link.layout.descriptors_per_slot) as u16;
            shared.queue.add_chain(head, &chain)?;
            *free = Some(request);
            // Not while the device says it will look by itself (a ring it
            // cannot be asked about is notified).
            if !shared.queue.device_wants_notification().unwrap_or(true) {
                return Ok(());
            }
        }
        if let Err(failure) = self.transport.notify(0) {
            // The chain is available: the device may take it whenever it looks.
            // The request stays in flight; if it never ends, the block layer's
            // timeout stops the device before its memory goes back.
            log::error!("virtio-blk: notify failed: {failure}");
        }
        Ok(())
    }

    /// At reopen: the device must be the one the slots were made for (same
    /// split, same platform, same size).
    fn check_same_device(&self, link: &Link) -> Result<(), IoFailure> {
        let same = link.layout == self.link.layout
            && link.dma_route == self.link.dma_route
            && link.capacity == self.link.capacity
            && link.features_accepted == self.link.features_accepted;
        if same {
            return Ok(());
        }
        Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::ConfigurationChanged)))
    }
}

impl<T: Transport> Drop for VirtioBlock<T> {
    /// Resets the device, so that it forgets the queue, then releases it (as
    /// `quiesce`).
    fn drop(&mut self) {
        bring_up::dropped("virtio-blk", self.shut_down());
    }
}

impl<T: Transport> HardwareQueue for VirtioBlock<T> {
    fn shape(&self) -> DiskShape {
        DiskShape {
            driver_name: "VirtioBlock",
            block_size: SECTOR_SIZE as u32,
            block_count: self.link.capacity,
            depth: self.link.layout.depth,
            max_request_blocks: MAX_REQUEST_SECTORS,
            specification: data_specification(self.link.layout.data_segments),
            platform: self.link.dma_route.platform(&self.platforms),
            write_cache: self.write_cache(),
            // The used element's length says what the device wrote.
            byte_count: ByteCount::Reported,
        }
    }

    fn description(&self) -> String {
        let layout = self.link.layout;
        format!(
            "virtio-blk, {}, {}-entry queue, {} slots of {} descriptors ({} data segments)",
            self.interface().name(),
            layout.queue_size,
            layout.depth,
            layout.descriptors_per_slot,
            layout.data_segments
        )
    }

    fn admit(&self, command: &SlotCommand) -> Result<(), IoFailure> {
        let refused = |cause| Err(IoFailure::new(IoReturn::NotPermitted, Cause::Virtio(cause)));
        match command {
            SlotCommand::Transfer(BlockCommand { operation: BlockOperation::Write, .. })
                if self.medium == Medium::ReadOnly =>
            {
                refused(VirtioCause::ReadOnly)
            }
            SlotCommand::Flush if self.write_cache() == WriteCache::WriteThrough => {
                refused(VirtioCause::FlushNotNegotiated)
            }
            _ => Ok(()),
        }
    }

    /// Programs slot `slot` with a read or write: the lent data's segments
    /// become the chain's data descriptors, between header and status.
    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        let kind = match command.operation {
            BlockOperation::Read => REQUEST_IN,
            BlockOperation::Write => REQUEST_OUT,
        };
        let request = InFlight { command: SlotCommand::Transfer(*command), length: data.length() };
        self.post(slot, (kind, command.lba), data.entries()?, request)
    }

    /// Programs slot `slot` with a flush: header (sector 0, which a flush
    /// does not use) and status, no data descriptor.
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure> {
        self.post(slot, (REQUEST_FLUSH, 0), Vec::new(), InFlight { command: SlotCommand::Flush, length: 0 })
    }

    /// Takes every element the device added to the used ring since the last
    /// look and reports how its request ended, in used-ring order. The device
    /// is not trusted: the used index may not run ahead of the chains in
    /// flight, an id must head a chain the device holds (`Virtqueue::pop_used`
    /// checks both) and that chain a slot's, a used length above the chain's
    /// writable bytes fails its request (`UsedLengthAboveChain`), and only a
    /// status byte of OK is a success. A
    /// used ring that breaks those rules is not read further: the device must
    /// stop (the block layer resets it, and fails what it held with the cause,
    /// before any of their memory goes back), and no request ends twice.
    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        let mut outcomes = Vec::new();
        let mut channel = self.channel.lock();
        let Channel { shared: Some(shared), slots } = &mut *channel else { return DeviceHealth::Running };
        let per_slot = self.link.layout.descriptors_per_slot;
        let broken = |cause| IoFailure::new(IoReturn::IoError, Cause::Virtio(cause));
        let mut health = DeviceHealth::Running;
        loop {
            let element = match shared.queue.pop_used() {
                Ok(Some(element)) => element,
                Ok(None) => break,
                Err(failure) => {
                    health = DeviceHealth::MustStop(failure);
                    break;
                }
            };
            // Slot i's chain starts at descriptor i*K.
            let id = element.id as usize;
            let in_flight = match slots.get_mut(id / per_slot) {
                Some(in_flight) if id.is_multiple_of(per_slot) => in_flight,
                _ => {
                    health = DeviceHealth::MustStop(broken(VirtioCause::UsedIdNotAHead { queue: 0, id: element.id }));
                    break;
                }
            };
            let slot = id / per_slot;
            let Some(InFlight { command, length }) = in_flight.take() else {
                health = DeviceHealth::MustStop(broken(VirtioCause::UsedIdNotInFlight { queue: 0, id: element.id }));
                break;
            };
            let operation = match command {
                SlotCommand::Transfer(BlockCommand { operation, .. }) => Some(operation),
                SlotCommand::Flush => None,
            };
            // The used length counts the bytes the device wrote: a read's data
            // and its status byte; a write's or a flush's status only. One
            // above what the chain let it write is a lie about this request:
            // it fails (nothing believed moved, not cut down to a success),
            // and the ring, whose ids held, goes on (as virtio-net's does).
            let writable = match operation {
                Some(BlockOperation::Read) => length + STATUS_BYTES,
                Some(BlockOperation::Write) | None => STATUS_BYTES,
            };
            // Anything but OK is the device's error, byte and all: IOERR,
            // UNSUPP, or one no device may write, including the driver's own
            // "unwritten" mark (a device that never wrote it is not taken for
            // a success).
            let mut status = [STATUS_UNWRITTEN];
            let status_at = slot as u64 * REQUEST_AREA_STRIDE + HEADER_BYTES;
            let result = if u64::from(element.length) > writable {
                let cause = VirtioCause::UsedLengthAboveChain { queue: 0, length: element.length, writable };
                Err(IoFailure::new(IoReturn::Overrun, Cause::Virtio(cause)))
            } else {
                shared.requests.read_bytes(status_at, &mut status).and_then(|_| match status[0] {
                    STATUS_OK => Ok(()),
                    byte => Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::RequestStatus(byte)))),
                })
            };
            // A device that says OK read all of a write's data. A flush moves none.
            let moved = match (&result, operation) {
                (Err(_), _) | (Ok(()), None) => 0,
                (Ok(()), Some(BlockOperation::Read)) => u64::from(element.length).saturating_sub(STATUS_BYTES),
                (Ok(()), Some(BlockOperation::Write)) => length,
            };
            outcomes.push((slot, DeviceOutcome { moved, result }));
        }
        // Reported once the lock is dropped: the block layer's bookkeeping
        // never runs inside the driver's.
        drop(channel);
        for (slot, outcome) in outcomes {
            finished(slot, outcome);
        }
        health
    }

    /// Reading ISR acknowledges the interrupt; bit 0 says the queue has news.
    /// A register read through the transport: no lock `program` or `collect`
    /// holds, no allocation.
    fn acknowledge_interrupt(&self) -> bool {
        self.transport.acknowledge_interrupt() & 1 != 0
    }

    fn quiesce(&self) -> Quiesced {
        bring_up::quiesced(self.shut_down())
    }

    /// `bring_up` again, on the device the slots were made for.
    fn reopen(&self) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        if channel.shared.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Virtio(VirtioCause::NotStopped)));
        }
        let (_, shared) = Self::bring_up(&self.transport, &self.platforms, |link| self.check_same_device(link))?;
        channel.shared = Some(shared);
        Ok(())
    }

    fn last_status(&self) -> Option<DeviceStatus> {
        Some(DeviceStatus::Virtio { device_status: self.transport.status() })
    }
}
