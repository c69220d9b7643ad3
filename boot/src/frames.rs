//! A bump allocator for the few frames the boot code needs before the kernel runs.
//!
//! It hands out frames from one usable range below the identity-map limit, so
//! every frame it returns is reachable both through the identity map and at
//! `KERNEL_VMA + physical`. Nothing is ever freed: the whole range it used is
//! reported to the kernel as `Bootloader` memory.

use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, PhysFrame, Size4KiB};

use crate::entry::KERNEL_VMA;

const PAGE_SIZE: u64 = 4096;

/// Frames taken in order from `[start, end)`.
pub(crate) struct BootFrames {
    start: u64,
    next: u64,
    end: u64,
}

impl BootFrames {
    /// A bump allocator over `[start, end)`, both page-aligned.
    pub(crate) fn new(start: u64, end: u64) -> Self {
        Self { start, next: start, end }
    }

    /// `pages` zeroed, contiguous frames; their physical address.
    pub(crate) fn allocate(&mut self, pages: u64) -> Option<u64> {
        let address = self.next;
        let end = address.checked_add(pages * PAGE_SIZE)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        // SAFETY: `[address, end)` lies in a usable RAM range below 1 GiB that no one
        // else owns (the allocator was built from such a range and never hands a byte
        // out twice), and the boot page tables map the first GiB at KERNEL_VMA.
        unsafe { core::ptr::write_bytes((KERNEL_VMA + address) as *mut u8, 0, (end - address) as usize) };
        Some(address)
    }

    /// The range handed out so far.
    pub(crate) fn used(&self) -> (u64, u64) {
        (self.start, self.next)
    }
}

// SAFETY: every frame returned is unused, zeroed RAM owned from now on by the caller.
unsafe impl FrameAllocator<Size4KiB> for BootFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let address = self.allocate(1)?;
        Some(PhysFrame::containing_address(PhysAddr::new(address)))
    }
}
