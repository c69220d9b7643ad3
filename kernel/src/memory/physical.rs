//! The kernel's physical memory: the global frame allocator and the mapping of
//! all physical memory at `physical_memory_offset`.

use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::{Constraints, FRAME_SIZE, FrameAllocator, MemoryError, ZoneStats};

/// At most this many usable regions are taken from the boot memory map.
const MAX_USABLE_REGIONS: usize = 64;

static PHYSICAL_MEMORY_OFFSET: AtomicU64 = AtomicU64::new(0);
static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// The virtual address at which physical address `physical` is mapped.
pub fn to_virtual(physical: PhysAddr) -> VirtAddr {
    VirtAddr::new(PHYSICAL_MEMORY_OFFSET.load(Ordering::Relaxed) + physical.as_u64())
}

/// The offset at which all physical memory is mapped.
pub fn offset() -> VirtAddr {
    VirtAddr::new(PHYSICAL_MEMORY_OFFSET.load(Ordering::Relaxed))
}

/// Builds the frame allocator from the boot memory map. Its own bitmaps are
/// carved from the highest usable region large enough, and reserved.
pub(crate) fn init(regions: &MemoryRegions, physical_memory_offset: u64) -> Result<(), MemoryError> {
    PHYSICAL_MEMORY_OFFSET.store(physical_memory_offset, Ordering::Relaxed);
    let mut usable = [(PhysAddr::zero(), PhysAddr::zero()); MAX_USABLE_REGIONS];
    let mut count = 0;
    for region in regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
        if count == MAX_USABLE_REGIONS {
            log::warn!("more than {MAX_USABLE_REGIONS} usable regions: ignoring the rest");
            break;
        }
        usable[count] = (PhysAddr::new(region.start), PhysAddr::new(region.end));
        count += 1;
    }
    let usable = &usable[..count];
    let words = FrameAllocator::storage_words(usable);
    let bytes = (words * 8) as u64;
    let frames = bytes.div_ceil(FRAME_SIZE);
    // The highest region that fits: low memory is precious to 32-bit devices.
    let (storage_start, _) = usable
        .iter()
        .rev()
        .find(|(start, end)| end.as_u64() - start.as_u64() >= frames * FRAME_SIZE)
        .ok_or(MemoryError::OutOfMemory)?;
    // SAFETY: the range is usable RAM that nothing else owns yet (the allocator that
    // could hand it out is being built now, and reserves it below); the physical map
    // makes it addressable, and u64 storage is valid for any initialised bits.
    let storage: &'static mut [u64] = unsafe {
        let pointer = to_virtual(*storage_start).as_mut_ptr::<u64>();
        pointer.write_bytes(0, words);
        core::slice::from_raw_parts_mut(pointer, words)
    };
    let mut allocator = FrameAllocator::new(usable, storage)?;
    let first = PhysFrame::<Size4KiB>::containing_address(*storage_start);
    for index in 0..frames {
        allocator.reserve(first + index)?;
    }
    without_interrupts(|| *FRAMES.lock() = Some(allocator));
    Ok(())
}

fn with_frames<T>(
    action: impl FnOnce(&mut FrameAllocator<'static>) -> Result<T, MemoryError>,
) -> Result<T, MemoryError> {
    without_interrupts(|| match FRAMES.lock().as_mut() {
        Some(allocator) => action(allocator),
        None => Err(MemoryError::OutOfMemory),
    })
}

/// One frame from the highest zone that has one.
pub fn allocate_frame() -> Result<PhysFrame<Size4KiB>, MemoryError> {
    with_frames(|frames| frames.allocate(None))
}

/// One frame lying wholly below `limit`.
pub fn allocate_frame_below(limit: PhysAddr) -> Result<PhysFrame<Size4KiB>, MemoryError> {
    with_frames(|frames| frames.allocate(Some(limit)))
}

/// `count` contiguous frames meeting `constraints`.
pub fn allocate_contiguous(count: usize, constraints: Constraints) -> Result<PhysFrame<Size4KiB>, MemoryError> {
    with_frames(|frames| frames.allocate_contiguous(count, constraints))
}

/// Takes the free frame `frame` out of the allocator: `NotFree` if someone
/// uses it, `NotUsable` if it is not RAM the allocator manages.
pub fn reserve_frame(frame: PhysFrame<Size4KiB>) -> Result<(), MemoryError> {
    with_frames(|frames| frames.reserve(frame))
}

/// Returns one frame.
pub fn free_frame(frame: PhysFrame<Size4KiB>) -> Result<(), MemoryError> {
    with_frames(|frames| frames.free(frame))
}

/// Returns `count` frames starting at `first`.
pub fn free_contiguous(first: PhysFrame<Size4KiB>, count: usize) -> Result<(), MemoryError> {
    with_frames(|frames| frames.free_contiguous(first, count))
}

/// Counts per zone, lowest first (at most three zones).
pub fn zone_stats() -> [Option<ZoneStats>; 3] {
    let mut stats = [None; 3];
    without_interrupts(|| {
        if let Some(frames) = FRAMES.lock().as_ref() {
            for (slot, zone) in stats.iter_mut().zip(frames.stats()) {
                *slot = Some(zone);
            }
        }
    });
    stats
}

/// A frame allocator for `x86_64`'s mapper (page tables).
pub struct KernelFrames;

// SAFETY: frames come from the global allocator, which never hands one out twice.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = allocate_frame().ok()?;
        // SAFETY: the frame is ours and mapped through the physical map; page tables
        // must start zeroed.
        unsafe { to_virtual(frame.start_address()).as_mut_ptr::<u8>().write_bytes(0, FRAME_SIZE as usize) };
        Some(frame)
    }
}
