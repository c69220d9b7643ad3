//! What the DMA layer needs from the machine, as a trait: address translation,
//! frames for bounce buffers, and copies between physical ranges.
//!
//! The kernel implements it over the real frame allocator and physical map
//! ([`super::kernel_platform`]); host tests and drivers' fake devices implement it
//! over a simulated memory ([`super::simulated`]) in which some "physical"
//! addresses lie above 4 GiB. The DMA logic itself is the same code in both.

use x86_64::{PhysAddr, VirtAddr};

use super::accounting::Accounting;
use super::mapper::IoMapper;
use crate::memory::{Constraints, MemoryError};

/// What fresh frames hold when [`DmaPlatform::allocate_frames`] returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFill {
    /// Zeroes: memory handed to a client, who must never see another's data.
    Zeroed,
    /// Whatever was there: bounce buffers, whose every byte the device can see is
    /// filled from the descriptor first, and which never copy back bytes the
    /// device did not write.
    Uninitialized,
}

/// The machine under the DMA layer.
///
/// # Safety
/// Implementations must make `translate` report the real mapping, hand out frames
/// from `allocate_frames` that nobody else uses until `free_frames`, and copy
/// exactly the bytes asked for.
pub unsafe trait DmaPlatform: Send + Sync {
    /// The physical address kernel virtual address `address` maps to.
    fn translate(&self, address: VirtAddr) -> Option<PhysAddr>;

    /// `count` contiguous frames meeting `constraints`, holding what `fill` says.
    fn allocate_frames(&self, count: usize, constraints: Constraints, fill: FrameFill)
    -> Result<PhysAddr, MemoryError>;

    /// Returns frames from [`DmaPlatform::allocate_frames`].
    fn free_frames(&self, first: PhysAddr, count: usize);

    /// Copies `destination.len()` bytes from physical `source`.
    ///
    /// # Safety
    /// The source range must be memory the caller owns (a prepared descriptor's or
    /// a bounce buffer's), not being written by anyone else during the copy.
    unsafe fn read_physical(&self, source: PhysAddr, destination: &mut [u8]);

    /// Copies `source` to physical `destination`.
    ///
    /// # Safety
    /// The destination range must be memory the caller owns and may overwrite.
    unsafe fn write_physical(&self, destination: PhysAddr, source: &[u8]);

    /// Copies `length` bytes between two physical ranges.
    ///
    /// # Safety
    /// Both ranges must be owned by the caller and must not overlap.
    unsafe fn copy_physical(&self, destination: PhysAddr, source: PhysAddr, length: u64);

    /// The counters and the misuse log of this machine's DMA layer.
    fn accounting(&self) -> &Accounting;

    /// Writes the CPU caches' copy of `[address, address + length)` back to
    /// memory, for a reader that does not snoop them: a VT-d unit whose table
    /// walks are not coherent (ECAP.C = 0, as QEMU's) reads its root, context
    /// and page tables from memory, so every entry the kernel writes must be
    /// flushed before the unit may use it. By default nothing: a coherent
    /// machine, or simulated memory.
    fn flush_for_device(&self, address: PhysAddr, length: u64) {
        let _ = (address, length);
    }

    /// The IOMMU domain between the device and memory, if the device sits behind
    /// one ([`super::MappedPlatform`]); `None` on the bare machine. A platform
    /// keeps its domain for its life: a command asks once, when it is made.
    fn mapper(&self) -> Option<&dyn IoMapper> {
        None
    }

    /// The bare machine under this platform when it is only a device's view of
    /// it ([`super::MappedPlatform`]), whose copies it forwards there: memory
    /// that keeps its mapping for life (`CoherentMemory`) copies there directly.
    /// `None` on the bare machine.
    fn machine(&self) -> Option<&'static dyn DmaPlatform> {
        None
    }
}

impl core::fmt::Debug for dyn DmaPlatform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DmaPlatform")
    }
}
