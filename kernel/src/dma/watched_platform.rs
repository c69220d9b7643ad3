//! A simulated machine for host tests that watches what is asked of it: every
//! range flushed for the device (the IOMMU's page tables), every clean and
//! invalidate (the DMA layer on a non-coherent machine), and it can run out of
//! frames after a given number of allocations. Everything else goes to the
//! simulated machine underneath, unchanged.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use x86_64::{PhysAddr, VirtAddr};

use super::bounce::Maintenance;
use super::simulated::SimulatedPlatform;
use super::{Accounting, Coherence, DmaPlatform, FrameFill};
use crate::memory::{Constraints, MemoryError};

/// The simulated machine, watched.
pub(crate) struct WatchedPlatform {
    pub(crate) inner: &'static SimulatedPlatform,
    /// Allocations still granted (`usize::MAX`: no limit).
    frames_left: AtomicUsize,
    /// Every `(address, length)` flushed for the device, in order.
    pub(crate) flushed: spin::Mutex<Vec<(u64, u64)>>,
    /// Every cache maintenance asked for: (which, address, bytes), in order.
    pub(crate) maintained: spin::Mutex<Vec<(Maintenance, u64, u64)>>,
}

impl WatchedPlatform {
    /// A fresh simulated machine that grants `allocations` more frame
    /// allocations (`usize::MAX` for no limit), leaked as platforms are.
    pub(crate) fn leak(allocations: usize) -> &'static WatchedPlatform {
        Self::over(SimulatedPlatform::leak(0), allocations)
    }

    /// `inner`, watched, granting `allocations` more frame allocations.
    pub(crate) fn over(inner: &'static SimulatedPlatform, allocations: usize) -> &'static WatchedPlatform {
        Box::leak(Box::new(WatchedPlatform {
            inner,
            frames_left: AtomicUsize::new(allocations),
            flushed: spin::Mutex::new(Vec::new()),
            maintained: spin::Mutex::new(Vec::new()),
        }))
    }

    /// The cache maintenance asked for since the last call.
    pub(crate) fn take_maintained(&self) -> Vec<(Maintenance, u64, u64)> {
        core::mem::take(&mut self.maintained.lock())
    }
}

// SAFETY: every call goes to the simulated machine, which upholds the
// contract; allocation may refuse, which the contract allows.
unsafe impl DmaPlatform for WatchedPlatform {
    fn translate(&self, address: VirtAddr) -> Option<PhysAddr> {
        self.inner.translate(address)
    }

    fn allocate_frames(
        &self,
        count: usize,
        constraints: Constraints,
        fill: FrameFill,
    ) -> Result<PhysAddr, MemoryError> {
        let granted = self.frames_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| match left {
            usize::MAX => Some(usize::MAX),
            0 => None,
            left => Some(left - 1),
        });
        match granted {
            Ok(_) => self.inner.allocate_frames(count, constraints, fill),
            Err(_) => Err(MemoryError::OutOfMemory),
        }
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
        self.flushed.lock().push((address.as_u64(), length));
        self.inner.flush_for_device(address, length)
    }

    fn coherence(&self) -> Coherence {
        self.inner.coherence()
    }

    fn clean_for_device(&self, address: PhysAddr, length: u64) {
        self.maintained.lock().push((Maintenance::Clean, address.as_u64(), length));
        self.inner.clean_for_device(address, length)
    }

    fn invalidate_for_cpu(&self, address: PhysAddr, length: u64) {
        self.maintained.lock().push((Maintenance::Invalidate, address.as_u64(), length));
        self.inner.invalidate_for_cpu(address, length)
    }

    fn set_uncached(&self, first: PhysAddr, length: u64) {
        self.inner.set_uncached(first, length)
    }

    unsafe fn read_as_device(&self, source: PhysAddr, destination: &mut [u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.read_as_device(source, destination) }
    }

    unsafe fn write_as_device(&self, destination: PhysAddr, source: &[u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.write_as_device(destination, source) }
    }
}
