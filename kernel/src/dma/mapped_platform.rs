//! `MappedPlatform`: a machine as one device behind an IOMMU sees it. Drivers
//! are given one of these instead of the bare platform, so their commands map
//! pages without the drivers knowing.

use alloc::sync::Arc;

use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::mapper::IoMapper;
use super::platform::{Coherence, DmaPlatform, FrameFill};
use crate::memory::{Constraints, MemoryError};

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

    unsafe fn read_as_device(&self, source: PhysAddr, destination: &mut [u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.read_as_device(source, destination) }
    }

    unsafe fn write_as_device(&self, destination: PhysAddr, source: &[u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.write_as_device(destination, source) }
    }

    fn accounting(&self) -> &Accounting {
        self.inner.accounting()
    }

    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        self.inner.flush_for_device(address, length)
    }

    fn coherence(&self) -> Coherence {
        self.inner.coherence()
    }

    fn clean_for_device(&self, address: PhysAddr, length: u64) {
        self.inner.clean_for_device(address, length)
    }

    fn invalidate_for_cpu(&self, address: PhysAddr, length: u64) {
        self.inner.invalidate_for_cpu(address, length)
    }

    fn set_uncached(&self, first: PhysAddr, length: u64) {
        self.inner.set_uncached(first, length)
    }

    fn mapper(&self) -> Option<&dyn IoMapper> {
        Some(&*self.mapper)
    }

    fn machine(&self) -> Option<&'static dyn DmaPlatform> {
        Some(self.inner)
    }
}
