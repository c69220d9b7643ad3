//! Paging through `x86_64`'s `OffsetPageTable`: map, unmap and translate in the
//! active address space, reading page tables through the physical-memory map.

use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::MemoryError;
use super::physical::{self, KernelFrames};

static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);

/// Takes over the page tables the boot code left active.
pub(crate) fn init() {
    let (level_4, _) = Cr3::read();
    let table = physical::to_virtual(level_4.start_address()).as_mut_ptr::<PageTable>();
    // SAFETY: all physical memory is mapped at `physical::offset()`, the level-4 table
    // is the active one, and from here on only this mapper changes the tables.
    let mapper = unsafe { OffsetPageTable::new(&mut *table, physical::offset()) };
    without_interrupts(|| *MAPPER.lock() = Some(mapper));
}

fn with_mapper<T>(
    action: impl FnOnce(&mut OffsetPageTable<'static>) -> Result<T, MemoryError>,
) -> Result<T, MemoryError> {
    without_interrupts(|| match MAPPER.lock().as_mut() {
        Some(mapper) => action(mapper),
        None => Err(MemoryError::NotMapped),
    })
}

/// Maps `page` to `frame` with `flags` (PRESENT is added), allocating page tables
/// as needed.
///
/// # Safety
/// The caller owns `frame` and must not create an alias that breaks Rust's
/// aliasing rules for memory already in use (mapping a fresh frame is fine).
pub unsafe fn map(page: Page<Size4KiB>, frame: PhysFrame<Size4KiB>, flags: PageTableFlags) -> Result<(), MemoryError> {
    with_mapper(|mapper| {
        // SAFETY: forwarded from the caller.
        let result = unsafe { mapper.map_to(page, frame, flags | PageTableFlags::PRESENT, &mut KernelFrames) };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MemoryError::OutOfMemory),
            Err(MapToError::PageAlreadyMapped(_) | MapToError::ParentEntryHugePage) => Err(MemoryError::AlreadyMapped),
        }
    })
}

/// Unmaps `page` and returns the frame it mapped (the caller frees it if it owns it).
pub fn unmap(page: Page<Size4KiB>) -> Result<PhysFrame<Size4KiB>, MemoryError> {
    with_mapper(|mapper| match mapper.unmap(page) {
        Ok((frame, flush)) => {
            flush.flush();
            Ok(frame)
        }
        Err(UnmapError::PageNotMapped) => Err(MemoryError::NotMapped),
        Err(UnmapError::ParentEntryHugePage) => Err(MemoryError::AlreadyMapped),
        Err(UnmapError::InvalidFrameAddress(_)) => Err(MemoryError::NotUsable),
    })
}

/// The physical address `address` maps to, if it is mapped (any page size).
pub fn translate(address: VirtAddr) -> Option<PhysAddr> {
    with_mapper(|mapper| match mapper.translate(address) {
        TranslateResult::Mapped { frame, offset, .. } => Ok(frame.start_address() + offset),
        _ => Err(MemoryError::NotMapped),
    })
    .ok()
}
