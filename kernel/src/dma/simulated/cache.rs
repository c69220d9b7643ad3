//! The CPU's write-back cache on the simulated non-coherent machine: a second
//! map of pages in front of the simulated RAM, which the CPU reads and writes
//! and the fake devices never see.
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

use super::{PAGE, Ram, for_each_page, ram_read, ram_write};

/// One cached page: the CPU's copy and which of its bytes the CPU changed.
struct CachedPage {
    bytes: Box<[u8; PAGE]>,
    dirty: Box<[bool; PAGE]>,
}

impl CachedPage {
    /// The page as RAM holds it now, nothing dirty.
    fn load(ram: &Ram, page: u64) -> CachedPage {
        let mut bytes = Box::new([0; PAGE]);
        ram_read(ram, page * PAGE as u64, &mut bytes[..]);
        CachedPage { bytes, dirty: Box::new([false; PAGE]) }
    }
}

/// The CPU's cache, and the pages it does not cache.
#[derive(Default)]
pub(super) struct Cache {
    pages: BTreeMap<u64, CachedPage>,
    /// Pages mapped uncached (memory shared with a device for its life): the
    /// CPU reads and writes RAM directly.
    uncached: BTreeSet<u64>,
}

impl Cache {
    /// A CPU read: from the cache, loading a page from RAM on first touch.
    pub(super) fn read(&mut self, ram: &Ram, address: u64, destination: &mut [u8]) {
        let mut done = 0;
        for_each_page(address, destination.len() as u64, |page, offset, run| {
            let target = &mut destination[done..done + run];
            if self.uncached.contains(&page) {
                ram_read(ram, page * PAGE as u64 + offset as u64, target);
            } else {
                let cached = self.pages.entry(page).or_insert_with(|| CachedPage::load(ram, page));
                target.copy_from_slice(&cached.bytes[offset..offset + run]);
            }
            done += run;
        });
    }

    /// A CPU write: into the cache (loading the page first, as a write-allocate
    /// cache does), where it stays until cleaned.
    pub(super) fn write(&mut self, ram: &mut Ram, address: u64, source: &[u8]) {
        let mut done = 0;
        for_each_page(address, source.len() as u64, |page, offset, run| {
            let bytes = &source[done..done + run];
            if self.uncached.contains(&page) {
                ram_write(ram, page * PAGE as u64 + offset as u64, bytes);
            } else {
                let cached = self.pages.entry(page).or_insert_with(|| CachedPage::load(ram, page));
                cached.bytes[offset..offset + run].copy_from_slice(bytes);
                cached.dirty[offset..offset + run].fill(true);
            }
            done += run;
        });
    }

    /// Writes the dirty cached bytes of the range back to RAM; they stay cached.
    pub(super) fn clean(&mut self, ram: &mut Ram, address: u64, length: u64) {
        for_each_page(address, length, |page, offset, run| {
            let Some(cached) = self.pages.get_mut(&page) else {
                return;
            };
            let memory = ram.entry(page).or_insert_with(|| Box::new([0; PAGE]));
            for index in offset..offset + run {
                if cached.dirty[index] {
                    memory[index] = cached.bytes[index];
                    cached.dirty[index] = false;
                }
            }
        });
    }

    /// Reloads the cached bytes of the range from RAM, dropping CPU changes not
    /// cleaned.
    pub(super) fn invalidate(&mut self, ram: &Ram, address: u64, length: u64) {
        for_each_page(address, length, |page, offset, run| {
            let Some(cached) = self.pages.get_mut(&page) else {
                return;
            };
            ram_read(ram, page * PAGE as u64 + offset as u64, &mut cached.bytes[offset..offset + run]);
            cached.dirty[offset..offset + run].fill(false);
        });
    }

    /// The CPU bypasses the cache for the pages of the range from now on.
    pub(super) fn set_uncached(&mut self, ram: &mut Ram, address: u64, length: u64) {
        self.clean(ram, address, length);
        for_each_page(address, length, |page, _, _| {
            self.pages.remove(&page);
            self.uncached.insert(page);
        });
    }

    /// Forgets the pages of frames allocated or freed: no cached copy, and
    /// cached again.
    pub(super) fn forget(&mut self, address: u64, length: u64) {
        for_each_page(address, length, |page, _, _| {
            self.pages.remove(&page);
            self.uncached.remove(&page);
        });
    }

    /// Whether the CPU holds a copy of the byte at `address`.
    pub(super) fn holds(&self, address: u64) -> bool {
        self.pages.contains_key(&(address / PAGE as u64))
    }
}
