//! The IOMMU's teaching experiment: break the rules on purpose, to watch the
//! IOMMU catch it (the shell's `iommu break`). It acts through the DMA layer's
//! hooks (`crate::dma::hooks`): a domain asks "unmap at once?" after each map,
//! and arming the experiment makes the answer yes, once.

use super::domain::VtdDomain;
use crate::dma::hooks::Site;
use crate::io::RegisterIo;

/// A way to break the rules on purpose, to watch the IOMMU catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experiment {
    /// The next `map` unmaps its pages (and invalidates) before returning, but
    /// still hands out the IOVAs: the device meets a hole, as it would if a
    /// driver completed a transfer too early or reused old segments. One
    /// transfer long; the matching `unmap` then only gives the IOVAs back.
    UnmapBeforeTheDevice,
    /// The next `unmap` clears the leaves and gives the IOVAs back WITHOUT the
    /// IOTLB invalidation: a unit that cached the old translation keeps using
    /// it, so a device given those IOVAs again reaches the old pages. The
    /// domain keeps the range on record until [`VtdDomain::invalidate_stale`].
    UnmapWithoutInvalidation,
}

impl<R: RegisterIo + 'static> VtdDomain<R> {
    /// Arms `experiment` for the domain's next `map`.
    pub fn set_experiment(&self, experiment: Experiment) {
        match experiment {
            Experiment::UnmapBeforeTheDevice => crate::dma::experiment::arm_unmap_at_once(Site::of(self)),
            Experiment::UnmapWithoutInvalidation => crate::dma::experiment::arm_skip_invalidation(Site::of(self)),
        }
    }

    /// Disarms [`Experiment::UnmapWithoutInvalidation`] if no unmap reached
    /// it; returns whether it was still armed.
    pub fn disarm_skip_invalidation(&self) -> bool {
        crate::dma::experiment::disarm_skip_invalidation(Site::of(self))
    }
}
