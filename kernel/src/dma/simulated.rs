//! A simulated machine for host tests: "physical" memory as a map of pages, part
//! of it above 4 GiB, with the real frame allocator managing it and a small page
//! table for kernel virtual addresses.
//!
//! Drivers' fake devices use it too: a fake device reads and writes only through
//! the segments a command gives it, so data reaches the descriptor only if the
//! driver bounced and synchronized correctly.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;

use spin::Mutex;
use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::platform::{DmaPlatform, FrameFill};
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

/// A simulated machine.
pub struct SimulatedPlatform {
    pages: Mutex<BTreeMap<u64, Box<[u8; FRAME_SIZE as usize]>>>,
    frames: Mutex<FrameAllocator<'static>>,
    page_table: Mutex<BTreeMap<u64, u64>>,
    accounting: Accounting,
}

impl SimulatedPlatform {
    /// A machine with [`SIMULATED_RAM`] and a bounce budget of `bounce_pages`,
    /// leaked so that descriptors and commands can keep a `'static` reference (each
    /// test makes its own).
    pub fn leak(bounce_pages: usize) -> &'static SimulatedPlatform {
        let usable = SIMULATED_RAM.map(|(start, end)| (PhysAddr::new(start), PhysAddr::new(end)));
        let storage = vec![0u64; FrameAllocator::storage_words(&usable)].leak();
        let frames = FrameAllocator::new(&usable, storage).expect("storage sized by storage_words");
        Box::leak(Box::new(SimulatedPlatform {
            pages: Mutex::new(BTreeMap::new()),
            frames: Mutex::new(frames),
            page_table: Mutex::new(BTreeMap::new()),
            accounting: Accounting::new(bounce_pages),
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

    /// Calls `visit(page, offset, length)` for each page of `[address, address + length)`.
    fn for_each_page(address: u64, length: u64, mut visit: impl FnMut(u64, usize, usize)) {
        let mut position = address;
        let end = address + length;
        while position < end {
            let offset = position % FRAME_SIZE;
            let run = (FRAME_SIZE - offset).min(end - position);
            visit(position / FRAME_SIZE, offset as usize, run as usize);
            position += run;
        }
    }

    /// Reads simulated physical memory (what a fake device does through a segment).
    pub fn device_read(&self, address: u64, destination: &mut [u8]) {
        let pages = self.pages.lock();
        let mut done = 0;
        Self::for_each_page(address, destination.len() as u64, |page, offset, run| {
            let target = &mut destination[done..done + run];
            match pages.get(&page) {
                Some(bytes) => target.copy_from_slice(&bytes[offset..offset + run]),
                None => target.fill(0),
            }
            done += run;
        });
    }

    /// Writes simulated physical memory (what a fake device does through a segment).
    pub fn device_write(&self, address: u64, source: &[u8]) {
        let mut pages = self.pages.lock();
        let mut done = 0;
        Self::for_each_page(address, source.len() as u64, |page, offset, run| {
            let bytes = pages.entry(page).or_insert_with(|| Box::new([0; FRAME_SIZE as usize]));
            bytes[offset..offset + run].copy_from_slice(&source[done..done + run]);
            done += run;
        });
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
        // Not zeroed: stale garbage, so a missing fill shows up in tests.
        let fill = if fill == FrameFill::Zeroed { 0 } else { STALE_BYTE };
        self.device_write(address.as_u64(), &vec![fill; count * FRAME_SIZE as usize]);
        Ok(address)
    }

    fn free_frames(&self, first: PhysAddr, count: usize) {
        let frame = x86_64::structures::paging::PhysFrame::containing_address(first);
        // A double free here is a bug in the DMA layer: fail the test loudly.
        self.frames.lock().free_contiguous(frame, count).expect("simulated double free");
    }

    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]) {
        self.device_read(source.as_u64(), destination);
    }

    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]) {
        self.device_write(destination.as_u64(), source);
    }

    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64) {
        let mut bytes = vec![0; length as usize];
        self.device_read(source.as_u64(), &mut bytes);
        self.device_write(destination.as_u64(), &bytes);
    }

    fn accounting(&self) -> &Accounting {
        &self.accounting
    }
}
