//! `IoMapper`: an IOMMU as the DMA layer sees it (XNU's `IOMapper`).
//!
//! A device behind an IOMMU does not see physical addresses: it sees I/O virtual
//! addresses (IOVAs) that the IOMMU translates through page tables the kernel
//! keeps for that device's domain. A command whose platform has a mapper maps the
//! pages it prepared at IOVAs below the device's address limit, gives the device
//! those IOVAs as its segments, and unmaps them (invalidating the IOMMU's cache)
//! at complete, before any memory goes back to the CPU or to the allocator.
//!
//! The kernel's VT-d driver implements this trait for real hardware; the
//! simulated machine has [`super::simulated_mapper::SimulatedMapper`] so the same
//! command logic runs in host tests.

use crate::dma::MappedRange;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;

use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::platform::{DmaPlatform, FrameFill};
use super::{IoDirection, IoFailure};
use crate::memory::{Constraints, MemoryError};

/// Whether a command's transfers go through its device's IOMMU domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mapping {
    /// Segments are IOVAs the domain translates (XNU's `kMapped`).
    #[default]
    Mapped,
    /// Segments are physical addresses (XNU's `kBypassed`): right only where
    /// the domain passes DMA through; behind a translating domain the device's
    /// DMA faults, which is what the break-it experiment shows.
    Bypassed,
}

/// Whether a blocked DMA tried to read memory or to write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAccess {
    /// The device read memory (a disk write, an `Out` transfer).
    Read,
    /// The device wrote memory (a disk read, an `In` transfer).
    Write,
}

/// One DMA the IOMMU refused, decoded from its fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuFault {
    /// The requester: PCI `bus << 8 | device << 3 | function`.
    pub source: u16,
    /// The I/O virtual address the device used (page-granular on VT-d).
    pub address: u64,
    /// Read or write.
    pub access: FaultAccess,
    /// The hardware's fault reason code (VT-d's non-recoverable fault reasons;
    /// [`fault_meaning`] says what each means).
    pub reason: u8,
    /// What the reason code means, in words.
    pub meaning: &'static str,
}

impl fmt::Display for IommuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IOMMU fault {:#04x} ({}): device {:02x}:{:02x}.{} {} IOVA {:#x}",
            self.reason,
            self.meaning,
            self.source >> 8,
            (self.source >> 3) & 0x1f,
            self.source & 7,
            match self.access {
                FaultAccess::Read => "read from",
                FaultAccess::Write => "wrote to",
            },
            self.address
        )
    }
}

/// An IOMMU domain serving one device: maps and unmaps pages at IOVAs.
pub trait IoMapper: Send + Sync {
    /// Who this is, for traces and the shell: "VT-d unit 0, domain 2 (00:03.0)".
    fn name(&self) -> String;

    /// Whether the device's DMA is translated. `false` in pass-through mode: the
    /// device then uses physical addresses and commands act as if bypassed.
    fn translating(&self) -> bool;

    /// Maps `pages` (page-aligned physical addresses, in order) at consecutive
    /// IOVAs, every one below `highest_address`, readable by the device if
    /// `direction` includes `Out` and writable if it includes `In`. Returns the
    /// first IOVA. Nothing stays mapped on an error (no IOVA space: `NoResources`).
    /// If undoing a half-made mapping needed an invalidation the IOMMU did not
    /// confirm, the cause is [`super::Cause::InvalidationFailed`]: as after a
    /// failed [`IoMapper::unmap`], the device may still reach `pages`, and the
    /// caller must never free or reuse them.
    fn map(&self, pages: &[PhysAddr], direction: IoDirection, highest_address: u64) -> Result<u64, IoFailure>;

    /// Maps physically contiguous `pages` at IOVAs equal to their physical
    /// addresses. For memory shared with the device for its whole life (rings,
    /// PRD tables): its device address then stays right when the domain is
    /// switched to pass-through and back. `NotPermitted` where the mapper cannot.
    fn map_identity(&self, pages: &[PhysAddr], direction: IoDirection) -> Result<u64, IoFailure> {
        let _ = (pages, direction);
        let cause = super::Cause::Other("this IOMMU domain does not map IOVA = physical");
        Err(IoFailure::new(super::IoReturn::NotPermitted, cause))
    }

    /// Unmaps `count` pages from `iova` and invalidates the IOMMU's caches for
    /// them: when it returns `Ok`, the device can no longer reach those pages.
    ///
    /// The IOMMU may not confirm the invalidation (VT-d puts no bound on how
    /// long an IOTLB invalidation or a write-buffer flush takes; one that times
    /// out or is refused leaves the old translation possibly cached). Then the
    /// pages are unmapped in the tables, but the device may still reach them:
    /// the IOVAs are quarantined, never handed out again, and the result is
    /// [`super::Cause::InvalidationFailed`]. The caller must never free or
    /// reuse the memory behind them.
    #[must_use = "a failed unmap leaves memory the device may still reach: it must not be freed"]
    fn unmap(&self, iova: u64, count: usize) -> Result<(), IoFailure>;

    /// Where `iova` leads now, if it is mapped (for the shell and for tests).
    fn translate(&self, iova: u64) -> Option<PhysAddr>;

    /// The oldest DMA of this device that the IOMMU refused and nobody took
    /// yet, into `range` or into no page mapped now, if any (taken: the next
    /// call returns the next one). With many transfers in flight, a fault
    /// inside another live transfer's IOVAs is that transfer's, and stays for
    /// it; one into `range` (just unmapped) or into nothing mapped is the
    /// caller's.
    fn take_fault(&self, range: MappedRange) -> Option<IommuFault>;
}

/// A machine as one device behind an IOMMU sees it: `inner`'s memory, with
/// `mapper`'s translation in between. Drivers are given one of these instead of
/// the bare platform, so their commands map without the drivers knowing.
pub struct MappedPlatform {
    inner: &'static dyn DmaPlatform,
    mapper: Arc<dyn IoMapper>,
}

impl MappedPlatform {
    /// `inner` seen through `mapper`, leaked: commands keep a `'static` reference,
    /// and a device keeps its domain for the kernel's life.
    pub fn leak(inner: &'static dyn DmaPlatform, mapper: Arc<dyn IoMapper>) -> &'static MappedPlatform {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(MappedPlatform { inner, mapper }))
    }
}

// SAFETY: every call but `mapper` goes to `inner`, which upholds the contract.
unsafe impl DmaPlatform for MappedPlatform {
    fn translate(&self, address: VirtAddr) -> Option<PhysAddr> {
        self.inner.translate(address)
    }

    fn allocate_frames(
        &self,
        count: usize,
        constraints: Constraints,
        fill: FrameFill,
    ) -> Result<PhysAddr, MemoryError> {
        self.inner.allocate_frames(count, constraints, fill)
    }

    fn free_frames(&self, first: PhysAddr, count: usize) {
        self.inner.free_frames(first, count)
    }

    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.read_physical(source, destination) }
    }

    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.write_physical(destination, source) }
    }

    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.copy_physical(destination, source, length) }
    }

    fn accounting(&self) -> &Accounting {
        self.inner.accounting()
    }

    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        self.inner.flush_for_device(address, length)
    }

    fn mapper(&self) -> Option<&dyn IoMapper> {
        Some(&*self.mapper)
    }
}

/// What a VT-d fault reason code means (Intel VT-d specification, appendix
/// "Non-Recoverable Fault Reason Encodings"), for the codes a learner meets.
///
/// VT-d has no separate present bit in its page tables: an entry with R and W
/// both clear is not present, so a DMA through a missing mapping is reported as
/// 0x05 (a write) or 0x06 (a read), not as a fault of its own. 0x07 means the
/// unit could not read a page-table entry at all.
pub fn fault_meaning(reason: u8) -> &'static str {
    match reason {
        0x01 => "the bus's root entry is not present",
        0x02 => "the device's context entry is not present",
        0x03 => "the context entry is invalid (an address width or translation type the unit does not support)",
        0x04 => "the address is beyond the domain's address width",
        0x05 => "a write through a page-table entry without write permission (or not present)",
        0x06 => "a read through a page-table entry without read permission (or not present)",
        0x07 => "a page-table entry could not be read (its table pointer is invalid)",
        0x08 => "the root table could not be read (its address is invalid)",
        0x09 => "the context table could not be read (its pointer is invalid)",
        0x0a => "a reserved bit is set in a present root entry",
        0x0b => "a reserved bit is set in a present context entry",
        0x0c => "a reserved bit is set in a present page-table entry",
        0x0d => "the context entry's translation type blocks this kind of request",
        _ => "a fault reason this kernel does not decode",
    }
}
