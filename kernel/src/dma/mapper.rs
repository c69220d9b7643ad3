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

use alloc::string::String;

use x86_64::PhysAddr;

use super::fault::IommuFault;
use super::{FaultLoss, IoDirection, IoFailure};

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

/// What one prepare mapped: `pages` IOVA pages from `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// The first I/O virtual address (page-aligned).
    pub iova: u64,
    /// Pages mapped.
    pub pages: usize,
}

impl MappedRange {
    /// Whether `address` lies in the range.
    pub fn contains(&self, address: u64) -> bool {
        let length = (self.pages as u64).saturating_mul(crate::memory::FRAME_SIZE);
        address >= self.iova && address - self.iova < length
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
    /// As for [`IoMapper::map`], an undo the IOMMU did not confirm is
    /// [`super::Cause::InvalidationFailed`], and `pages` must never be freed or
    /// reused.
    fn map_identity(&self, pages: &[PhysAddr], direction: IoDirection) -> Result<u64, IoFailure> {
        let _ = (pages, direction);
        let cause = super::Cause::Iommu(super::IommuCause::IdentityUnsupported);
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

    /// Whether faults may have been lost while `range` was mapped (asked
    /// once, after its unmap and [`IoMapper::take_fault`]): then the
    /// transfer cannot know whether its DMA was refused, and must not end
    /// `Ok`. A mapper that never loses a fault keeps this default.
    fn faults_lost(&self, range: MappedRange) -> Option<FaultLoss> {
        let _ = range;
        None
    }
}

impl core::fmt::Debug for dyn IoMapper {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IoMapper")
    }
}
