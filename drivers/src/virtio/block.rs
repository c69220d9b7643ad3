//! The virtio-blk driver core, generic over its transport (legacy or modern
//! virtio-PCI, `transport.rs`) so that it runs on either, and on the host against
//! fakes of both.
//!
//! One request is in flight at a time. A request is a chain of descriptors:
//! ```text
//! [header: type, sector] -> [data segment] ... [data segment] -> [status byte]
//!   device reads             device writes (read) or reads (write)   device writes
//! ```
//! The three parts are three [`DmaTransfer`]s, prepared side by side, flat:
//!
//! 1. The CPU fills the header (16 bytes, `Out`) and marks the status byte (`In`)
//!    unwritten. Both are small buffers the driver owns.
//! 2. Header, data and status are prepared, each with its own `IoDmaCommand`. The
//!    data transfer borrows the caller's buffer for one chunk of at most 1 MiB.
//!    From here until `complete`, the compiler refuses any CPU access to the three
//!    buffers: they are the device's.
//! 3. Each transfer writes its segments as little-endian 64-bit records
//!    (`write_segments`, the commands' output format); each record becomes one
//!    `VirtqDescriptor`. The chain is published, the device notified.
//! 4. When the used ring advances, its element says how many bytes the device
//!    wrote. Header and status are completed, the status byte is read, and the
//!    data transfer is completed with exactly the bytes the device moved: a short
//!    read is an `Underrun`, and only what the device wrote comes back from a
//!    bounce buffer.
//!
//! No memory the device was given goes back while the device may still use it:
//! after a timeout the device is reset before any transfer completes (and the
//! driver takes no more requests); `new` resets it before freeing the queue when
//! it fails after the queue was set up; dropping the driver resets it, then
//! releases the queue.
//!
//! The device reaches all 64 bits of memory, so nothing is bounced unless a
//! request asks for a restriction or the driver is told to force double
//! buffering. Which platform its memory goes through (the bare machine, or the
//! function's IOMMU domain) follows from the negotiated features: `DmaRoute`.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, DoubleBuffering, TransferOptions};
use dmakit::dma::{
    Cause, CoherentMemory, Completed, DmaAddr, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand,
    IoFailure, IoReturn, Segment, Specification,
};
use dmakit::memory::Constraints;
use dmakit::time::Waiter;
use spin::Mutex;

use super::queue::{DESCRIPTOR_NEXT, QueueLayout, RECORD_SIZE, SEGMENT_FORMAT, VirtqDescriptor};
use super::registers::*;
use super::transport::{DmaPlatforms, DmaRoute, Interface, Transport};

/// How long a request may take before the driver gives up.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The most sectors one request carries (1 MiB); larger transfers are split.
const MAX_REQUEST_SECTORS: u64 = 2048;
/// Bytes of a request header: type (u32), reserved (u32), sector (u64).
const HEADER_BYTES: u64 = 16;
/// Bytes of a request's status.
const STATUS_BYTES: u64 = 1;
/// What the status byte holds until the device writes it: no status a device
/// reports, so a device that never wrote it is not taken for a success.
const STATUS_UNWRITTEN: u8 = 0xff;

/// A transfer of one part of a request: a buffer and a command, both borrowed.
type Transfer<'a> = DmaTransfer<&'a mut DmaBuffer, &'a mut IoDmaCommand>;

/// Whether the disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Medium {
    /// Reads and writes.
    Writable,
    /// Reads only (the device offered `VIRTIO_BLK_F_RO`).
    ReadOnly,
}

/// Whether the device still takes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceState {
    /// Set up and answering.
    Running,
    /// Reset after a failure: later requests are refused.
    Stopped,
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

/// Queue 0 and the driver's place in it.
struct Queue {
    layout: QueueLayout,
    /// Shared with the device from the moment its address is written; `None`
    /// only once released, after the device was reset.
    ring: Option<CoherentMemory>,
    /// Where the device sees the ring.
    address: DmaAddr,
    available_index: u16,
    used_index: u16,
}

impl Queue {
    /// Resets the device, so that it forgets the queue, then frees the ring: the
    /// one way the ring goes back, so the order cannot be got wrong. A device
    /// that does not confirm the reset may still use the ring: it is leaked
    /// (dropped unreleased), never freed.
    fn reset_and_release(&mut self, transport: &impl Transport) {
        let reset = transport.reset();
        let Some(ring) = self.ring.take() else { return };
        match reset {
            Ok(()) => {
                if let Err(failure) = ring.release() {
                    log::error!("virtio-blk: queue memory not released: {failure}");
                }
            }
            Err(failure) => {
                log::error!("virtio-blk: {failure}; the queue memory is leaked, not freed under the device");
                drop(ring);
            }
        }
    }
}

/// The ring, or `NotReady` once it was released.
fn live_ring(ring: &Option<CoherentMemory>) -> Result<&CoherentMemory, IoFailure> {
    ring.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DeviceStopped))
}

/// What one request needs besides the queue: the header and status buffers the
/// driver owns, and a command for each of the three parts.
struct RequestParts {
    header: DmaBuffer,
    header_command: IoDmaCommand,
    status: DmaBuffer,
    status_command: IoDmaCommand,
    data_command: IoDmaCommand,
    /// Room for the segment records of one chain (header, data, status).
    records: Vec<u8>,
}

/// Everything one request uses, behind one lock.
struct Channel {
    queue: Queue,
    parts: RequestParts,
    state: DeviceState,
    /// The data segments of the last request.
    last_segments: Vec<Segment>,
}

/// What `new` learns from the device once the queue is set up.
struct Configuration {
    capacity: u64,
    max_data_segments: usize,
    parts: RequestParts,
}

/// One virtio request's worth of a block request.
struct Chunk {
    operation: BlockOperation,
    sector: u64,
    /// Where the chunk starts in the caller's buffer.
    offset: u64,
    length: u64,
    options: TransferOptions,
}

impl Chunk {
    /// The request header the device reads first.
    fn header(&self) -> [u8; HEADER_BYTES as usize] {
        let kind = match self.operation {
            BlockOperation::Read => REQUEST_IN,
            BlockOperation::Write => REQUEST_OUT,
        };
        let mut header = [0u8; HEADER_BYTES as usize];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&self.sector.to_le_bytes());
        header
    }

    /// Data bytes the device moved, from the used element's length (the bytes
    /// it wrote into device-writable buffers), once the status said OK. A read
    /// wrote the data and the status byte; a write wrote only the status, and a
    /// device that says OK read all of the data.
    fn moved(&self, used_length: u32) -> u64 {
        match self.operation {
            BlockOperation::Read => u64::from(used_length).saturating_sub(STATUS_BYTES).min(self.length),
            BlockOperation::Write => self.length,
        }
    }
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

/// A virtio block device on either virtio-PCI interface.
pub struct VirtioBlock<T: Transport> {
    transport: T,
    waiter: &'static dyn Waiter,
    channel: Mutex<Channel>,
    capacity: u64,
    medium: Medium,
    features_offered: u64,
    features_accepted: u64,
    dma_route: DmaRoute,
    dma_description: &'static str,
    max_data_segments: usize,
    force_double_buffer: AtomicBool,
    interrupts: AtomicU64,
}

fn read_u16(ring: &CoherentMemory, offset: u64) -> Result<u16, IoFailure> {
    let mut bytes = [0; 2];
    ring.read_bytes(offset, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

impl<T: Transport> VirtioBlock<T> {
    /// Resets the device, negotiates features (with the `FEATURES_OK` handshake
    /// on a modern device), picks the DMA platform the features call for, sets
    /// up queue 0 and says DRIVER_OK.
    pub fn new(transport: T, platforms: DmaPlatforms, waiter: &'static dyn Waiter) -> Result<Self, IoFailure> {
        let interface = transport.interface();
        transport.reset()?;
        transport.set_status(STATUS_ACKNOWLEDGE);
        transport.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let features_offered = transport.device_features();
        let mut status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
        let negotiated = Self::negotiate(&transport, interface, features_offered, &mut status);
        let features_accepted = negotiated.inspect_err(|_| {
            // Nothing of ours is in the device yet: the reset clears the
            // features, and FAILED tells the host the driver gave up.
            let _ = transport.reset();
            transport.set_status(STATUS_FAILED);
        })?;
        let dma_route = DmaRoute::choose(interface, features_accepted);
        let platform = dma_route.platform(&platforms);

        let mut queue = Self::set_up_queue(&transport, platform, interface).inspect_err(|_| {
            // `set_up_queue` took back whatever memory it gave the device; the
            // reset clears the features, and FAILED says the driver gave up.
            let _ = transport.reset();
            transport.set_status(STATUS_FAILED);
        })?;
        let configuration = match Self::configure(&transport, platform, features_accepted, queue.layout.size) {
            Ok(configuration) => configuration,
            Err(failure) => {
                // The device has the queue's address: it must forget it (reset)
                // before the memory can go back.
                queue.reset_and_release(&transport);
                transport.set_status(STATUS_FAILED);
                return Err(failure);
            }
        };
        transport.set_status(status | STATUS_DRIVER_OK);
        let medium = if features_accepted & FEATURE_READ_ONLY != 0 { Medium::ReadOnly } else { Medium::Writable };
        let channel =
            Channel { queue, parts: configuration.parts, state: DeviceState::Running, last_segments: Vec::new() };
        Ok(VirtioBlock {
            transport,
            waiter,
            channel: Mutex::new(channel),
            capacity: configuration.capacity,
            medium,
            features_offered,
            features_accepted,
            dma_route,
            dma_description: dma_route.description(platform),
            max_data_segments: configuration.max_data_segments,
            force_double_buffer: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
        })
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

    /// Allocates queue 0 and gives it to the device: the last step, so that an
    /// error before it leaves the device without any memory of ours, and an
    /// error in it is undone here (reset, then free).
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
        let mut queue = Queue { layout, ring: Some(ring), address, available_index: 0, used_index: 0 };
        if let Err(failure) = transport.set_up_queue(0, size, layout.areas(address)) {
            // The device may hold some of the addresses already.
            queue.reset_and_release(transport);
            return Err(failure);
        }
        Ok(queue)
    }

    /// Reads the disk's configuration and makes what every request needs. The
    /// device has the queue by now, so `new` resets it if this fails.
    fn configure(
        transport: &T,
        platform: &'static dyn DmaPlatform,
        features_accepted: u64,
        queue_size: u16,
    ) -> Result<Configuration, IoFailure> {
        let capacity = transport.config_read64(CONFIG_CAPACITY)?;
        let seg_max = match features_accepted & FEATURE_SEG_MAX {
            0 => usize::MAX,
            _ => transport.config_read32(CONFIG_SEG_MAX)? as usize,
        };
        if seg_max == 0 {
            // Not even one data segment per request: no request could be made.
            return Err(IoFailure::new(IoReturn::IoError, Cause::DeviceError("virtio-blk seg_max is 0")));
        }
        // Two descriptors of the chain are the header and the status.
        let max_data_segments = seg_max.min(usize::from(queue_size) - 2);
        let parts = RequestParts {
            header: DmaBuffer::allocate(platform, HEADER_BYTES, IoDirection::Out, Constraints::NONE)?,
            header_command: IoDmaCommand::new(platform, part_specification(1))?,
            status: DmaBuffer::allocate(platform, STATUS_BYTES, IoDirection::In, Constraints::NONE)?,
            status_command: IoDmaCommand::new(platform, part_specification(1))?,
            data_command: IoDmaCommand::new(platform, part_specification(max_data_segments))?,
            records: vec![0; RECORD_SIZE * (max_data_segments + 2)],
        };
        Ok(Configuration { capacity, max_data_segments, parts })
    }

    /// Acknowledges the device's interrupt (reading ISR lowers the line). Called
    /// by the kernel's interrupt handler.
    pub fn handle_interrupt(&self) {
        if self.transport.acknowledge_interrupt() & 1 != 0 {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Interrupts acknowledged so far.
    pub fn interrupt_count(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// Features the device offered and the driver accepted, for the registry.
    pub fn features(&self) -> (u64, u64) {
        (self.features_offered, self.features_accepted)
    }

    /// Which interface the device is driven through.
    pub fn interface(&self) -> Interface {
        self.transport.interface()
    }

    /// How the device reaches memory (which platform its DMA goes through).
    pub fn dma_route(&self) -> DmaRoute {
        self.dma_route
    }

    /// [`VirtioBlock::dma_route`] in words, for the registry's `dma` property.
    pub fn dma_description(&self) -> &'static str {
        self.dma_description
    }

    /// Queue entries.
    pub fn queue_size(&self) -> u16 {
        self.channel.lock().queue.layout.size
    }

    /// The device address of the queue memory.
    pub fn queue_address(&self) -> u64 {
        self.channel.lock().queue.address.as_u64()
    }

    /// One virtio request: fill the header, prepare the three parts side by side,
    /// chain their records, wait for the device, complete them with what it moved.
    fn run_chunk(&self, channel: &mut Channel, chunk: &Chunk, buffer: &mut DmaBuffer) -> Result<(), IoFailure> {
        let Channel { queue, parts, state, last_segments } = channel;
        let RequestParts {
            header: header_buffer,
            header_command,
            status: status_buffer,
            status_command,
            data_command,
            records,
        } = parts;
        // The CPU's last touch before the device owns these two.
        header_buffer.write_bytes(0, &chunk.header())?;
        status_buffer.write_bytes(0, &[STATUS_UNWRITTEN])?;
        let plain = TransferOptions::default();
        let header = DmaTransfer::prepare(header_command, header_buffer, 0, 0, &plain)?;
        let data = DmaTransfer::prepare(data_command, buffer, chunk.offset, chunk.length, &chunk.options)?;
        let status = DmaTransfer::prepare(status_command, status_buffer, 0, 0, &plain)?;

        let data_access = chunk.operation.memory_direction();
        let used_length = match self.run_chain(queue, records, [&header, &data, &status], data_access, last_segments) {
            Ok(used_length) => used_length,
            Err(failure) => {
                // The device may hold the chain and still write through it: stop
                // it before any memory goes back, then trust nothing it did.
                *state = DeviceState::Stopped;
                match self.transport.reset() {
                    Ok(()) => {
                        for transfer in [header, data, status] {
                            let _ = transfer.complete(0);
                        }
                    }
                    Err(reset) => {
                        // Not stopped: the memory stays the device's for good.
                        log::error!("virtio-blk: {reset}; the request's memory is abandoned");
                        for transfer in [header, data, status] {
                            let _ = transfer.abandon();
                        }
                    }
                }
                self.transport.set_status(STATUS_FAILED);
                log::error!("virtio-blk: {failure}; the device was reset and takes no more requests");
                return Err(failure);
            }
        };

        // The device is done: the buffers are the CPU's again once completed.
        let header_done = header.complete(HEADER_BYTES);
        let request_status = read_status(status.complete(STATUS_BYTES));
        let moved = match request_status {
            Ok(RequestStatus::Ok) => chunk.moved(used_length),
            _ => 0,
        };
        let data_done = data.complete(moved);
        header_done.result?;
        request_status?.check()?;
        // `Underrun` if the device moved fewer bytes than the chunk holds.
        data_done.result
    }

    /// Hands the chain to the device and waits for it: returns the used
    /// element's length. On any error the device may hold the chain.
    fn run_chain(
        &self,
        queue: &mut Queue,
        records: &mut [u8],
        transfers: [&Transfer<'_>; 3],
        data_access: IoDirection,
        last_segments: &mut Vec<Segment>,
    ) -> Result<u32, IoFailure> {
        *last_segments = write_chain(queue, records, transfers, data_access)?;
        self.publish_and_wait(queue)
    }

    /// Publishes the chain at descriptor 0, notifies the device and waits for
    /// the used ring to advance; returns the used element's length.
    fn publish_and_wait(&self, queue: &mut Queue) -> Result<u32, IoFailure> {
        let Queue { layout, ring, available_index, used_index, .. } = queue;
        let ring = live_ring(ring)?;
        ring.write_bytes(layout.available_slot(*available_index), &0u16.to_le_bytes())?;
        // The device must see the descriptors and the slot before the new index.
        fence(Ordering::SeqCst);
        *available_index = available_index.wrapping_add(1);
        ring.write_bytes(layout.available_index(), &available_index.to_le_bytes())?;
        fence(Ordering::SeqCst);
        self.transport.notify(0)?;

        let expected = used_index.wrapping_add(1);
        let used_offset = layout.used_index();
        let answered = &mut || read_u16(ring, used_offset).is_ok_and(|used| used == expected);
        self.waiter.wait_until(REQUEST_TIMEOUT_MS, answered).map_err(|code| match code {
            IoReturn::Timeout => IoFailure::new(code, Cause::TimedOut { milliseconds: REQUEST_TIMEOUT_MS }),
            _ => IoFailure::from(code),
        })?;
        // The element is valid only once the index that publishes it was seen.
        fence(Ordering::SeqCst);
        let mut element = [0u8; 8];
        ring.read_bytes(layout.used_slot(*used_index), &mut element)?;
        *used_index = expected;
        // `struct virtq_used_elem { id: u32, len: u32 }`.
        let (fields, _) = element.as_chunks::<4>();
        Ok(u32::from_le_bytes(fields[1]))
    }
}

/// Writes the chain header -> data ... -> status into the descriptor table,
/// from the records the transfers write in the commands' output format; returns
/// the data segments, as the device got them.
fn write_chain(
    queue: &Queue,
    records: &mut [u8],
    [header, data, status]: [&Transfer<'_>; 3],
    data_access: IoDirection,
) -> Result<Vec<Segment>, IoFailure> {
    // Header and status have one segment each (their specification says so).
    let (header_record, rest) = records.split_at_mut(RECORD_SIZE);
    header.write_segments(0, header_record)?;
    let data_room = rest.len() - RECORD_SIZE;
    let (data_count, data_end) = data.write_segments(0, &mut rest[..data_room])?;
    if data_end < data.length() {
        let cause = Cause::Other("the data needs more descriptors than the queue has");
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    let status_start = RECORD_SIZE * (1 + data_count);
    status.write_segments(0, &mut records[status_start..status_start + RECORD_SIZE])?;

    let chain_length = data_count + 2;
    let (chain, _) = records[..RECORD_SIZE * chain_length].as_chunks::<RECORD_SIZE>();
    let ring = live_ring(&queue.ring)?;
    let mut data_segments = Vec::with_capacity(data_count);
    for (index, record) in chain.iter().enumerate() {
        let last = index + 1 == chain_length;
        let access = match (index, last) {
            (0, _) => IoDirection::Out,
            (_, true) => IoDirection::In,
            (_, false) => data_access,
        };
        let mut descriptor = VirtqDescriptor::from_record(record, access)?;
        if !last {
            descriptor.flags |= DESCRIPTOR_NEXT;
            // The chain is shorter than the queue, whose size is a u16.
            descriptor.next = (index + 1) as u16;
        }
        if index != 0 && !last {
            data_segments.push(descriptor.segment());
        }
        ring.write_bytes(queue.layout.descriptor(index as u16), &descriptor.to_bytes())?;
    }
    Ok(data_segments)
}

/// The status byte, read once its transfer is completed and the buffer is the
/// CPU's again.
fn read_status(completed: Completed<&mut DmaBuffer, &mut IoDmaCommand>) -> Result<RequestStatus, IoFailure> {
    completed.result?;
    let mut byte = [STATUS_UNWRITTEN];
    completed.buffer.read_bytes(0, &mut byte)?;
    Ok(RequestStatus::from_byte(byte[0]))
}

impl<T: Transport> Drop for VirtioBlock<T> {
    /// Resets the device, so that it forgets the queue, then releases the queue.
    fn drop(&mut self) {
        self.channel.get_mut().queue.reset_and_release(&self.transport);
    }
}

impl<T: Transport> BlockDevice for VirtioBlock<T> {
    fn driver_name(&self) -> &'static str {
        "VirtioBlock"
    }

    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.capacity
    }

    /// Splits the request into virtio requests of at most 1 MiB and runs them
    /// in order; the first failure ends it.
    fn submit(&self, request: BlockRequest<'_>) -> Result<(), IoFailure> {
        if request.operation == BlockOperation::Write && self.medium == Medium::ReadOnly {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::Other("the disk is read-only")));
        }
        let mut channel = self.channel.lock();
        if channel.state == DeviceState::Stopped {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::DeviceStopped));
        }
        let mut options = request.options;
        options.force_double_buffer |= self.force_double_buffer.load(Ordering::Relaxed);
        let mut done = 0;
        while done < request.count {
            let sectors = (request.count - done).min(MAX_REQUEST_SECTORS);
            let chunk = Chunk {
                operation: request.operation,
                sector: request.lba + done,
                offset: request.offset + done * SECTOR_SIZE,
                length: sectors * SECTOR_SIZE,
                options,
            };
            self.run_chunk(&mut channel, &chunk, &mut *request.buffer)?;
            done += sectors;
        }
        Ok(())
    }

    fn description(&self) -> String {
        format!(
            "virtio-blk, {}, {}-entry queue, {} data segments",
            self.interface().name(),
            self.queue_size(),
            self.max_data_segments
        )
    }

    fn set_double_buffering(&self, policy: DoubleBuffering) {
        self.force_double_buffer.store(policy == DoubleBuffering::Forced, Ordering::Relaxed);
    }

    fn last_segments(&self) -> Vec<Segment> {
        self.channel.lock().last_segments.clone()
    }
}
