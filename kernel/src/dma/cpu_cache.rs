//! A model of the CPU's write-back cache for a machine whose DMA does not snoop
//! it: a second copy of the pages the CPU touched, in front of the memory the
//! devices see. The simulated non-coherent machine puts it in front of its
//! simulated RAM; the kernel, booted with `dma.coherence=noncoherent`, in front
//! of the real RAM QEMU's devices read and write, so that x86 behaves as a
//! machine without DMA snooping would.
//!
//! It holds whole pages and tracks which bytes the CPU changed (dirty), byte by
//! byte. A real cache works in lines (64 bytes on x86 and on most ARM cores):
//! there a clean or an invalidate always covers whole lines, so an invalidate
//! of a buffer that shares a line with other data drops the CPU's unwritten
//! changes to that data too, and a clean writes the neighbours' dirty bytes over
//! whatever a device put there. That is why Linux wants DMA buffers aligned to
//! the cache line (`ARCH_DMA_MINALIGN`). This model does not show that
//! sharing: it cleans and invalidates exactly the bytes asked for.
//!
//! Lines are never evicted on their own: a CPU change reaches RAM only when it
//! is cleaned, and a stale copy stays until it is invalidated, which is the
//! worst case a driver must be written for.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};

use crate::memory::FRAME_SIZE;

/// Bytes in a page.
const PAGE: usize = FRAME_SIZE as usize;

/// The memory behind the cache: what the devices read and write.
pub(crate) trait Backing {
    /// Copies `destination.len()` bytes from `address`.
    fn read(&self, address: u64, destination: &mut [u8]);
    /// Copies `source` to `address`.
    fn write(&mut self, address: u64, source: &[u8]);
}

/// Calls `visit(page, offset, length)` for each page of `[address, address + length)`.
pub(crate) fn for_each_page(address: u64, length: u64, mut visit: impl FnMut(u64, usize, usize)) {
    let mut position = address;
    let end = address + length;
    while position < end {
        let offset = position % FRAME_SIZE;
        let run = (FRAME_SIZE - offset).min(end - position);
        visit(position / FRAME_SIZE, offset as usize, run as usize);
        position += run;
    }
}

/// One cached page: the CPU's copy and which of its bytes the CPU changed.
struct CachedPage {
    bytes: Box<[u8; PAGE]>,
    dirty: Box<[bool; PAGE]>,
}

impl CachedPage {
    /// The page as RAM holds it now, nothing dirty.
    fn load(ram: &impl Backing, page: u64) -> CachedPage {
        let mut bytes = Box::new([0; PAGE]);
        ram.read(page * PAGE as u64, &mut bytes[..]);
        CachedPage { bytes, dirty: Box::new([false; PAGE]) }
    }
}

/// The CPU's cache, and the pages it does not cache.
#[derive(Default)]
pub(crate) struct Cache {
    pages: BTreeMap<u64, CachedPage>,
    /// Pages mapped uncached (memory shared with a device for its life): the
    /// CPU reads and writes RAM directly.
    uncached: BTreeSet<u64>,
}

impl Cache {
    /// A CPU read: from the cache, loading a page from RAM on first touch.
    pub(crate) fn read(&mut self, ram: &impl Backing, address: u64, destination: &mut [u8]) {
        let mut done = 0;
        for_each_page(address, destination.len() as u64, |page, offset, run| {
            let target = &mut destination[done..done + run];
            if self.uncached.contains(&page) {
                ram.read(page * PAGE as u64 + offset as u64, target);
            } else {
                let cached = self.pages.entry(page).or_insert_with(|| CachedPage::load(ram, page));
                target.copy_from_slice(&cached.bytes[offset..offset + run]);
            }
            done += run;
        });
    }

    /// A CPU write: into the cache (loading the page first, as a write-allocate
    /// cache does), where it stays until cleaned.
    pub(crate) fn write(&mut self, ram: &mut impl Backing, address: u64, source: &[u8]) {
        let mut done = 0;
        for_each_page(address, source.len() as u64, |page, offset, run| {
            let bytes = &source[done..done + run];
            if self.uncached.contains(&page) {
                ram.write(page * PAGE as u64 + offset as u64, bytes);
            } else {
                let cached = self.pages.entry(page).or_insert_with(|| CachedPage::load(ram, page));
                cached.bytes[offset..offset + run].copy_from_slice(bytes);
                cached.dirty[offset..offset + run].fill(true);
            }
            done += run;
        });
    }

    /// Writes the dirty cached bytes of the range back to RAM; they stay cached.
    pub(crate) fn clean(&mut self, ram: &mut impl Backing, address: u64, length: u64) {
        for_each_page(address, length, |page, offset, run| {
            let Some(cached) = self.pages.get_mut(&page) else {
                return;
            };
            // Runs of dirty bytes, each written back in one copy.
            let mut index = offset;
            while index < offset + run {
                if !cached.dirty[index] {
                    index += 1;
                    continue;
                }
                let start = index;
                while index < offset + run && cached.dirty[index] {
                    cached.dirty[index] = false;
                    index += 1;
                }
                ram.write(page * PAGE as u64 + start as u64, &cached.bytes[start..index]);
            }
        });
    }

    /// Reloads the cached bytes of the range from RAM, dropping CPU changes not
    /// cleaned.
    pub(crate) fn invalidate(&mut self, ram: &impl Backing, address: u64, length: u64) {
        for_each_page(address, length, |page, offset, run| {
            let Some(cached) = self.pages.get_mut(&page) else {
                return;
            };
            ram.read(page * PAGE as u64 + offset as u64, &mut cached.bytes[offset..offset + run]);
            cached.dirty[offset..offset + run].fill(false);
        });
    }

    /// The CPU bypasses the cache for the pages of the range from now on.
    pub(crate) fn set_uncached(&mut self, ram: &mut impl Backing, address: u64, length: u64) {
        self.clean(ram, address, length);
        for_each_page(address, length, |page, _, _| {
            self.pages.remove(&page);
            self.uncached.insert(page);
        });
    }

    /// Forgets the pages of frames allocated or freed: no cached copy, and
    /// cached again.
    pub(crate) fn forget(&mut self, address: u64, length: u64) {
        for_each_page(address, length, |page, _, _| {
            self.pages.remove(&page);
            self.uncached.remove(&page);
        });
    }

    /// Whether the CPU holds a copy of the byte at `address`.
    pub(crate) fn holds(&self, address: u64) -> bool {
        self.pages.contains_key(&(address / PAGE as u64))
    }
}
