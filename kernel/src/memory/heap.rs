//! The kernel heap: `linked_list_allocator` behind a spin lock, on pages mapped
//! at [`HEAP_START`] from frames of the frame allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::structures::paging::{Page, PageTableFlags, Size4KiB};

use super::{FRAME_SIZE, MemoryError, paging, physical};

/// Where the heap starts: its own PML4 slot, far from the physical map.
pub const HEAP_START: u64 = 0xffff_e000_0000_0000;
/// The heap's size.
pub const HEAP_SIZE: u64 = 16 << 20;

/// The global allocator: a first-fit linked-list heap, locked with interrupts off
/// so that an interrupt handler can never deadlock against the code it interrupted.
pub struct KernelHeap(Mutex<Heap>);

// SAFETY: `Heap` returns properly sized and aligned blocks from the memory it was
// given, or null; the mutex serialises all access.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| self.0.lock().allocate_first_fit(layout).map_or(ptr::null_mut(), |block| block.as_ptr()))
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(pointer) {
            // SAFETY: GlobalAlloc's contract: `pointer` came from `alloc` with `layout`.
            without_interrupts(|| unsafe { self.0.lock().deallocate(block, layout) });
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

/// Maps the heap's pages and hands them to the allocator.
pub(crate) fn init() -> Result<(), MemoryError> {
    let start = VirtAddr::new(HEAP_START);
    let first = Page::<Size4KiB>::containing_address(start);
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for index in 0..HEAP_SIZE / FRAME_SIZE {
        let frame = physical::allocate_frame()?;
        // SAFETY: a fresh frame at a heap address nobody uses yet.
        unsafe { paging::map(first + index, frame, flags)? };
    }
    // SAFETY: `[HEAP_START, HEAP_START + HEAP_SIZE)` is now mapped, writable and used
    // by nothing else; this runs once, before any allocation.
    without_interrupts(|| unsafe { HEAP.0.lock().init(start.as_mut_ptr(), HEAP_SIZE as usize) });
    Ok(())
}

/// Bytes in use and bytes free in the heap.
pub fn usage() -> (usize, usize) {
    without_interrupts(|| {
        let heap = HEAP.0.lock();
        (heap.used(), heap.free())
    })
}
