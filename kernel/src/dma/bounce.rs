//! Bounce buffers: frames the device can reach, standing in for memory it
//! cannot (or may not) use in place, and the copies between them and the
//! descriptor. Every copy is counted in the platform's accounting and traced.

use core::ops::Range;

use x86_64::PhysAddr;

use super::failure::{Cause, IoFailure};
use super::plan::{Layout, Placement};
use super::platform::{DmaPlatform, FrameFill};
use super::trace::dma_trace;
use super::{IoDirection, IoMemoryDescriptor, IoReturn};
use crate::memory::{Constraints, FRAME_SIZE, MemoryError};

/// A bounce buffer: contiguous frames the device can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BounceBuffer {
    /// Physical (and, without an IOMMU, device) address of the first byte.
    pub address: PhysAddr,
    /// Bytes of the transfer it holds.
    pub length: u64,
    /// Whole frames allocated.
    pub pages: usize,
}

/// Whole frames in `buffers`.
pub(crate) fn pages(buffers: &[BounceBuffer]) -> usize {
    buffers.iter().map(|buffer| buffer.pages).sum()
}

/// A bounce buffer for `length` bytes in frames that meet `placement`, taken
/// from the platform's budget. `NoResources` when the budget is spent or no
/// frames meet the placement (a device of `address_bits` bits).
pub(crate) fn allocate(
    platform: &dyn DmaPlatform,
    length: u64,
    placement: Constraints,
    address_bits: u8,
) -> Result<BounceBuffer, IoFailure> {
    let pages = length.div_ceil(FRAME_SIZE) as usize;
    let accounting = platform.accounting();
    if !accounting.budget().reserve(pages) {
        let stats = accounting.stats();
        let cause = Cause::BounceBudgetSpent { pages, in_use: stats.pages_in_use, limit: stats.page_limit };
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    // Every byte a device can see through a bounce segment is either filled
    // from the descriptor before the device runs or never copied back, so
    // bounce frames are not zeroed.
    match platform.allocate_frames(pages, placement, FrameFill::Uninitialized) {
        Ok(address) => {
            dma_trace!("  bounce buffer: {pages} page(s) at {:#x}, reachable by the device", address.as_u64());
            Ok(BounceBuffer { address, length, pages })
        }
        Err(error) => {
            accounting.budget().release(pages);
            let cause = match error {
                MemoryError::OutOfMemory | MemoryError::NoContiguousRun => {
                    Cause::NoReachableMemory { pages, address_bits }
                }
                refused => Cause::BounceRequestRefused(refused),
            };
            Err(IoFailure::new(IoReturn::NoResources, cause))
        }
    }
}

/// Gives `buffers` back to the allocator and to the budget. Only for memory
/// no device can reach any more.
pub(crate) fn free(platform: &dyn DmaPlatform, buffers: &[BounceBuffer]) {
    for buffer in buffers {
        platform.free_frames(buffer.address, buffer.pages);
        platform.accounting().budget().release(buffer.pages);
    }
}

/// Cache maintenance on a machine whose DMA does not snoop the CPU's caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Maintenance {
    /// Write the CPU's changes back to memory, before the device reads it.
    Clean,
    /// Drop the CPU's cached copy, before the CPU reads what the device wrote.
    Invalidate,
}

/// A prepared range of a descriptor with the bounce buffers of its bounced pieces.
pub(crate) struct BouncedRange<'a> {
    /// The memory the transfer is for.
    pub(crate) descriptor: &'a IoMemoryDescriptor,
    /// Where the prepared range starts in the descriptor.
    pub(crate) offset: u64,
    /// Where each piece of the range lies: in place or in a bounce buffer.
    pub(crate) layout: &'a Layout,
    /// The bounce buffers the layout's bounced pieces name.
    pub(crate) buffers: &'a [BounceBuffer],
}

impl BouncedRange<'_> {
    /// Cleans or invalidates the memory the device uses for `window` (bytes of
    /// the range, from its start): the bounce buffer's bytes of a bounced piece,
    /// the descriptor's own of a piece used in place. Each piece is physically
    /// contiguous, so one call per piece. `why` is for the trace.
    pub(crate) fn maintain(&self, platform: &dyn DmaPlatform, maintenance: Maintenance, window: Range<u64>, why: &str) {
        let mut total = 0;
        for piece in &self.layout.pieces {
            let first = piece.start.max(window.start);
            let end = piece.start.saturating_add(piece.length).min(window.end);
            if first >= end {
                continue;
            }
            let address = match piece.placement {
                Placement::Direct(address) => PhysAddr::new(address),
                Placement::Bounce { buffer, offset } => self.buffers[buffer].address + offset,
            } + (first - piece.start);
            match maintenance {
                Maintenance::Clean => platform.clean_for_device(address, end - first),
                Maintenance::Invalidate => platform.invalidate_for_cpu(address, end - first),
            }
            total += end - first;
        }
        if total > 0 {
            let what = if maintenance == Maintenance::Clean { "clean" } else { "invalidate" };
            dma_trace!("  cache {what}: {total} bytes the device uses ({why})");
        }
    }

    /// Copies the bounced pieces of `window` (bytes of the range, from its
    /// start): descriptor -> bounce (`Out`, towards the device) or bounce ->
    /// descriptor (`In`, from the device). `why` is for the trace. Returns the
    /// bytes copied, as the statistics counted them.
    pub(crate) fn copy(&self, platform: &dyn DmaPlatform, way: IoDirection, window: Range<u64>, why: &str) -> u64 {
        let mut total = 0;
        for piece in &self.layout.pieces {
            let Placement::Bounce { buffer, offset } = piece.placement else {
                continue;
            };
            // The part of the piece inside the window.
            let first = piece.start.max(window.start);
            let end = piece.start.saturating_add(piece.length).min(window.end);
            if first >= end {
                continue;
            }
            let length = end - first;
            let bounce: PhysAddr = self.buffers[buffer].address + offset + (first - piece.start);
            let start = self.offset + first;
            let copied = self.descriptor.for_each_run(start, length, |position, physical, run| {
                let bounce = bounce + (position - start);
                // SAFETY: `physical` is part of the prepared descriptor and `bounce` part
                // of this command's own bounce buffer; they cannot overlap (bounce
                // frames come from the allocator) and nobody else copies them now.
                unsafe {
                    match way {
                        IoDirection::Out => platform.copy_physical(bounce, physical, run),
                        _ => platform.copy_physical(physical, bounce, run),
                    }
                }
            });
            // The prepared range was resolved page by page at prepare and the
            // descriptor cannot change its ranges, so the walk cannot fail.
            debug_assert!(copied.is_ok(), "a prepared range stopped resolving");
            total += length;
        }
        if total > 0 {
            platform.accounting().statistics().count_copy(way, total);
            let arrow = if way == IoDirection::Out { "descriptor -> bounce" } else { "bounce -> descriptor" };
            dma_trace!("  copy {arrow}: {total} bytes ({why})");
        }
        total
    }
}
