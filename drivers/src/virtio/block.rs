//! The virtio-blk driver core, generic over its registers so that it runs on the
//! host against a fake device.
//!
//! One request is in flight at a time. A request is a chain of descriptors:
//! ```text
//! [header: type, sector] -> [data segment] ... [data segment] -> [status byte]
//!   device reads             device writes (read) or reads (write)   device writes
//! ```
//! Header, data and status each go through their own `IoDmaCommand` with a
//! 64-bit specification: the device can reach all memory, so nothing is bounced
//! unless the driver is told to force it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use dmakit::block::{BlockDevice, BlockRequest, TransferOptions};
use dmakit::dma::{DmaPlatform, IoDirection, IoDmaCommand, IoMemoryDescriptor, IoReturn, Segment, Specification};
use dmakit::io::RegisterIo;
use dmakit::memory::{Constraints, FRAME_SIZE};
use dmakit::time::Waiter;
use spin::Mutex;
use x86_64::PhysAddr;

use super::queue::{DESCRIPTOR_NEXT, QueueLayout, VirtqDescriptor};
use super::registers::*;

/// How long a request may take before the driver gives up.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The most sectors one request carries (1 MiB); larger transfers are split.
const MAX_REQUEST_SECTORS: u64 = 2048;
/// The legacy interface holds the queue's page number in 32 bits.
const QUEUE_ADDRESS_BITS: u8 = 44;

struct Queue {
    layout: QueueLayout,
    ring: Arc<IoMemoryDescriptor>,
    /// Prepared for the device's whole life: the device owns the ring until reset.
    ring_command: IoDmaCommand,
    available_index: u16,
    used_index: u16,
}

struct Request {
    queue: Queue,
    header: Arc<IoMemoryDescriptor>,
    header_command: IoDmaCommand,
    status: Arc<IoMemoryDescriptor>,
    status_command: IoDmaCommand,
    data_command: IoDmaCommand,
    failed: bool,
    /// The data segments of the last request.
    last_segments: alloc::vec::Vec<Segment>,
}

/// One request's worth of a transfer.
struct Chunk<'a> {
    write: bool,
    options: TransferOptions,
    sector: u64,
    buffer: &'a Arc<IoMemoryDescriptor>,
    offset: u64,
    length: u64,
}

/// A virtio block device on the legacy PCI interface.
pub struct VirtioBlock<R: RegisterIo> {
    registers: R,
    waiter: &'static dyn Waiter,
    request: Mutex<Request>,
    capacity: u64,
    read_only: bool,
    features_offered: u32,
    features_accepted: u32,
    max_data_segments: usize,
    force_double_buffer: AtomicBool,
    interrupts: AtomicU64,
}

fn read_u16(ring: &IoMemoryDescriptor, offset: u64) -> Result<u16, IoReturn> {
    let mut bytes = [0; 2];
    ring.read_bytes(offset, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

impl<R: RegisterIo> VirtioBlock<R> {
    /// Resets the device, negotiates features, sets up queue 0 and says DRIVER_OK.
    pub fn new(
        registers: R,
        platform: &'static dyn DmaPlatform,
        waiter: &'static dyn Waiter,
    ) -> Result<Self, IoReturn> {
        registers.write8(DEVICE_STATUS, 0);
        registers.write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE);
        registers.write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let features_offered = registers.read32(DEVICE_FEATURES);
        let features_accepted = features_offered & (FEATURE_SEG_MAX | FEATURE_READ_ONLY);
        registers.write32(GUEST_FEATURES, features_accepted);

        let queue = match Self::set_up_queue(&registers, platform) {
            Ok(queue) => queue,
            Err(error) => {
                registers.write8(DEVICE_STATUS, STATUS_FAILED);
                return Err(error);
            }
        };
        let capacity =
            u64::from(registers.read32(BLOCK_CAPACITY)) | u64::from(registers.read32(BLOCK_CAPACITY + 4)) << 32;
        let seg_max = if features_accepted & FEATURE_SEG_MAX != 0 {
            registers.read32(BLOCK_SEG_MAX) as usize
        } else {
            usize::MAX
        };
        // Two descriptors of the chain are the header and the status.
        let max_data_segments = seg_max.min(usize::from(queue.layout.size) - 2).max(1);
        let data_specification = Specification { max_segments: max_data_segments, ..Specification::UNLIMITED_64 };
        let header = IoMemoryDescriptor::allocate(platform, 16, IoDirection::Out, Constraints::NONE)?;
        let status = IoMemoryDescriptor::allocate(platform, 1, IoDirection::In, Constraints::NONE)?;
        let request = Request {
            queue,
            header,
            header_command: IoDmaCommand::new(platform, Specification::UNLIMITED_64)?,
            status,
            status_command: IoDmaCommand::new(platform, Specification::UNLIMITED_64)?,
            data_command: IoDmaCommand::new(platform, data_specification)?,
            failed: false,
            last_segments: alloc::vec::Vec::new(),
        };
        registers.write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
        Ok(VirtioBlock {
            registers,
            waiter,
            request: Mutex::new(request),
            capacity,
            read_only: features_accepted & FEATURE_READ_ONLY != 0,
            features_offered,
            features_accepted,
            max_data_segments,
            force_double_buffer: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
        })
    }

    fn set_up_queue(registers: &R, platform: &'static dyn DmaPlatform) -> Result<Queue, IoReturn> {
        registers.write16(QUEUE_SELECT, 0);
        let size = registers.read16(QUEUE_SIZE);
        if size < 3 {
            return Err(IoReturn::NoResources);
        }
        let layout = QueueLayout::new(size);
        let placement =
            Constraints { below: Some(PhysAddr::new(1 << QUEUE_ADDRESS_BITS)), alignment: FRAME_SIZE, boundary: 0 };
        let ring = IoMemoryDescriptor::allocate_coherent(platform, layout.total, placement)?;
        let ring_specification = Specification {
            num_address_bits: QUEUE_ADDRESS_BITS,
            alignment: QUEUE_ALIGNMENT,
            max_segments: 1,
            ..Specification::UNLIMITED_64
        };
        let mut ring_command = IoDmaCommand::new(platform, ring_specification)?;
        ring_command.set_memory_descriptor(ring.clone(), true)?;
        let page = ring_command.segments()[0].address.as_u64() / QUEUE_ALIGNMENT;
        registers.write32(QUEUE_ADDRESS, page as u32);
        Ok(Queue { layout, ring, ring_command, available_index: 0, used_index: 0 })
    }

    /// Acknowledges the device's interrupt (reading ISR lowers the line). Called
    /// by the kernel's interrupt handler.
    pub fn handle_interrupt(&self) {
        if self.registers.read8(ISR_STATUS) & 1 != 0 {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Interrupts acknowledged so far.
    pub fn interrupt_count(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// Features the device offered and the driver accepted, for the registry.
    pub fn features(&self) -> (u32, u32) {
        (self.features_offered, self.features_accepted)
    }

    /// Queue entries.
    pub fn queue_size(&self) -> u16 {
        self.request.lock().queue.layout.size
    }

    /// The device address of the queue memory.
    pub fn queue_address(&self) -> u64 {
        self.request.lock().queue.ring_command.segments()[0].address.as_u64()
    }

    /// A request that passed `check_request`, split into virtio requests.
    fn run_request(&self, block: &BlockRequest) -> Result<(), IoReturn> {
        if block.write && self.read_only {
            return Err(IoReturn::NotPermitted);
        }
        let mut request = self.request.lock();
        if request.failed {
            return Err(IoReturn::NotReady);
        }
        let mut options = block.options;
        options.force_double_buffer |= self.force_double_buffer.load(Ordering::Relaxed);
        let mut done = 0;
        while done < block.count {
            let sectors = (block.count - done).min(MAX_REQUEST_SECTORS);
            let chunk = Chunk {
                write: block.write,
                options,
                sector: block.lba + done,
                buffer: block.buffer,
                offset: block.offset + done * SECTOR_SIZE,
                length: sectors * SECTOR_SIZE,
            };
            self.submit(&mut request, &chunk)?;
            done += sectors;
        }
        Ok(())
    }

    /// One request: prepare the three parts, chain them, notify, wait, complete.
    fn submit(&self, request: &mut Request, chunk: &Chunk) -> Result<(), IoReturn> {
        let mut header = [0u8; 16];
        let kind = if chunk.write { REQUEST_OUT } else { REQUEST_IN };
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&chunk.sector.to_le_bytes());
        request.header.write_bytes(0, &header)?;
        request.status.write_bytes(0, &[0xff])?;
        let Request { queue, header_command, status_command, data_command, last_segments, .. } = request;
        let (header, status) = (request.header.clone(), request.status.clone());
        let plain = TransferOptions::default();
        let result = header_command.with_transfer(header, 0, 0, &plain, |header| {
            status_command.with_transfer(status, 0, 0, &plain, |status| {
                data_command.with_transfer(chunk.buffer.clone(), chunk.offset, chunk.length, &chunk.options, |data| {
                    *last_segments = data.to_vec();
                    self.run_chain(queue, header[0], data, !chunk.write, status[0])
                })
            })
        });
        if let Err(IoReturn::Timeout) = result {
            // The device may still write into the buffers: stop it for good.
            self.registers.write8(DEVICE_STATUS, 0);
            request.failed = true;
            log::error!("virtio-blk: request timed out; device reset and disabled");
        }
        result?;
        let mut status = [0xff];
        request.status.read_bytes(0, &mut status)?;
        if status[0] == STATUS_OK { Ok(()) } else { Err(IoReturn::IoError) }
    }

    /// Writes the chain into the descriptor table, publishes it and waits.
    fn run_chain(
        &self,
        queue: &mut Queue,
        header: Segment,
        data: &[Segment],
        device_writes_data: bool,
        status: Segment,
    ) -> Result<(), IoReturn> {
        let count = data.len() + 2;
        let parts = core::iter::once((header, false))
            .chain(data.iter().map(|segment| (*segment, device_writes_data)))
            .chain(core::iter::once((status, true)));
        for (index, (segment, device_writes)) in parts.enumerate() {
            let mut descriptor = VirtqDescriptor::new(segment, device_writes);
            if index + 1 < count {
                descriptor.flags |= DESCRIPTOR_NEXT;
                descriptor.next = (index + 1) as u16;
            }
            queue.ring.write_bytes(queue.layout.descriptor(index as u16), &descriptor.to_bytes())?;
        }
        // The chain starts at descriptor 0; put it in the next available slot.
        queue.ring.write_bytes(queue.layout.available_slot(queue.available_index), &0u16.to_le_bytes())?;
        // The device must see the descriptors and the slot before the new index.
        fence(Ordering::SeqCst);
        queue.available_index = queue.available_index.wrapping_add(1);
        queue.ring.write_bytes(queue.layout.available_index(), &queue.available_index.to_le_bytes())?;
        fence(Ordering::SeqCst);
        self.registers.write16(QUEUE_NOTIFY, 0);

        let expected = queue.used_index.wrapping_add(1);
        let ring = queue.ring.clone();
        let used_offset = queue.layout.used_index();
        self.waiter
            .wait_until(REQUEST_TIMEOUT_MS, &mut || read_u16(&ring, used_offset).is_ok_and(|used| used == expected))?;
        fence(Ordering::SeqCst);
        queue.used_index = expected;
        Ok(())
    }
}

impl<R: RegisterIo> BlockDevice for VirtioBlock<R> {
    fn driver_name(&self) -> &'static str {
        "VirtioBlock"
    }

    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.capacity
    }

    fn submit(&self, request: &BlockRequest) -> Result<(), IoReturn> {
        self.run_request(request)
    }

    fn description(&self) -> String {
        format!("virtio-blk, legacy PCI, {}-entry queue, {} data segments", self.queue_size(), self.max_data_segments)
    }

    fn set_force_double_buffer(&self, enabled: bool) {
        self.force_double_buffer.store(enabled, Ordering::Relaxed);
    }

    fn last_segments(&self) -> alloc::vec::Vec<Segment> {
        self.request.lock().last_segments.clone()
    }
}
