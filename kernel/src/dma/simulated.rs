//! A simulated machine for host tests: "physical" memory as a map of pages, part
//! of it above 4 GiB, with the real frame allocator managing it and a small page
//! table for kernel virtual addresses.
//!
//! Drivers' fake devices use it too: a fake device reads and writes only through
//! the segments a command gives it, so data reaches the descriptor only if the
//! driver bounced and synchronized correctly.
//!
//! The machine is coherent ([`SimulatedPlatform::leak`]), as x86 is, or not
//! ([`SimulatedPlatform::leak_noncoherent`]), as most ARM SoCs are: then the
//! CPU sees memory through a write-back cache the devices do not snoop
//! (`simulated/cache.rs`), and bytes move between the two views only where the
//! DMA layer cleans or invalidates, so a driver that forgets a synchronize reads
//! stale bytes without any bounce buffer in play.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;

use spin::Mutex;
use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::cpu_cache::{Backing, Cache, for_each_page};
use super::platform::{Coherence, DmaPlatform, FrameFill};
use crate::memory::{Constraints, FRAME_SIZE, FrameAllocator, MemoryError};

/// 1 MiB.
const MIB: u64 = 1 << 20;

/// The simulated RAM: 15 MiB in the DMA zone, 32 MiB in DMA32 and 64 MiB above
/// 4 GiB, where a 32-bit device cannot reach.
pub const SIMULATED_RAM: [(u64, u64); 3] =
    [(MIB, 16 * MIB), (16 * MIB, 48 * MIB), ((1 << 32) + 64 * MIB, (1 << 32) + 128 * MIB)];

/// What uninitialized simulated frames hold: a byte a test can recognise when
/// stale memory leaks into a buffer.
pub const STALE_BYTE: u8 = 0xde;

/// Bytes in a page.
const PAGE: usize = FRAME_SIZE as usize;

/// The simulated RAM, page by page: what the devices see. A page never
/// written reads as zeroes.
type Ram = BTreeMap<u64, Box<[u8; PAGE]>>;

/// A simulated machine.
pub struct SimulatedPlatform {
    pages: Mutex<Ram>,
    frames: Mutex<FrameAllocator<'static>>,
    page_table: Mutex<BTreeMap<u64, u64>>,
    accounting: Accounting,
    /// The CPU's cache on a non-coherent machine; `None` on a coherent one,
    /// whose CPU reads and writes RAM as the devices do. Locked before `pages`.
    cache: Option<Mutex<Cache>>,
}

impl SimulatedPlatform {
    /// A machine with [`SIMULATED_RAM`] and a bounce budget of `bounce_pages`,
    /// leaked so that descriptors and commands can keep a `'static` reference (each
    /// test makes its own).
    pub fn leak(bounce_pages: usize) -> &'static SimulatedPlatform {
        Self::leak_with(bounce_pages, Coherence::Coherent)
    }

    /// As [`SimulatedPlatform::leak`], but a machine whose DMA does not snoop the
    /// CPU's caches. RAM is what [`SimulatedPlatform::device_read`] and
    /// [`SimulatedPlatform::device_write`] touch; the CPU (`read_physical`,
    /// `write_physical`, `copy_physical`, so every descriptor's `read_bytes` and
    /// `write_bytes` and every bounce copy) sees RAM through a write-back cache
    /// that loads a page on the CPU's first touch. `clean_for_device` writes the
    /// CPU's changes in a range back to RAM; `invalidate_for_cpu` reloads the
    /// range from RAM, dropping changes not cleaned; `flush_for_device` does
    /// both, as x86's `clflush`. Fresh and freed frames have no cached copy;
    /// frames given to `set_uncached` (memory shared with a device for its
    /// life) bypass the cache until freed. The cache works byte by byte, where a
    /// real one works in 64-byte lines: see `simulated/cache.rs` for what that
    /// hides.
    pub fn leak_noncoherent(bounce_pages: usize) -> &'static SimulatedPlatform {
        Self::leak_with(bounce_pages, Coherence::NonCoherent)
    }

    fn leak_with(bounce_pages: usize, coherence: Coherence) -> &'static SimulatedPlatform {
        let usable = SIMULATED_RAM.map(|(start, end)| (PhysAddr::new(start), PhysAddr::new(end)));
        let storage = vec![0u64; FrameAllocator::storage_words(&usable)].leak();
        let frames = FrameAllocator::new(&usable, storage).expect("storage sized by storage_words");
        let cache = match coherence {
            Coherence::Coherent => None,
            Coherence::NonCoherent => Some(Mutex::new(Cache::default())),
        };
        Box::leak(Box::new(SimulatedPlatform {
            pages: Mutex::new(BTreeMap::new()),
            frames: Mutex::new(frames),
            page_table: Mutex::new(BTreeMap::new()),
            accounting: Accounting::new(bounce_pages),
            cache,
        }))
    }

    /// Maps the virtual page containing `virtual_address` to the frame at `physical`.
    pub fn map(&self, virtual_address: VirtAddr, physical: PhysAddr) {
        self.page_table.lock().insert(virtual_address.as_u64() / FRAME_SIZE, physical.as_u64() / FRAME_SIZE);
    }

    /// Frames free in the simulated frame allocator.
    pub fn free_frames_count(&self) -> usize {
        self.frames.lock().free_frames()
    }

    /// Whether the frame holding `address` is allocated (to a buffer, a bounce
    /// buffer, a ring): fake devices check it before every write, so a driver
    /// that frees memory a device may still write fails its test.
    pub fn is_allocated(&self, address: u64) -> bool {
        let frame = x86_64::structures::paging::PhysFrame::containing_address(PhysAddr::new(address));
        !self.frames.lock().is_free(frame)
    }

    /// Reads simulated physical memory (what a fake device does through a segment).
    pub fn device_read(&self, address: u64, destination: &mut [u8]) {
        ram_read(&self.pages.lock(), address, destination);
    }

    /// Writes simulated physical memory (what a fake device does through a segment).
    pub fn device_write(&self, address: u64, source: &[u8]) {
        ram_write(&mut self.pages.lock(), address, source);
    }

    /// Whether the CPU's cache holds a copy of the byte at `address` (always
    /// `false` on a coherent machine, which models no cache).
    pub fn is_cached(&self, address: u64) -> bool {
        self.cache.as_ref().is_some_and(|cache| cache.lock().holds(address))
    }

    /// Runs `work` on the cache and RAM of a non-coherent machine; `false`
    /// (nothing run) on a coherent one.
    fn with_cache(&self, work: impl FnOnce(&mut Cache, &mut Ram)) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        let mut cache = cache.lock();
        work(&mut cache, &mut self.pages.lock());
        true
    }
}

/// Copies RAM from `address` into `destination`.
fn ram_read(ram: &Ram, address: u64, destination: &mut [u8]) {
    let mut done = 0;
    for_each_page(address, destination.len() as u64, |page, offset, run| {
        let target = &mut destination[done..done + run];
        match ram.get(&page) {
            Some(bytes) => target.copy_from_slice(&bytes[offset..offset + run]),
            None => target.fill(0),
        }
        done += run;
    });
}

/// Copies `source` into RAM at `address`.
fn ram_write(ram: &mut Ram, address: u64, source: &[u8]) {
    let mut done = 0;
    for_each_page(address, source.len() as u64, |page, offset, run| {
        let bytes = ram.entry(page).or_insert_with(|| Box::new([0; PAGE]));
        bytes[offset..offset + run].copy_from_slice(&source[done..done + run]);
        done += run;
    });
}

impl Backing for Ram {
    fn read(&self, address: u64, destination: &mut [u8]) {
        ram_read(self, address, destination);
    }

    fn write(&mut self, address: u64, source: &[u8]) {
        ram_write(self, address, source);
    }
}

// SAFETY: the simulated memory is plain heap memory behind a lock; frames come from
// a real frame allocator; copies copy exactly the bytes asked for.
unsafe impl DmaPlatform for SimulatedPlatform {
    fn translate(&self, address: VirtAddr) -> Option<PhysAddr> {
        let frame = *self.page_table.lock().get(&(address.as_u64() / FRAME_SIZE))?;
        Some(PhysAddr::new(frame * FRAME_SIZE + address.as_u64() % FRAME_SIZE))
    }

    fn allocate_frames(
        &self,
        count: usize,
        constraints: Constraints,
        fill: FrameFill,
    ) -> Result<PhysAddr, MemoryError> {
        let first = self.frames.lock().allocate_contiguous(count, constraints)?;
        let address = first.start_address();
        let length = count as u64 * FRAME_SIZE;
        self.with_cache(|cache, _| cache.forget(address.as_u64(), length));
        // Not zeroed: stale garbage, so a missing fill shows up in tests.
        let fill = if fill == FrameFill::Zeroed { 0 } else { STALE_BYTE };
        self.device_write(address.as_u64(), &vec![fill; count * FRAME_SIZE as usize]);
        Ok(address)
    }

    fn free_frames(&self, first: PhysAddr, count: usize) {
        self.with_cache(|cache, _| cache.forget(first.as_u64(), count as u64 * FRAME_SIZE));
        let frame = x86_64::structures::paging::PhysFrame::containing_address(first);
        // A double free here is a bug in the DMA layer: fail the test loudly.
        self.frames.lock().free_contiguous(frame, count).expect("simulated double free");
    }

    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]) {
        if !self.with_cache(|cache, ram| cache.read(ram, source.as_u64(), destination)) {
            self.device_read(source.as_u64(), destination);
        }
    }

    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]) {
        if !self.with_cache(|cache, ram| cache.write(ram, destination.as_u64(), source)) {
            self.device_write(destination.as_u64(), source);
        }
    }

    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64) {
        let mut bytes = vec![0; length as usize];
        // SAFETY: forwarded from the caller, who owns both ranges.
        unsafe {
            self.read_physical(source, &mut bytes);
            self.write_physical(destination, &bytes);
        }
    }

    unsafe fn read_as_device(&self, source: PhysAddr, destination: &mut [u8]) {
        self.device_read(source.as_u64(), destination);
    }

    unsafe fn write_as_device(&self, destination: PhysAddr, source: &[u8]) {
        self.device_write(destination.as_u64(), source);
    }

    fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        // `clflush`: written back, then dropped (the next read comes from RAM).
        self.with_cache(|cache, ram| {
            cache.clean(ram, address.as_u64(), length);
            cache.invalidate(ram, address.as_u64(), length);
        });
    }

    fn coherence(&self) -> Coherence {
        match self.cache {
            None => Coherence::Coherent,
            Some(_) => Coherence::NonCoherent,
        }
    }

    fn clean_for_device(&self, address: PhysAddr, length: u64) {
        self.with_cache(|cache, ram| cache.clean(ram, address.as_u64(), length));
    }

    fn invalidate_for_cpu(&self, address: PhysAddr, length: u64) {
        self.with_cache(|cache, ram| cache.invalidate(ram, address.as_u64(), length));
    }

    fn set_uncached(&self, first: PhysAddr, length: u64) {
        self.with_cache(|cache, ram| cache.set_uncached(ram, first.as_u64(), length));
    }
}
