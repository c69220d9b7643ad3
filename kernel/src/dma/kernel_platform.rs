//! The real machine under the DMA layer: the kernel's frame allocator, its page
//! tables, and copies through the physical-memory map.
//!
//! Booted with `dma.coherence=noncoherent`, it plays a machine whose DMA does
//! not snoop the CPU's caches: the CPU's copies (`read_physical`,
//! `write_physical`, `copy_physical`: every descriptor access and bounce copy)
//! go through a model of a write-back cache ([`super::cpu_cache`]), while
//! QEMU's devices read and write RAM. Data crosses only where the DMA layer
//! cleans or invalidates, as on a machine without snooping; a driver that
//! forgets a synchronize reads stale bytes even where nothing is bounced.

use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::cpu_cache::{Backing, Cache};
use super::platform::{Coherence, DmaPlatform, FrameFill};
use crate::memory::copy::{copy_bytes, zero_bytes};
use crate::memory::{Constraints, FRAME_SIZE, MemoryError, paging, physical};

/// The default bounce budget: 16 MiB (Linux's swiotlb defaults to 64 MiB).
pub const DEFAULT_BOUNCE_PAGES: usize = 4096;

/// The kernel's DMA platform.
pub struct KernelPlatform {
    accounting: Accounting,
    /// Whether it plays a machine whose DMA does not snoop (`dma.coherence=`).
    noncoherent: AtomicBool,
    /// The CPU's cache as the non-coherent machine has it; empty otherwise.
    cache: Mutex<Option<Cache>>,
}

static PLATFORM: KernelPlatform = KernelPlatform {
    accounting: Accounting::new(DEFAULT_BOUNCE_PAGES),
    noncoherent: AtomicBool::new(false),
    cache: Mutex::new(None),
};

/// Makes the kernel's platform play a machine whose DMA does not snoop the
/// CPU's caches (boot option `dma.coherence=noncoherent`). Call it at boot,
/// before any DMA memory is allocated.
pub fn play_noncoherent() {
    *PLATFORM.cache.lock() = Some(Cache::default());
    PLATFORM.noncoherent.store(true, Ordering::Release);
}

/// RAM, through the physical-memory map: what QEMU's devices read and write.
struct Ram;

impl Backing for Ram {
    fn read(&self, address: u64, destination: &mut [u8]) {
        let from = physical::to_virtual(PhysAddr::new(address)).as_ptr::<u8>();
        // SAFETY: the cache reads only pages the DMA layer handed to the CPU's
        // copies (memory it owns, mapped by the physical map); `destination` is
        // the cache's own page, which cannot overlap RAM.
        unsafe { copy_bytes(destination.as_mut_ptr(), from, destination.len()) };
    }

    fn write(&mut self, address: u64, source: &[u8]) {
        let to = physical::to_virtual(PhysAddr::new(address)).as_mut_ptr::<u8>();
        // SAFETY: the cache writes back only bytes the CPU wrote through
        // `write_physical` or `copy_physical`, whose callers own them; a frame
        // freed since was forgotten by the cache, so nothing goes to memory
        // that changed hands.
        unsafe { copy_bytes(to, source.as_ptr(), source.len()) };
    }
}

impl KernelPlatform {
    /// Runs `work` on the cache, if the platform plays a non-coherent machine.
    fn with_cache(&self, work: impl FnOnce(&mut Cache)) -> bool {
        if !self.noncoherent.load(Ordering::Acquire) {
            return false;
        }
        match self.cache.lock().as_mut() {
            Some(cache) => {
                work(cache);
                true
            }
            None => false,
        }
    }
}

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
        // A fresh frame has no cached copy (nor did the previous owner's count).
        self.with_cache(|cache| cache.forget(address.as_u64(), count as u64 * FRAME_SIZE));
        if fill == FrameFill::Zeroed {
            // SAFETY: the frames were just allocated to us and are mapped in the physical map.
            unsafe { zero_bytes(physical::to_virtual(address).as_mut_ptr::<u8>(), count * FRAME_SIZE as usize) };
        }
        Ok(address)
    }

    fn free_frames(&self, first: PhysAddr, count: usize) {
        self.with_cache(|cache| cache.forget(first.as_u64(), count as u64 * FRAME_SIZE));
        let frame = x86_64::structures::paging::PhysFrame::containing_address(first);
        if let Err(error) = physical::free_contiguous(frame, count) {
            log::error!("DMA: freeing {count} frames at {:#x}: {error}", first.as_u64());
        }
    }

    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]) {
        if self.with_cache(|cache| cache.read(&Ram, source.as_u64(), destination)) {
            return;
        }
        let from = physical::to_virtual(source).as_ptr::<u8>();
        // SAFETY: the caller owns the source range; it is mapped by the physical map
        // and cannot overlap `destination`, a Rust slice the caller holds exclusively.
        unsafe { copy_bytes(destination.as_mut_ptr(), from, destination.len()) };
    }

    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]) {
        if self.with_cache(|cache| cache.write(&mut Ram, destination.as_u64(), source)) {
            return;
        }
        let to = physical::to_virtual(destination).as_mut_ptr::<u8>();
        // SAFETY: the caller owns the destination range and may overwrite it.
        unsafe { copy_bytes(to, source.as_ptr(), source.len()) };
    }

    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64) {
        let copied = self.with_cache(|cache| {
            let mut bytes = alloc::vec![0; length as usize];
            cache.read(&Ram, source.as_u64(), &mut bytes);
            cache.write(&mut Ram, destination.as_u64(), &bytes);
        });
        if copied {
            return;
        }
        let from = physical::to_virtual(source).as_ptr::<u8>();
        let to = physical::to_virtual(destination).as_mut_ptr::<u8>();
        // SAFETY: the caller owns both ranges and guarantees they do not overlap.
        unsafe { copy_bytes(to, from, length as usize) };
    }

    unsafe fn read_as_device(&self, source: PhysAddr, destination: &mut [u8]) {
        // RAM, whatever the CPU's cache (played or not) holds.
        Ram.read(source.as_u64(), destination);
    }

    unsafe fn write_as_device(&self, destination: PhysAddr, source: &[u8]) {
        Ram.write(destination.as_u64(), source);
    }

    fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    fn coherence(&self) -> Coherence {
        match self.noncoherent.load(Ordering::Acquire) {
            true => Coherence::NonCoherent,
            false => Coherence::Coherent,
        }
    }

    fn clean_for_device(&self, address: PhysAddr, length: u64) {
        self.with_cache(|cache| cache.clean(&mut Ram, address.as_u64(), length));
    }

    fn invalidate_for_cpu(&self, address: PhysAddr, length: u64) {
        self.with_cache(|cache| cache.invalidate(&Ram, address.as_u64(), length));
    }

    fn set_uncached(&self, first: PhysAddr, length: u64) {
        self.with_cache(|cache| cache.set_uncached(&mut Ram, first.as_u64(), length));
    }

    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        if length == 0 {
            return;
        }
        // On the played non-coherent machine the model's lines are written back
        // and dropped first, as `clflush` does to the real ones below.
        self.with_cache(|cache| {
            cache.clean(&mut Ram, address.as_u64(), length);
            cache.invalidate(&Ram, address.as_u64(), length);
        });
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
