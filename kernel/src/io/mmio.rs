//! Memory-mapped registers: a device's register page mapped uncached into the
//! kernel's MMIO window, read and written with volatile accesses.
//!
//! The physical-memory map covers RAM with ordinary write-back pages; device
//! registers must not be cached (a cached read would return an old value, a
//! write could sit in the cache), so each register block gets its own mapping
//! with caching disabled.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::register::RegisterIo;
use crate::dma::IoReturn;
use crate::memory::{FRAME_SIZE, paging};

/// Where MMIO mappings start: a 1 TiB window of its own, below the heap.
const MMIO_WINDOW: u64 = 0xffff_d000_0000_0000;
/// The window's size.
const MMIO_WINDOW_SIZE: u64 = 1 << 40;

static NEXT: AtomicU64 = AtomicU64::new(MMIO_WINDOW);

/// `size` bytes of device registers at a physical address, mapped uncached.
pub struct MmioRange {
    physical: u64,
    base: VirtAddr,
    size: u64,
}

impl fmt::Debug for MmioRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MMIO {:#x}-{:#x}", self.physical, self.physical + self.size - 1)
    }
}

/// Maps `[physical, physical + size)` uncached and returns it as registers.
/// `BadArgument` for an empty, wrapping or too large range; `NoMemory` if page
/// tables could not be allocated. The mapping stays for the kernel's life.
///
/// # Safety
/// The range must be device registers the caller drives (a PCI memory BAR, or a
/// unit ACPI describes), not RAM: writing registers can make a device overwrite
/// memory, and an uncached alias of RAM breaks the caching of its other mapping.
pub unsafe fn map_mmio(physical: u64, size: u64) -> Result<MmioRange, IoReturn> {
    if size == 0 || size > u64::from(u16::MAX) + 1 || physical.checked_add(size).is_none() {
        return Err(IoReturn::BadArgument);
    }
    let first = physical & !(FRAME_SIZE - 1);
    let pages = (physical + size - first).div_ceil(FRAME_SIZE);
    let start = NEXT.fetch_add(pages * FRAME_SIZE, Ordering::Relaxed);
    if start + pages * FRAME_SIZE > MMIO_WINDOW + MMIO_WINDOW_SIZE {
        return Err(IoReturn::NoResources);
    }
    let flags = PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    for index in 0..pages {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(start + index * FRAME_SIZE));
        let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(first + index * FRAME_SIZE));
        // SAFETY: the caller promises the frames are device registers, not RAM in
        // use by Rust code; the page is fresh from the MMIO window.
        unsafe { paging::map(page, frame, flags) }.map_err(|_| IoReturn::NoMemory)?;
    }
    Ok(MmioRange { physical, base: VirtAddr::new(start + (physical - first)), size })
}

impl MmioRange {
    /// The physical address of the first register.
    pub fn physical(&self) -> u64 {
        self.physical
    }

    fn pointer<T>(&self, offset: u16) -> *mut T {
        let width = core::mem::size_of::<T>() as u64;
        assert!(
            u64::from(offset) + width <= self.size && u64::from(offset).is_multiple_of(width),
            "register offset {offset:#x} outside {self:?} or unaligned"
        );
        (self.base + u64::from(offset)).as_mut_ptr()
    }
}

// SAFETY (all accesses below): `map_mmio` mapped the whole range uncached for this
// owner; `pointer` keeps every access inside it and naturally aligned, and
// volatile accesses reach the device exactly once each.
impl RegisterIo for MmioRange {
    fn read8(&self, offset: u16) -> u8 {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u8>(offset).read_volatile() }
    }
    fn read16(&self, offset: u16) -> u16 {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u16>(offset).read_volatile() }
    }
    fn read32(&self, offset: u16) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u32>(offset).read_volatile() }
    }
    fn read64(&self, offset: u16) -> u64 {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u64>(offset).read_volatile() }
    }
    fn write8(&self, offset: u16, value: u8) {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u8>(offset).write_volatile(value) }
    }
    fn write16(&self, offset: u16, value: u16) {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u16>(offset).write_volatile(value) }
    }
    fn write32(&self, offset: u16, value: u32) {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u32>(offset).write_volatile(value) }
    }
    fn write64(&self, offset: u16, value: u64) {
        // SAFETY: see the impl comment.
        unsafe { self.pointer::<u64>(offset).write_volatile(value) }
    }
}
