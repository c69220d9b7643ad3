//! Queue-depth benchmarks: sequential and random reads with 1 or many requests
//! in flight, through the asynchronous block interface (submit, then wait for
//! whichever finishes first and submit the next into its buffer).

use alloc::vec::Vec;

use x86_64::PhysAddr;

use crate::block::{BlockDevice, BlockOperation, BlockRequest, RequestHandle};
#[cfg(target_os = "none")]
use crate::clock::Instant;
#[cfg(target_os = "none")]
use crate::dma::kernel_platform::platform;
use crate::dma::{Cause, DmaBuffer, DmaPlatform, IoDirection, IoFailure, IoReturn};
use crate::memory::Constraints;

/// Where the reads go on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// One after the other from block 0.
    Sequential,
    /// Anywhere, aligned to the request size (a fixed pseudo-random sequence).
    Random,
}

/// What one measurement did.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Requests finished.
    pub requests: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Time from the first submission to the last completion.
    pub nanoseconds: u64,
}

impl Throughput {
    /// MB/s (10^6 bytes per second).
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 * 1000.0 / self.nanoseconds.max(1) as f64
    }

    /// Requests per second.
    pub fn iops(&self) -> f64 {
        self.requests as f64 * 1e9 / self.nanoseconds.max(1) as f64
    }
}

/// xorshift64: the same "random" blocks every run, so runs compare.
struct Positions {
    state: u64,
}

impl Positions {
    fn next(&mut self, slots: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % slots.max(1)
    }
}

/// Reads `requests` requests of `request_bytes` from `disk` in `pattern`,
/// keeping up to `depth` in flight, into buffers below 4 GiB (no bouncing: this
/// measures the queue, not the copies). Every result is checked. A request
/// larger than the device takes at once (NVMe's MDTS: 512 KiB on QEMU's
/// default controller) goes as parts of [`BlockDevice::max_request_blocks`],
/// all submitted together and counted as one request once the last is back,
/// as Linux splits an application's read at the same limit: depth 1 then
/// keeps the parts of one request in flight, never a part of the next.
#[cfg(target_os = "none")]
pub fn read_at_depth(
    disk: &dyn BlockDevice,
    pattern: Pattern,
    request_bytes: u64,
    requests: u64,
    depth: usize,
) -> Result<Throughput, IoFailure> {
    let split = Split::new(disk, request_bytes)?;
    let mut groups = split.allocate(platform(), depth)?;
    let start = Instant::now();
    let finished = read_requests(disk, pattern, &split, &mut groups, requests)?;
    let nanoseconds = start.elapsed_ns();
    Ok(Throughput { requests: finished, bytes: finished * split.blocks * split.block, nanoseconds })
}

/// How one request of the benchmark maps onto the disk's requests.
pub struct Split {
    /// Bytes per block.
    block: u64,
    /// Blocks per benchmark request.
    blocks: u64,
    /// The most blocks of one part (the device's limit, or the whole request).
    part_blocks: u64,
    /// Request-sized places on the disk.
    places: u64,
}

impl Split {
    /// `request_bytes` on `disk`: whole blocks, cut at the device's limit.
    pub fn new(disk: &dyn BlockDevice, request_bytes: u64) -> Result<Split, IoFailure> {
        let block = u64::from(disk.block_size());
        let blocks = request_bytes / block;
        let part_blocks = disk.max_request_blocks().min(blocks);
        if blocks == 0 || part_blocks == 0 {
            let cause = Cause::Other("the request size must be whole blocks");
            return Err(IoFailure::new(IoReturn::BadArgument, cause));
        }
        let places = disk.block_count() / blocks;
        if places == 0 {
            let cause = Cause::Other("the disk is smaller than one request");
            return Err(IoFailure::new(IoReturn::BadArgument, cause));
        }
        Ok(Split { block, blocks, part_blocks, places })
    }

    fn parts(&self) -> usize {
        self.blocks.div_ceil(self.part_blocks) as usize
    }

    /// `depth` groups of buffers below 4 GiB from `memory`, one buffer per part.
    /// Every buffer has the size of the largest part, so that parts coming back
    /// in any order can be handed to any part again.
    pub fn allocate(&self, memory: &'static dyn DmaPlatform, depth: usize) -> Result<Vec<Group>, IoFailure> {
        if depth == 0 {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Other("the depth must be at least 1")));
        }
        let below_4_gib = Constraints::below(PhysAddr::new(1 << 32));
        let mut groups = Vec::with_capacity(depth);
        for _ in 0..depth {
            let mut buffers = Vec::with_capacity(self.parts());
            for _ in 0..self.parts() {
                buffers.push(DmaBuffer::allocate(memory, self.part_blocks * self.block, IoDirection::In, below_4_gib)?);
            }
            groups.push(Group { buffers, outstanding: 0 });
        }
        Ok(groups)
    }
}

/// One request's buffers (one per part) and how many of its parts are out.
pub struct Group {
    buffers: Vec<DmaBuffer>,
    outstanding: usize,
}

/// The measured loop: keeps one request per group in flight (each as its
/// parts), starting the next in a group as soon as all its parts are back,
/// until `requests` are finished. Returns how many finished; the first failure
/// stops new submissions and is returned once nothing is in flight.
pub fn read_requests(
    disk: &dyn BlockDevice,
    pattern: Pattern,
    split: &Split,
    groups: &mut [Group],
    requests: u64,
) -> Result<u64, IoFailure> {
    let mut free: Vec<usize> = (0..groups.len()).collect();
    let mut positions = Positions { state: 0x9e37_79b9_7f4a_7c15 };
    // Each handle in flight, with the group it belongs to.
    let mut in_flight: Vec<RequestHandle> = Vec::with_capacity(groups.len() * split.parts());
    let mut owners: Vec<usize> = Vec::with_capacity(groups.len() * split.parts());
    let (mut submitted, mut finished) = (0u64, 0u64);
    let mut first_error = None;
    while finished < requests {
        while submitted < requests && first_error.is_none() {
            let Some(group) = free.pop() else { break };
            let place = match pattern {
                Pattern::Sequential => submitted % split.places,
                Pattern::Random => positions.next(split.places),
            };
            let mut buffers = core::mem::take(&mut groups[group].buffers);
            let (mut first, end) = (place * split.blocks, (place + 1) * split.blocks);
            while first < end && first_error.is_none() {
                let Some(buffer) = buffers.pop() else { break };
                let count = split.part_blocks.min(end - first);
                match disk.submit(BlockRequest::new(BlockOperation::Read, first, count, buffer, 0)) {
                    Ok(handle) => {
                        in_flight.push(handle);
                        owners.push(group);
                        groups[group].outstanding += 1;
                    }
                    Err(rejected) => {
                        buffers.push(rejected.request.buffer);
                        first_error = Some(rejected.failure);
                    }
                }
                first += count;
            }
            groups[group].buffers.append(&mut buffers);
            if groups[group].outstanding == 0 {
                free.push(group);
            }
            submitted += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        let index = disk.wait_any(&in_flight)?;
        let group = owners.swap_remove(index);
        let done = disk.wait(in_flight.swap_remove(index));
        if let Some(buffer) = done.buffer {
            groups[group].buffers.push(buffer);
        }
        if let Err(failure) = done.result {
            first_error.get_or_insert(failure);
        }
        groups[group].outstanding -= 1;
        if groups[group].outstanding == 0 {
            finished += 1;
            free.push(group);
        }
    }
    match first_error {
        Some(failure) => Err(failure),
        None => Ok(finished),
    }
}
