//! The virtio-blk driver core, generic over its transport (legacy or modern
//! virtio-PCI, `transport.rs`) so that it runs on either, and on the host against
//! fakes of both. It is a [`HardwareQueue`]: the block layer's `QueuedDisk`
//! queues, waits, defers and times out; this file only starts requests in slots
//! and collects the ones the device finished.
//!
//! # Slots: a static split of the descriptor table
//!
//! The device takes up to `depth` requests at once, one per slot. Each slot owns
//! a fixed share of everything a request needs, made once at start:
//!
//! ```text
//! slot i:  descriptors [i*K, (i+1)*K)     K = queue_size / depth
//!          a 16-byte header buffer (Out) and its IoDmaCommand
//!          a 1-byte status buffer (In) and its IoDmaCommand
//!          data command i of the CommandPool
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
//! 1. `start`: the CPU fills the slot's header (type, sector) and marks the
//!    status byte unwritten. Header, data and status are prepared as three
//!    owned [`DmaTransfer`]s: the slot's buffers and commands, and the
//!    request's own buffer with the slot's data command from the pool. From
//!    here until `collect` or `stop` the buffers are the device's; the CPU
//!    cannot reach them (they are moved into the transfers).
//! 2. Each transfer writes its segments as little-endian 64-bit records
//!    (`write_segments`, the commands' output format); each record becomes one
//!    descriptor of the slot. The head goes into the available ring, the index
//!    is bumped, the device notified.
//! 3. `collect`: for each new used element, header and status are completed,
//!    the status byte is read, and the data transfer is completed with exactly
//!    the bytes the device moved: a short read is an `Underrun`, and only what
//!    the device wrote comes back from a bounce buffer. An error status fails
//!    only that request; the device keeps running.
//!
//! No memory the device was given goes back while the device may still use it:
//! `stop` (and dropping the driver) resets the device before any transfer is
//! completed or the queue released; if the device does not confirm the reset,
//! the transfers are abandoned and the queue is leaked, never freed. A start
//! that fails after the queue was set up resets the device before freeing it.
//!
//! The device reaches all 64 bits of memory, so nothing is bounced unless a
//! request asks for a restriction or the driver is told to force double
//! buffering. Which platform its memory goes through (the bare machine, or the
//! function's IOMMU domain) follows from the negotiated features: `DmaRoute`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering, fence};

use dmakit::block::{
    BlockOperation, BlockRequest, DoubleBuffering, Finished, HardwareQueue, Rejected, Slot, TransferOptions,
};
use dmakit::dma::{
    Cause, CoherentMemory, CommandPool, Completed, DmaAddr, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection,
    IoDmaCommand, IoFailure, IoReturn, Refused, Segment, Specification,
};
use dmakit::memory::Constraints;
use spin::Mutex;

use super::queue::{DESCRIPTOR_NEXT, QueueLayout, RECORD_SIZE, SEGMENT_FORMAT, VirtqDescriptor};
use super::registers::*;
use super::transport::{DmaPlatforms, DmaRoute, Interface, Transport};

/// The most slots: requests in flight at once.
const MAX_DEPTH: usize = 32;
/// Data segments a slot should hold at least, when the queue and `seg_max`
/// allow: six pages' worth of a scattered buffer, and 32 slots of 8
/// descriptors fill QEMU's 256-entry queue exactly.
const DATA_SEGMENTS_WANTED: usize = 6;
/// The most sectors one request carries (1 MiB); `read` and `write` split larger
/// transfers.
const MAX_REQUEST_SECTORS: u64 = 2048;
/// Bytes of a request header: type (u32), reserved (u32), sector (u64).
const HEADER_BYTES: u64 = 16;
/// Bytes of a request's status.
const STATUS_BYTES: u64 = 1;
/// What the status byte holds until the device writes it: no status a device
/// reports, so a device that never wrote it is not taken for a success.
const STATUS_UNWRITTEN: u8 = 0xff;

/// One part of a request in flight: the buffer and the command, both moved in.
type Part = DmaTransfer<DmaBuffer, IoDmaCommand>;

/// Whether the disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Medium {
    /// Reads and writes.
    Writable,
    /// Reads only (the device offered `VIRTIO_BLK_F_RO`).
    ReadOnly,
}

/// What the device wrote into a request's status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestStatus {
    /// `VIRTIO_BLK_S_OK`.
    Ok,
    /// `VIRTIO_BLK_S_IOERR`.
    IoError,
    /// `VIRTIO_BLK_S_UNSUPP`.
    Unsupported,
    /// Anything else, including a byte the device never wrote.
    Unknown,
}

impl RequestStatus {
    fn from_byte(byte: u8) -> RequestStatus {
        match byte {
            STATUS_OK => RequestStatus::Ok,
            STATUS_IOERR => RequestStatus::IoError,
            STATUS_UNSUPP => RequestStatus::Unsupported,
            _ => RequestStatus::Unknown,
        }
    }

    /// `Ok` for a success, otherwise the device's error.
    fn check(self) -> Result<(), IoFailure> {
        let what = match self {
            RequestStatus::Ok => return Ok(()),
            RequestStatus::IoError => "virtio-blk status IOERR",
            RequestStatus::Unsupported => "virtio-blk status UNSUPP",
            RequestStatus::Unknown => "virtio-blk status unknown",
        };
        Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError(what)))
    }
}

/// How the descriptor table is split among the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Queue entries (descriptors).
    pub queue_size: u16,
    /// Slots: requests in flight at once.
    pub depth: usize,
    /// Descriptors each slot owns (K): slot i owns `[i*K, (i+1)*K)`.
    pub descriptors_per_slot: usize,
    /// Data segments one request may use: `min(seg_max, K - 2)`.
    pub data_segments: usize,
}

impl SlotLayout {
    /// The split of a `queue_size`-entry queue for a device that takes
    /// `seg_max` data segments per request. `NoResources` for a queue too small
    /// for one chain (header, one data segment, status); `IoError` for a
    /// `seg_max` of 0 (no request could carry data).
    pub fn new(queue_size: u16, seg_max: usize) -> Result<SlotLayout, IoFailure> {
        if seg_max == 0 {
            // Not even one data segment per request: no request could be made.
            return Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError("virtio-blk seg_max is 0")));
        }
        let entries = usize::from(queue_size);
        if entries < 3 {
            let cause = Cause::DeviceError("virtio-blk queue too small for header, data and status");
            return Err(IoFailure::new(IoReturn::NoResources, cause));
        }
        let wanted = seg_max.min(DATA_SEGMENTS_WANTED);
        let depth = (entries / (wanted + 2)).clamp(1, MAX_DEPTH);
        let descriptors_per_slot = entries / depth;
        // Two descriptors of each chain are the header and the status.
        let data_segments = seg_max.min(descriptors_per_slot - 2);
        Ok(SlotLayout { queue_size, depth, descriptors_per_slot, data_segments })
    }

    /// The descriptor that heads slot `slot`'s chain.
    pub fn head(&self, slot: Slot) -> u16 {
        // Below the queue size, which is a u16.
        (slot * self.descriptors_per_slot) as u16
    }

    /// The slot whose chain starts at descriptor `head` (the id of a used
    /// element); `None` for an id that heads no slot's chain.
    pub fn slot_of(&self, head: u32) -> Option<Slot> {
        let head = usize::try_from(head).ok()?;
        let slot = head / self.descriptors_per_slot;
        (head.is_multiple_of(self.descriptors_per_slot) && slot < self.depth).then_some(slot)
    }
}

/// Queue 0 and the driver's place in it.
struct Queue {
    layout: QueueLayout,
    /// Shared with the device from the moment its address is written.
    ring: CoherentMemory,
    /// Where the device sees the ring.
    address: DmaAddr,
    available_index: u16,
    used_index: u16,
}

impl Queue {
    /// Gives the ring back once the device was told to forget it: freed if the
    /// reset was confirmed; otherwise the device may still use it, so it is
    /// leaked (dropped unreleased, which the DMA layer reports), never freed.
    fn release_after(self, reset: &Result<(), IoFailure>) {
        match reset {
            Ok(()) => {
                if let Err(failure) = self.ring.release() {
                    log::error!("virtio-blk: queue memory not released: {failure}");
                }
            }
            Err(failure) => {
                log::error!("virtio-blk: {failure}; the queue memory is leaked, not freed under the device");
                drop(self.ring);
            }
        }
    }
}

/// A slot's own header and status buffers and their commands, while no request
/// uses them.
struct SlotParts {
    header: DmaBuffer,
    header_command: IoDmaCommand,
    status: DmaBuffer,
    status_command: IoDmaCommand,
}

impl SlotParts {
    /// Fresh buffers and commands for one slot.
    fn allocate(platform: &'static dyn DmaPlatform) -> Result<SlotParts, IoFailure> {
        let (header, status) = Self::allocate_buffers(platform)?;
        Ok(SlotParts {
            header,
            header_command: IoDmaCommand::new(platform, part_specification(1))?,
            status,
            status_command: IoDmaCommand::new(platform, part_specification(1))?,
        })
    }

    /// A fresh header buffer and status buffer.
    fn allocate_buffers(platform: &'static dyn DmaPlatform) -> Result<(DmaBuffer, DmaBuffer), IoFailure> {
        Ok((
            DmaBuffer::allocate(platform, HEADER_BYTES, IoDirection::Out, Constraints::NONE)?,
            DmaBuffer::allocate(platform, STATUS_BYTES, IoDirection::In, Constraints::NONE)?,
        ))
    }

    /// The parts back from their completed transfers.
    fn from_completed(header: Completed<DmaBuffer, IoDmaCommand>, status: Completed<DmaBuffer, IoDmaCommand>) -> Self {
        SlotParts {
            header: header.buffer,
            header_command: header.command,
            status: status.buffer,
            status_command: status.command,
        }
    }
}

/// A request the device holds: its three parts, prepared.
struct InFlight {
    header: Part,
    data: Part,
    status: Part,
    operation: BlockOperation,
}

/// What a finished or unwound request gives back: the slot's parts, the data
/// command for the pool, and the data buffer.
struct Returned {
    parts: SlotParts,
    data_command: IoDmaCommand,
    buffer: DmaBuffer,
}

impl InFlight {
    /// Completes a request the device finished, whose used element said
    /// `used_length` bytes were written: exactly the data bytes moved come back.
    fn finish(self, used_length: u32) -> (Returned, Result<(), IoFailure>) {
        let InFlight { header, data, status, operation } = self;
        let length = data.length();
        let header = header.complete(HEADER_BYTES);
        let status = status.complete(STATUS_BYTES);
        let request_status = read_status(&status);
        let moved = match request_status {
            Ok(RequestStatus::Ok) => moved(operation, length, used_length),
            _ => 0,
        };
        let data = data.complete(moved);
        let result = header
            .result
            .and(request_status.and_then(RequestStatus::check))
            // `Underrun` if the device moved fewer bytes than the request holds.
            .and(data.result);
        let returned = Returned {
            parts: SlotParts::from_completed(header, status),
            data_command: data.command,
            buffer: data.buffer,
        };
        (returned, result)
    }

    /// Completes the three parts with nothing moved: for a chain no device saw,
    /// or one whose device was reset. Nothing comes back from bounce memory.
    fn unwind(self) -> Returned {
        let InFlight { header, data, status, .. } = self;
        let data = data.complete(0);
        Returned {
            parts: SlotParts::from_completed(header.complete(0), status.complete(0)),
            data_command: data.command,
            buffer: data.buffer,
        }
    }

    /// Gives the request up because its device could not be stopped: every
    /// buffer is leaked (the device may still write it); the commands come back.
    fn abandon(self) -> [IoDmaCommand; 3] {
        [self.header.abandon(), self.data.abandon(), self.status.abandon()]
    }
}

/// What a slot holds.
enum SlotState {
    /// No request: the parts are the driver's.
    Free(SlotParts),
    /// A request the device holds (boxed: three transfers are large, and a
    /// free slot should not take their room).
    InFlight(Box<InFlight>),
    /// The device could not be stopped while it held this slot's request: its
    /// header and status buffers were abandoned (leaked); the commands came
    /// back. `restart` gives the slot new buffers.
    Abandoned { header_command: IoDmaCommand, status_command: IoDmaCommand },
}

/// Everything requests share, behind one lock (the block layer's gate already
/// keeps `start`, `collect`, `stop` and `restart` apart; the lock makes the
/// driver safe on its own).
struct Channel {
    /// `None` once released after a reset: the driver is stopped.
    queue: Option<Queue>,
    /// Each slot's state; `None` only while a method moves it between states.
    slots: Vec<Option<SlotState>>,
    /// The data segments of the last request started.
    last_segments: Vec<Segment>,
    /// Room for the segment records of one chain.
    records: Vec<u8>,
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

/// A specification for the request's parts: the device reaches all 64 bits;
/// segments are written as the records descriptors are made from, and none is
/// longer than a descriptor's 32-bit length holds.
const fn part_specification(max_segments: usize) -> Specification {
    Specification {
        output: SEGMENT_FORMAT,
        max_segment_size: u32::MAX as u64,
        max_segments,
        ..Specification::UNLIMITED_64
    }
}

/// The request header the device reads first.
fn header_bytes(operation: BlockOperation, sector: u64) -> [u8; HEADER_BYTES as usize] {
    let kind = match operation {
        BlockOperation::Read => REQUEST_IN,
        BlockOperation::Write => REQUEST_OUT,
    };
    let mut header = [0u8; HEADER_BYTES as usize];
    header[0..4].copy_from_slice(&kind.to_le_bytes());
    header[8..16].copy_from_slice(&sector.to_le_bytes());
    header
}

/// Data bytes the device moved, from the used element's length (the bytes it
/// wrote into device-writable buffers), once the status said OK. A read wrote
/// the data and the status byte; a write wrote only the status, and a device
/// that says OK read all of the data.
fn moved(operation: BlockOperation, length: u64, used_length: u32) -> u64 {
    match operation {
        BlockOperation::Read => u64::from(used_length).saturating_sub(STATUS_BYTES).min(length),
        BlockOperation::Write => length,
    }
}

/// The status byte, read once its transfer is completed and the buffer is the
/// CPU's again.
fn read_status(completed: &Completed<DmaBuffer, IoDmaCommand>) -> Result<RequestStatus, IoFailure> {
    completed.result?;
    let mut byte = [STATUS_UNWRITTEN];
    completed.buffer.read_bytes(0, &mut byte)?;
    Ok(RequestStatus::from_byte(byte[0]))
}

fn read_u16(ring: &CoherentMemory, offset: u64) -> Result<u16, IoFailure> {
    let mut bytes = [0; 2];
    ring.read_bytes(offset, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

/// The request rebuilt around `buffer`, which came back unprepared.
fn refused_request(fields: RequestFields, buffer: DmaBuffer, failure: IoFailure) -> Rejected {
    let RequestFields { operation, lba, count, offset, options, deferral } = fields;
    Rejected { request: BlockRequest { operation, lba, count, buffer, offset, options, deferral }, failure }
}

/// A request's fields without its buffer, kept while the buffer is lent out.
#[derive(Clone, Copy)]
struct RequestFields {
    operation: BlockOperation,
    lba: u64,
    count: u64,
    offset: u64,
    options: TransferOptions,
    deferral: dmakit::block::Deferral,
}

/// A chain that could not be prepared: why, with everything back.
struct Unprepared {
    parts: SlotParts,
    data_command: IoDmaCommand,
    buffer: DmaBuffer,
    failure: IoFailure,
}

/// Prepares header, status and data with the slot's commands, in that order;
/// whatever was prepared before a refusal is completed (no device has seen it)
/// and comes back. Both answers are boxed: the transfers and commands are large.
fn prepare_parts(
    parts: SlotParts,
    data_command: IoDmaCommand,
    buffer: DmaBuffer,
    (operation, offset, length): (BlockOperation, u64, u64),
    options: &TransferOptions,
) -> Result<Box<InFlight>, Box<Unprepared>> {
    let SlotParts { header, header_command, status, status_command } = parts;
    let plain = TransferOptions::default();
    let header = match DmaTransfer::prepare(header_command, header, 0, 0, &plain) {
        Ok(transfer) => transfer,
        Err(Refused { failure, buffer: header, command: header_command }) => {
            let parts = SlotParts { header, header_command, status, status_command };
            return Err(Box::new(Unprepared { parts, data_command, buffer, failure }));
        }
    };
    let status = match DmaTransfer::prepare(status_command, status, 0, 0, &plain) {
        Ok(transfer) => transfer,
        Err(Refused { failure, buffer: status, command: status_command }) => {
            let header = header.complete(0);
            let parts = SlotParts { header: header.buffer, header_command: header.command, status, status_command };
            return Err(Box::new(Unprepared { parts, data_command, buffer, failure }));
        }
    };
    match DmaTransfer::prepare(data_command, buffer, offset, length, options) {
        Ok(data) => Ok(Box::new(InFlight { header, data, status, operation })),
        Err(Refused { failure, buffer, command }) => {
            let parts = SlotParts::from_completed(header.complete(0), status.complete(0));
            Err(Box::new(Unprepared { parts, data_command: command, buffer, failure }))
        }
    }
}

/// A virtio block device on either virtio-PCI interface.
pub struct VirtioBlock<T: Transport> {
    transport: T,
    /// Kept for `restart`, which must land on the same platform.
    platforms: DmaPlatforms,
    channel: Mutex<Channel>,
    /// One data command per slot.
    pool: CommandPool,
    link: Link,
    medium: Medium,
    dma_description: &'static str,
    force_double_buffer: AtomicBool,
}

impl<T: Transport> VirtioBlock<T> {
    /// Brings the device up (`bring_up`) and makes every slot's parts and the
    /// pool of data commands.
    pub fn new(transport: T, platforms: DmaPlatforms) -> Result<Self, IoFailure> {
        let (link, queue, (slots, pool)) = Self::bring_up(&transport, &platforms, |link, platform| {
            let layout = link.layout;
            let slots = (0..layout.depth)
                .map(|_| SlotParts::allocate(platform).map(|parts| Some(SlotState::Free(parts))))
                .collect::<Result<Vec<_>, _>>()?;
            let pool = CommandPool::new(platform, part_specification(layout.data_segments), layout.depth)?;
            Ok((slots, pool))
        })?;
        let medium = match link.features_accepted & FEATURE_READ_ONLY {
            0 => Medium::Writable,
            _ => Medium::ReadOnly,
        };
        let channel = Channel {
            queue: Some(queue),
            slots,
            last_segments: Vec::new(),
            records: vec![0; RECORD_SIZE * link.layout.descriptors_per_slot],
        };
        Ok(VirtioBlock {
            dma_description: link.dma_route.description(link.dma_route.platform(&platforms)),
            transport,
            platforms,
            channel: Mutex::new(channel),
            pool,
            link,
            medium,
            force_double_buffer: AtomicBool::new(false),
        })
    }

    /// The one way the device is set up, at start and at restart: resets it,
    /// negotiates features (with the `FEATURES_OK` handshake on a modern
    /// device), picks the DMA platform the features call for, sets up queue 0,
    /// reads the configuration, lets `finish` make (or check) what the slots
    /// need, and says DRIVER_OK. Whatever fails, the device ends reset and
    /// FAILED, and holds no memory of ours.
    fn bring_up<R>(
        transport: &T,
        platforms: &DmaPlatforms,
        finish: impl FnOnce(&Link, &'static dyn DmaPlatform) -> Result<R, IoFailure>,
    ) -> Result<(Link, Queue, R), IoFailure> {
        let interface = transport.interface();
        transport.reset()?;
        transport.set_status(STATUS_ACKNOWLEDGE);
        transport.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let features_offered = transport.device_features();
        let mut status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
        let negotiated = Self::negotiate(transport, interface, features_offered, &mut status);
        let features_accepted = negotiated.inspect_err(|_| {
            // Nothing of ours is in the device yet: the reset clears the
            // features, and FAILED tells the host the driver gave up.
            let _ = transport.reset();
            transport.set_status(STATUS_FAILED);
        })?;
        let dma_route = DmaRoute::choose(interface, features_accepted);
        let platform = dma_route.platform(platforms);

        let queue = Self::set_up_queue(transport, platform, interface).inspect_err(|_| {
            // `set_up_queue` took back whatever memory it gave the device; the
            // reset clears the features, and FAILED says the driver gave up.
            let _ = transport.reset();
            transport.set_status(STATUS_FAILED);
        })?;
        let configured =
            Self::read_configuration(transport, features_accepted, queue.layout.size).and_then(|(capacity, layout)| {
                let link = Link { features_offered, features_accepted, dma_route, capacity, layout };
                finish(&link, platform).map(|made| (link, made))
            });
        match configured {
            Ok((link, made)) => {
                transport.set_status(status | STATUS_DRIVER_OK);
                Ok((link, queue, made))
            }
            Err(failure) => {
                // The device has the queue's address: it must forget it (reset)
                // before the memory can go back.
                queue.release_after(&transport.reset());
                transport.set_status(STATUS_FAILED);
                Err(failure)
            }
        }
    }

    /// Writes the features to accept; on a modern device, sets `FEATURES_OK`
    /// and reads it back: a device that cleared it does not work with them.
    /// `status` gains `FEATURES_OK` when the handshake succeeded.
    fn negotiate(transport: &T, interface: Interface, offered: u64, status: &mut u8) -> Result<u64, IoFailure> {
        let accepted = interface.negotiate(offered)?;
        transport.set_driver_features(accepted);
        if interface == Interface::Modern {
            *status |= STATUS_FEATURES_OK;
            transport.set_status(*status);
            if transport.status() & STATUS_FEATURES_OK == 0 {
                let cause =
                    Cause::DeviceError("the virtio device refused the accepted features (it cleared FEATURES_OK)");
                return Err(IoFailure::new(IoReturn::IoError, cause));
            }
        }
        Ok(accepted)
    }

    /// Allocates queue 0 and gives it to the device; an error in it is undone
    /// here (reset, then free).
    fn set_up_queue(
        transport: &T,
        platform: &'static dyn DmaPlatform,
        interface: Interface,
    ) -> Result<Queue, IoFailure> {
        let size = interface.queue_size(transport.max_queue_size(0));
        if size < 3 {
            let cause = Cause::DeviceError("virtio-blk queue too small for header, data and status");
            return Err(IoFailure::new(IoReturn::NoResources, cause));
        }
        let layout = QueueLayout::new(size);
        let ring_specification = Specification {
            num_address_bits: interface.queue_address_bits(),
            alignment: QUEUE_ALIGNMENT,
            ..Specification::UNLIMITED_64
        };
        let ring = CoherentMemory::allocate(platform, layout.total, ring_specification)?;
        let address = ring.device_address();
        let queue = Queue { layout, ring, address, available_index: 0, used_index: 0 };
        if let Err(failure) = transport.set_up_queue(0, size, layout.areas(address)) {
            // The device may hold some of the addresses already.
            queue.release_after(&transport.reset());
            return Err(failure);
        }
        Ok(queue)
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
        self.channel.lock().queue.as_ref().map(|queue| queue.address.as_u64())
    }

    /// Writes the chain into slot `slot`'s descriptors and makes it available.
    /// Returns the data segments as the device got them. An error before the
    /// available index moved leaves the chain unseen by the device.
    fn hand_to_device(
        &self,
        channel: &mut Channel,
        slot: Slot,
        in_flight: &InFlight,
    ) -> Result<Vec<Segment>, IoFailure> {
        let Channel { queue, records, .. } = channel;
        let queue = queue.as_mut().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        let head = self.link.layout.head(slot);
        let InFlight { header, data, status, operation } = in_flight;
        let parts = [header, data, status];
        let data_segments = write_chain(queue, head, records, parts, operation.memory_direction())?;
        let Queue { layout, ring, available_index, .. } = queue;
        ring.write_bytes(layout.available_slot(*available_index), &head.to_le_bytes())?;
        // The device must see the descriptors and the slot before the new index.
        fence(Ordering::SeqCst);
        *available_index = available_index.wrapping_add(1);
        ring.write_bytes(layout.available_index(), &available_index.to_le_bytes())?;
        fence(Ordering::SeqCst);
        Ok(data_segments)
    }

    /// Takes every element the device added to the used ring since the last
    /// look, completes its request and says how it ended, in used-ring order.
    fn take_used(&self, channel: &mut Channel) -> Vec<(Slot, Finished)> {
        let mut finished = Vec::new();
        let Channel { queue: Some(queue), slots, .. } = channel else { return finished };
        let device_index = match read_u16(&queue.ring, queue.layout.used_index()) {
            Ok(index) => index,
            Err(failure) => {
                log::error!("virtio-blk: cannot read the used index: {failure}");
                return finished;
            }
        };
        // An element is valid only once the index that publishes it was seen.
        fence(Ordering::SeqCst);
        while queue.used_index != device_index {
            let mut element = [0u8; 8];
            if let Err(failure) = queue.ring.read_bytes(queue.layout.used_slot(queue.used_index), &mut element) {
                log::error!("virtio-blk: cannot read a used element: {failure}");
                break;
            }
            queue.used_index = queue.used_index.wrapping_add(1);
            // `struct virtq_used_elem { id: u32, len: u32 }`.
            let (fields, _) = element.as_chunks::<4>();
            let (head, used_length) = (u32::from_le_bytes(fields[0]), u32::from_le_bytes(fields[1]));
            let Some(slot) = self.link.layout.slot_of(head) else {
                log::error!("virtio-blk: the device returned chain {head}, which heads no slot's chain");
                continue;
            };
            match slots[slot].take() {
                Some(SlotState::InFlight(in_flight)) => {
                    let (returned, result) = in_flight.finish(used_length);
                    slots[slot] = Some(SlotState::Free(returned.parts));
                    self.give_back(slot, returned.data_command);
                    finished.push((slot, Finished { buffer: Some(returned.buffer), result }));
                }
                other => {
                    // A device that returns a chain twice: nothing to complete.
                    slots[slot] = other;
                    log::error!("virtio-blk: the device returned slot {slot}'s chain, which it does not hold");
                }
            }
        }
        finished
    }

    /// Resets the device, then completes every request it held with `why`
    /// (abandons them if the reset was not confirmed), then releases the queue.
    fn shut_down(&self, channel: &mut Channel, why: &IoFailure) -> Vec<(Slot, Finished)> {
        let mut finished = Vec::new();
        let holds_anything =
            channel.queue.is_some() || channel.slots.iter().any(|state| matches!(state, Some(SlotState::InFlight(_))));
        if !holds_anything {
            // Nothing of ours is in the device: it was shut down already.
            return finished;
        }
        // The device must forget the queue and every chain on it before any of
        // that memory goes back.
        let reset = self.transport.reset();
        for (slot, state) in channel.slots.iter_mut().enumerate() {
            let Some(SlotState::InFlight(in_flight)) = state.take_if(|s| matches!(s, SlotState::InFlight(_))) else {
                continue;
            };
            match reset {
                Ok(()) => {
                    let returned = in_flight.unwind();
                    *state = Some(SlotState::Free(returned.parts));
                    self.give_back(slot, returned.data_command);
                    finished.push((slot, Finished { buffer: Some(returned.buffer), result: Err(*why) }));
                }
                Err(_) => {
                    let [header_command, data_command, status_command] = in_flight.abandon();
                    *state = Some(SlotState::Abandoned { header_command, status_command });
                    self.give_back(slot, data_command);
                    finished.push((slot, Finished { buffer: None, result: Err(*why) }));
                }
            }
        }
        if let Err(failure) = &reset {
            log::error!("virtio-blk: {failure}; {} request(s) abandoned with their memory", finished.len());
        }
        if let Some(queue) = channel.queue.take() {
            queue.release_after(&reset);
        }
        finished
    }

    /// Puts slot `slot`'s data command back in the pool.
    fn give_back(&self, slot: Slot, command: IoDmaCommand) {
        if let Err(failure) = self.pool.give_back(slot, command) {
            log::error!("virtio-blk: slot {slot}'s data command did not go back to the pool: {failure}");
        }
    }

    /// At restart: the device must be the one the slots were made for (same
    /// split, same platform, same size).
    fn check_same_device(&self, link: &Link) -> Result<(), IoFailure> {
        let same = link.layout == self.link.layout
            && link.dma_route == self.link.dma_route
            && link.capacity == self.link.capacity
            && link.features_accepted == self.link.features_accepted;
        if same {
            return Ok(());
        }
        let cause = Cause::DeviceError("the virtio device came back from its reset with another configuration");
        Err(IoFailure::new(IoReturn::IoError, cause))
    }
}

/// Writes the chain header -> data ... -> status into the slot's descriptors,
/// starting at `head`, from the records the transfers write in the commands'
/// output format; returns the data segments, as the device got them.
fn write_chain(
    queue: &Queue,
    head: u16,
    records: &mut [u8],
    [header, data, status]: [&Part; 3],
    data_access: IoDirection,
) -> Result<Vec<Segment>, IoFailure> {
    // Header and status have one segment each (their specification says so).
    let (header_record, rest) = records.split_at_mut(RECORD_SIZE);
    header.write_segments(0, header_record)?;
    let data_room = rest.len() - RECORD_SIZE;
    let (data_count, data_end) = data.write_segments(0, &mut rest[..data_room])?;
    if data_end < data.length() {
        // The data command's specification allows no more segments than the
        // slot has descriptors for, so this is a broken promise, not a limit.
        let cause = Cause::Other("the data needs more descriptors than the slot has");
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    let status_start = RECORD_SIZE * (1 + data_count);
    status.write_segments(0, &mut records[status_start..status_start + RECORD_SIZE])?;

    let chain_length = data_count + 2;
    let (chain, _) = records[..RECORD_SIZE * chain_length].as_chunks::<RECORD_SIZE>();
    let mut data_segments = Vec::with_capacity(data_count);
    for (index, record) in chain.iter().enumerate() {
        let last = index + 1 == chain_length;
        let access = match (index, last) {
            (0, _) => IoDirection::Out,
            (_, true) => IoDirection::In,
            (_, false) => data_access,
        };
        let mut descriptor = VirtqDescriptor::from_record(record, access)?;
        // The chain lies inside the slot's share of a table of u16 indices.
        let position = head + index as u16;
        if !last {
            descriptor.flags |= DESCRIPTOR_NEXT;
            descriptor.next = position + 1;
        }
        if index != 0 && !last {
            data_segments.push(descriptor.segment());
        }
        queue.ring.write_bytes(queue.layout.descriptor(position), &descriptor.to_bytes())?;
    }
    Ok(data_segments)
}

impl<T: Transport> Drop for VirtioBlock<T> {
    /// Resets the device, so that it forgets the queue, then completes what it
    /// held and releases the queue (as `stop`).
    fn drop(&mut self) {
        let why = IoFailure::new(IoReturn::Aborted, Cause::DriverStopped);
        let mut channel = self.channel.lock();
        // The buffers of requests nobody can wait for any more are freed here,
        // after the reset.
        drop(self.shut_down(&mut channel, &why));
    }
}

impl<T: Transport> HardwareQueue for VirtioBlock<T> {
    fn driver_name(&self) -> &'static str {
        "VirtioBlock"
    }

    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.link.capacity
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

    fn depth(&self) -> usize {
        self.link.layout.depth
    }

    fn max_request_blocks(&self) -> u64 {
        MAX_REQUEST_SECTORS
    }

    /// Fills the slot's header and status, prepares the three parts, writes the
    /// chain into the slot's descriptors, makes it available and notifies.
    fn start(&self, slot: Slot, request: BlockRequest) -> Result<(), Rejected> {
        let refuse = |request, code, cause| Rejected { request, failure: IoFailure::new(code, cause) };
        if request.operation == BlockOperation::Write && self.medium == Medium::ReadOnly {
            return Err(refuse(request, IoReturn::NotPermitted, Cause::Other("the disk is read-only")));
        }
        if slot >= self.link.layout.depth {
            return Err(refuse(request, IoReturn::BadArgument, Cause::Other("no such slot")));
        }
        let mut channel = self.channel.lock();
        if channel.queue.is_none() {
            return Err(refuse(request, IoReturn::NotReady, Cause::DriverStopped));
        }
        let Some(SlotState::Free(mut parts)) = channel.slots[slot].take_if(|s| matches!(s, SlotState::Free(_))) else {
            // Not `Busy`: that would make the block layer retry for ever.
            let cause = Cause::WrongState("the slot holds a request already");
            return Err(refuse(request, IoReturn::InternalError, cause));
        };
        let data_command = match self.pool.take(slot) {
            Ok(command) => command,
            Err(failure) => {
                channel.slots[slot] = Some(SlotState::Free(parts));
                return Err(refuse(request, IoReturn::InternalError, failure.cause()));
            }
        };
        let BlockRequest { operation, lba, count, buffer, offset, mut options, deferral } = request;
        let fields = RequestFields { operation, lba, count, offset, options, deferral };
        // The CPU's last touch before the device owns these two.
        let written = parts
            .header
            .write_bytes(0, &header_bytes(operation, lba))
            .and_then(|_| parts.status.write_bytes(0, &[STATUS_UNWRITTEN]));
        options.force_double_buffer |= self.force_double_buffer.load(Ordering::Relaxed);
        let range = (operation, offset, count * SECTOR_SIZE);
        let prepared = match written {
            Ok(_) => prepare_parts(parts, data_command, buffer, range, &options),
            Err(failure) => Err(Box::new(Unprepared { parts, data_command, buffer, failure })),
        };
        let in_flight = match prepared {
            Ok(in_flight) => in_flight,
            Err(unprepared) => {
                let Unprepared { parts, data_command, buffer, failure } = *unprepared;
                // Keeps the cause: a spent bounce budget must reach the block
                // layer as such, so that it defers the request.
                channel.slots[slot] = Some(SlotState::Free(parts));
                self.give_back(slot, data_command);
                return Err(refused_request(fields, buffer, failure));
            }
        };
        match self.hand_to_device(&mut channel, slot, &in_flight) {
            Ok(segments) => channel.last_segments = segments,
            Err(failure) => {
                // The available index did not move: the device never saw it.
                let returned = in_flight.unwind();
                channel.slots[slot] = Some(SlotState::Free(returned.parts));
                self.give_back(slot, returned.data_command);
                return Err(refused_request(fields, returned.buffer, failure));
            }
        }
        channel.slots[slot] = Some(SlotState::InFlight(in_flight));
        if let Err(failure) = self.transport.notify(0) {
            // The chain is available: the device may take it whenever it looks.
            // The request stays in flight; if it never ends, the block layer's
            // timeout stops the device before its memory goes back.
            log::error!("virtio-blk: notify failed: {failure}");
        }
        Ok(())
    }

    fn collect(&self, finished: &mut dyn FnMut(Slot, Finished)) {
        // Reported once the lock is dropped: the block layer's bookkeeping
        // never runs inside the driver's.
        let done = self.take_used(&mut self.channel.lock());
        for (slot, report) in done {
            finished(slot, report);
        }
    }

    /// Reading ISR acknowledges the interrupt; bit 0 says the queue has news.
    /// A register read through the transport: no lock `start` or `collect`
    /// holds, no allocation.
    fn acknowledge_interrupt(&self) -> bool {
        self.transport.acknowledge_interrupt() & 1 != 0
    }

    fn stop(&self, why: &IoFailure, finished: &mut dyn FnMut(Slot, Finished)) {
        let done = self.shut_down(&mut self.channel.lock(), why);
        for (slot, report) in done {
            finished(slot, report);
        }
    }

    /// `bring_up` again, on the device the slots were made for; slots whose
    /// buffers were abandoned get new ones.
    fn restart(&self) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        let in_flight = channel.slots.iter().any(|state| matches!(state, Some(SlotState::InFlight(_))));
        if channel.queue.is_some() || in_flight {
            return Err(IoFailure::new(IoReturn::Busy, Cause::WrongState("the virtio device was not stopped")));
        }
        let slots = &mut channel.slots;
        let (_, queue, ()) = Self::bring_up(&self.transport, &self.platforms, |link, platform| {
            self.check_same_device(link)?;
            for state in slots.iter_mut() {
                let abandoned = state.take_if(|s| matches!(s, SlotState::Abandoned { .. }));
                if let Some(SlotState::Abandoned { header_command, status_command }) = abandoned {
                    match SlotParts::allocate_buffers(platform) {
                        Ok((header, status)) => {
                            let parts = SlotParts { header, header_command, status, status_command };
                            *state = Some(SlotState::Free(parts));
                        }
                        Err(failure) => {
                            // The slot keeps its commands; the restart fails.
                            *state = Some(SlotState::Abandoned { header_command, status_command });
                            return Err(failure);
                        }
                    }
                }
            }
            Ok(())
        })?;
        channel.queue = Some(queue);
        Ok(())
    }

    fn set_double_buffering(&self, policy: DoubleBuffering) {
        self.force_double_buffer.store(policy == DoubleBuffering::Forced, Ordering::Relaxed);
    }

    fn last_segments(&self) -> Vec<Segment> {
        self.channel.lock().last_segments.clone()
    }

    fn check_stopped(&self) -> usize {
        self.pool.check_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(queue_size: u16, seg_max: usize) -> (usize, usize, usize) {
        let layout = SlotLayout::new(queue_size, seg_max).unwrap();
        (layout.depth, layout.descriptors_per_slot, layout.data_segments)
    }

    #[test]
    fn the_queue_is_split_into_slots_of_equal_shares() {
        assert_eq!(layout(256, 126), (32, 8, 6), "QEMU's queue: 32 slots of 8 descriptors");
        assert_eq!(layout(256, 254), (32, 8, 6));
        assert_eq!(layout(64, 16), (8, 8, 6));
        assert_eq!(layout(512, 16), (32, 16, 14), "a larger queue gives each slot more");
        assert_eq!(layout(1024, 126), (32, 32, 30));
        assert_eq!(layout(1024, 8), (32, 32, 8), "seg_max still caps a slot's data");
        assert_eq!(layout(256, 1), (32, 8, 1), "seg_max 1: small chains, still 32 slots");
        assert_eq!(layout(3, usize::MAX), (1, 3, 1), "the smallest queue holds one chain");
        assert_eq!(layout(4, usize::MAX), (1, 4, 2));
        assert_eq!(SlotLayout::new(2, 16).unwrap_err().code(), IoReturn::NoResources);
        assert_eq!(SlotLayout::new(256, 0).unwrap_err().code(), IoReturn::IoError);
    }

    #[test]
    fn a_used_element_names_its_slot_by_the_head_descriptor() {
        let layout = SlotLayout::new(256, 126).unwrap();
        assert_eq!((layout.head(0), layout.head(5), layout.head(31)), (0, 40, 248));
        assert_eq!(layout.slot_of(40), Some(5));
        assert_eq!(layout.slot_of(248), Some(31));
        assert_eq!(layout.slot_of(41), None, "not the head of a chain");
        assert_eq!(layout.slot_of(256), None, "past the table");
        assert_eq!(layout.slot_of(u32::MAX), None);
        // 100 entries in slots of 8: the last 4 descriptors belong to no slot.
        let uneven = SlotLayout::new(100, 6).unwrap();
        assert_eq!((uneven.depth, uneven.descriptors_per_slot), (12, 8));
        assert_eq!(uneven.slot_of(96), None);
    }
}
