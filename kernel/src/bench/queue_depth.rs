//! Queue-depth benchmarks: sequential and random reads with 1 or many requests
//! in flight, through the asynchronous block interface (submit, then wait for
//! whichever finishes first and submit the next into its buffer).

use alloc::vec::Vec;

use x86_64::PhysAddr;

use crate::block::{BlockDevice, BlockOperation, BlockRequest, RequestHandle};
use crate::clock::Instant;
use crate::dma::kernel_platform::platform;
use crate::dma::{Cause, DmaBuffer, IoDirection, IoFailure, IoReturn};
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
/// measures the queue, not the copies). Every result is checked.
pub fn read_at_depth(
    disk: &dyn BlockDevice,
    pattern: Pattern,
    request_bytes: u64,
    requests: u64,
    depth: usize,
) -> Result<Throughput, IoFailure> {
    let block = u64::from(disk.block_size());
    let blocks = request_bytes / block;
    if blocks == 0 || blocks > disk.max_request_blocks() || depth == 0 {
        let cause = Cause::Other("the request size must be whole blocks the device takes, the depth at least 1");
        return Err(IoFailure::new(IoReturn::BadArgument, cause));
    }
    let places = disk.block_count() / blocks;
    if places == 0 {
        let cause = Cause::Other("the disk is smaller than one request");
        return Err(IoFailure::new(IoReturn::BadArgument, cause));
    }
    let below_4_gib = Constraints::below(PhysAddr::new(1 << 32));
    let mut free: Vec<DmaBuffer> = Vec::with_capacity(depth);
    for _ in 0..depth {
        free.push(DmaBuffer::allocate(platform(), request_bytes, IoDirection::In, below_4_gib)?);
    }
    let mut positions = Positions { state: 0x9e37_79b9_7f4a_7c15 };
    let mut in_flight: Vec<RequestHandle> = Vec::with_capacity(depth);
    let (mut submitted, mut finished) = (0u64, 0u64);
    let mut first_error = None;
    let start = Instant::now();
    while finished < requests {
        while submitted < requests && first_error.is_none() {
            let Some(buffer) = free.pop() else { break };
            let place = match pattern {
                Pattern::Sequential => submitted % places,
                Pattern::Random => positions.next(places),
            };
            let request = BlockRequest::new(BlockOperation::Read, place * blocks, blocks, buffer, 0);
            match disk.submit(request) {
                Ok(handle) => in_flight.push(handle),
                Err(rejected) => {
                    free.push(rejected.request.buffer);
                    first_error = Some(rejected.failure);
                }
            }
            submitted += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        let index = disk.wait_any(&in_flight)?;
        let done = disk.wait(in_flight.swap_remove(index));
        finished += 1;
        if let Some(buffer) = done.buffer {
            free.push(buffer);
        }
        if let Err(failure) = done.result {
            first_error.get_or_insert(failure);
        }
    }
    let nanoseconds = start.elapsed_ns();
    if let Some(failure) = first_error {
        return Err(failure);
    }
    Ok(Throughput { requests: finished, bytes: finished * request_bytes, nanoseconds })
}
