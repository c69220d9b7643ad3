//! The real machine under the DMA layer: the kernel's frame allocator, its page
//! tables, and copies through the physical-memory map.

use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::platform::{DmaPlatform, FrameFill};
use crate::memory::copy::{copy_bytes, zero_bytes};
use crate::memory::{Constraints, FRAME_SIZE, MemoryError, paging, physical};

/// The default bounce budget: 16 MiB (Linux's swiotlb defaults to 64 MiB).
pub const DEFAULT_BOUNCE_PAGES: usize = 4096;

/// The kernel's DMA platform.
pub struct KernelPlatform {
    accounting: Accounting,
}

static PLATFORM: KernelPlatform = KernelPlatform { accounting: Accounting::new(DEFAULT_BOUNCE_PAGES) };

/// The kernel's DMA platform, for descriptors and commands.
pub fn platform() -> &'static KernelPlatform {
    &PLATFORM
}

// SAFETY: translation asks the live page tables; frames come from the kernel's
// frame allocator; copies go through the physical map, which covers all RAM.
unsafe impl DmaPlatform for KernelPlatform {
    fn translate(&self, address: VirtAddr) -> Option<PhysAddr> {
        paging::translate(address)
    }

    fn allocate_frames(
        &self,
        count: usize,
        constraints: Constraints,
        fill: FrameFill,
    ) -> Result<PhysAddr, MemoryError> {
        let first = physical::allocate_contiguous(count, constraints)?;
        let address = first.start_address();
        if fill == FrameFill::Zeroed {
            // SAFETY: the frames were just allocated to us and are mapped in the physical map.
            unsafe { zero_bytes(physical::to_virtual(address).as_mut_ptr::<u8>(), count * FRAME_SIZE as usize) };
        }
        Ok(address)
    }

    fn free_frames(&self, first: PhysAddr, count: usize) {
        let frame = x86_64::structures::paging::PhysFrame::containing_address(first);
        if let Err(error) = physical::free_contiguous(frame, count) {
            log::error!("DMA: freeing {count} frames at {:#x}: {error}", first.as_u64());
        }
    }

    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]) {
        let from = physical::to_virtual(source).as_ptr::<u8>();
        // SAFETY: the caller owns the source range; it is mapped by the physical map
        // and cannot overlap `destination`, a Rust slice the caller holds exclusively.
        unsafe { copy_bytes(destination.as_mut_ptr(), from, destination.len()) };
    }

    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]) {
        let to = physical::to_virtual(destination).as_mut_ptr::<u8>();
        // SAFETY: the caller owns the destination range and may overwrite it.
        unsafe { copy_bytes(to, source.as_ptr(), source.len()) };
    }

    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64) {
        let from = physical::to_virtual(source).as_ptr::<u8>();
        let to = physical::to_virtual(destination).as_mut_ptr::<u8>();
        // SAFETY: the caller owns both ranges and guarantees they do not overlap.
        unsafe { copy_bytes(to, from, length as usize) };
    }

    fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        if length == 0 {
            return;
        }
        let start = physical::to_virtual(address).as_u64();
        let end = start.saturating_add(length);
        // SAFETY: `mfence` only orders memory accesses; it reads and writes nothing.
        // It makes the stores being flushed globally visible before the flushes.
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
        let mut line = start & !(CACHE_LINE - 1);
        while line < end {
            // SAFETY: `clflush` writes a cache line back to memory and drops it
            // from the caches; it changes no byte as any reader sees it. The line
            // lies in the physical-memory map, which maps all RAM; an address
            // outside it would page-fault (a panic), never corrupt memory. The asm
            // is not `nomem`, so the compiler keeps earlier stores before it.
            unsafe { core::arch::asm!("clflush [{line}]", line = in(reg) line, options(nostack, preserves_flags)) };
            line += CACHE_LINE;
        }
        // SAFETY: as above; here it makes the flushes complete before whatever the
        // caller does next (an MMIO write telling the unit to look).
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    }
}

/// The smallest cache line of any x86_64 processor: flushing every 64 bytes
/// reaches every line of the range whatever the real line size (CPUID's
/// `clflush` line size is 64 on every x86_64 so far).
const CACHE_LINE: u64 = 64;
