//! What the DMA layer needs from the machine, as a trait: address translation,
//! frames for bounce buffers, and copies between physical ranges.
//!
//! The kernel implements it over the real frame allocator and physical map
//! ([`super::kernel_platform`]); host tests and drivers' fake devices implement it
//! over a simulated memory ([`super::simulated`]) in which some "physical"
//! addresses lie above 4 GiB. The DMA logic itself is the same code in both.
//!
//! A machine also says whether its DMA snoops the CPU's caches
//! ([`Coherence`]); on one that does not, the DMA layer cleans and invalidates
//! the memory the device uses at the points Linux's DMA API does (see
//! `docs/dma-contract.md`, "Beyond IOKit: cache maintenance on a non-coherent
//! machine").

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

/// Whether a machine's DMA sees what the CPU's caches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coherence {
    /// The device's reads see the CPU's dirty cache lines and its writes
    /// invalidate the CPU's cached copies (x86, and ARM servers whose
    /// interconnect snoops): the DMA layer does no cache maintenance.
    Coherent,
    /// The device reads and writes memory only, behind the CPU's caches (most
    /// ARM SoCs): the DMA layer cleans what the device will read and
    /// invalidates what it wrote before the CPU looks
    /// ([`DmaPlatform::clean_for_device`], [`DmaPlatform::invalidate_for_cpu`]).
    NonCoherent,
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

    /// Copies physical memory into `destination` as a device's DMA reads it:
    /// on a coherent machine the same as [`DmaPlatform::read_physical`]; on a
    /// non-coherent one, RAM, past the CPU's cache. For code that plays a
    /// device (the teaching experiments).
    ///
    /// # Safety
    /// As for [`DmaPlatform::read_physical`].
    unsafe fn read_as_device(&self, source: PhysAddr, destination: &mut [u8]) {
        // SAFETY: the caller upholds read_physical's contract.
        unsafe { self.read_physical(source, destination) }
    }

    /// Copies `source` into physical memory as a device's DMA writes it: RAM,
    /// past the CPU's cache on a non-coherent machine.
    ///
    /// # Safety
    /// As for [`DmaPlatform::write_physical`].
    unsafe fn write_as_device(&self, destination: PhysAddr, source: &[u8]) {
        // SAFETY: the caller upholds write_physical's contract.
        unsafe { self.write_physical(destination, source) }
    }

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

    /// Whether the machine's DMA snoops the CPU's caches. A platform keeps its
    /// answer for its life: a command asks once, when it is made. By default
    /// coherent, as every x86 machine is.
    fn coherence(&self) -> Coherence {
        Coherence::Coherent
    }

    /// Makes what the CPU wrote to `[address, address + length)` visible to a
    /// device that reads memory only: the cache clean (write-back) of a
    /// non-coherent machine, which leaves the lines cached. The DMA layer calls
    /// it on memory a device is about to read (prepare, `synchronize(Out)`),
    /// and only when [`DmaPlatform::coherence`] says [`Coherence::NonCoherent`].
    /// By default nothing.
    ///
    /// Not [`DmaPlatform::flush_for_device`]: that one is for the IOMMU's own
    /// tables and is called on every machine, because a unit's table walker
    /// may not snoop even where the machine's DMA does (VT-d's ECAP.C, which is
    /// 0 on x86 QEMU). This one is for data buffers, on non-coherent machines only.
    fn clean_for_device(&self, address: PhysAddr, length: u64) {
        let _ = (address, length);
    }

    /// Makes what a device wrote to `[address, address + length)` visible to
    /// the CPU: the cache invalidate of a non-coherent machine, after which the
    /// CPU's next read comes from memory. CPU writes to the range not cleaned
    /// before are lost, as on real hardware. The DMA layer calls it on memory a
    /// device wrote, before the CPU reads it (`synchronize(In)`, and complete
    /// for a direction that includes `In`), and only on a
    /// [`Coherence::NonCoherent`] machine. By default nothing.
    fn invalidate_for_cpu(&self, address: PhysAddr, length: u64) {
        let _ = (address, length);
    }

    /// The CPU's accesses to the frames of `[first, first + length)` bypass its
    /// caches until the frames are freed: memory the CPU and a device share for
    /// its whole life ([`super::CoherentMemory`], rings), which a non-coherent
    /// machine maps uncached, as Linux's `dma_alloc_coherent` does there.
    /// [`super::IoMemoryDescriptor::allocate_coherent`] calls it on fresh
    /// frames. By default nothing: on a coherent machine cached memory is shared
    /// correctly.
    fn set_uncached(&self, first: PhysAddr, length: u64) {
        let _ = (first, length);
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
