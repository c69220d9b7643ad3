//! `CoherentMemory`: memory a device and the CPU share for as long as the device
//! runs (a virtqueue, a PRD table), Linux's `dma_alloc_coherent`.
//!
//! It is allocated where the device's specification says, prepared once, and
//! both sides read and write it at any time. It may be freed only once the
//! device has been stopped (reset, engine halted): the driver says so by calling
//! [`CoherentMemory::release`]. Dropped without that, a device may still be
//! using it, so it is leaked and reported instead.

use core::panic::Location;

use super::failure::{Cause, IoFailure};
use super::{DmaAddr, DmaPlatform, IoDmaCommand, IoMemoryDescriptor, IoReturn, Specification};
use crate::memory::{Constraints, FRAME_SIZE};
use x86_64::PhysAddr;

/// Memory shared with a device while it runs.
#[derive(Debug)]
pub struct CoherentMemory {
    /// Prepared for the memory's whole life: the device may use it at any time.
    /// It holds the memory's descriptor, which frees the frames when released.
    command: IoDmaCommand,
    address: DmaAddr,
    /// The machine the memory lies in, which copies the CPU's bytes: the bare
    /// one even when the device sees it through an IOMMU, since a copy by the
    /// CPU needs no mapping.
    machine: &'static dyn DmaPlatform,
    /// Where byte 0 lies in RAM: the memory is one physically contiguous
    /// piece, so byte `n` lies at `physical + n`.
    physical: PhysAddr,
    /// Bytes.
    length: u64,
}

impl CoherentMemory {
    /// `length` bytes of zeroed memory in one piece that meets `specification`
    /// (below its address limit, aligned, not crossing its boundary).
    pub fn allocate(
        platform: &'static dyn DmaPlatform,
        length: u64,
        specification: Specification,
    ) -> Result<CoherentMemory, IoFailure> {
        let mut command =
            IoDmaCommand::new(platform, Specification { max_segments: 1, ..specification }).map_err(|code| {
                IoFailure::new(code, Cause::BadSpecification("the shared memory's command (one segment)"))
            })?;
        let rules = *command.rules();
        let below = rules.highest_address().checked_add(1).and_then(|end| x86_64::PhysAddr::try_new(end).ok());
        let placement = Constraints { below, alignment: rules.alignment().max(FRAME_SIZE), boundary: rules.boundary() };
        let descriptor = IoMemoryDescriptor::allocate_coherent(platform, length, placement).map_err(|code| {
            let cause = Cause::NoReachableMemory {
                pages: length.div_ceil(FRAME_SIZE) as usize,
                address_bits: rules.address_bits(),
            };
            IoFailure::new(code, cause)
        })?;
        // A fresh command: `Busy`, its one refusal, cannot come.
        command
            .set_memory_descriptor(descriptor.clone(), false)
            .map_err(|code| IoFailure::new(code, Cause::CommandInUse))?;
        // Behind an IOMMU the device address is the physical one where the
        // domain allows: it stays right if the domain passes DMA through later.
        command.map_identically();
        command.prepare_for(0, 0, super::command::Completion::WholeRange, Location::caller())?;
        let address = command.segments()[0].address;
        // One run from byte 0 to the end: `allocate_coherent` took one piece.
        let physical = match descriptor.physical_segment(0) {
            Ok((physical, run)) if run == length => physical,
            _ => return Err(IoFailure::new(IoReturn::InternalError, Cause::PageNotMapped { offset: 0 })),
        };
        let machine = platform.machine().unwrap_or(platform);
        Ok(CoherentMemory { command, address, machine, physical, length })
    }

    /// The address the device uses for byte 0.
    pub fn device_address(&self) -> DmaAddr {
        self.address
    }

    /// Bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Copies bytes from `offset` into `buffer`; returns how many (fewer than
    /// asked at the end); `Overrun` at or past the end.
    ///
    /// A straight copy from `physical + offset`: the descriptor's CPU-access
    /// checks have nothing to refuse here. The memory is coherent, so the
    /// debugging mode never refuses it while the device owns it; and only its
    /// own command could abandon it, in `release` or `drop`, which take it.
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, IoFailure> {
        if offset >= self.length {
            return Err(self.overrun(offset, buffer.len()));
        }
        let count = (buffer.len() as u64).min(self.length - offset) as usize;
        // SAFETY: `[offset, offset + count)` lies inside this memory, which it
        // owns until `release`; the device writes it too, as a coherent ring is
        // meant to be (the driver orders the accesses with the device's index
        // fields and fences).
        unsafe { self.machine.read_physical(self.physical + offset, &mut buffer[..count]) };
        Ok(count)
    }

    /// Copies `data` to `offset`; returns how many bytes (fewer than given at
    /// the end); `Overrun` at or past the end. A straight copy, as
    /// [`CoherentMemory::read_bytes`].
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<usize, IoFailure> {
        if offset >= self.length {
            return Err(self.overrun(offset, data.len()));
        }
        let count = (data.len() as u64).min(self.length - offset) as usize;
        // SAFETY: as in `read_bytes`; this memory is its own to overwrite.
        unsafe { self.machine.write_physical(self.physical + offset, &data[..count]) };
        Ok(count)
    }

    fn overrun(&self, offset: u64, wanted: usize) -> IoFailure {
        let cause = Cause::OutOfRange { offset, length: wanted as u64, size: self.length };
        IoFailure::new(IoReturn::Overrun, cause)
    }

    /// Frees the memory. Call it only after the device was stopped, so that it
    /// can no longer read or write here.
    #[track_caller]
    pub fn release(mut self) -> Result<(), IoFailure> {
        // The command's own failure, cause and all: an IOMMU that did not
        // confirm the unmap says `InvalidationFailed`, not "not prepared".
        let prepared = self.command.prepared_range().map_or(0, |(_, length)| length);
        self.command.complete_moved(prepared, Location::caller())?;
        if self.command.clear_memory_descriptor(false).is_err() {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::StayedPrepared));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::simulated::SimulatedPlatform;

    #[test]
    fn the_cpu_reads_and_writes_within_the_memory_and_is_told_overrun_past_it() {
        let platform = SimulatedPlatform::leak(16);
        let free = platform.free_frames_count();
        let shared = CoherentMemory::allocate(platform, 6000, Specification::UNLIMITED_64).unwrap();
        // Across the page boundary at 4096: the memory is one piece.
        assert_eq!(shared.write_bytes(4090, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), Ok(10));
        let mut back = [0u8; 10];
        assert_eq!(shared.read_bytes(4090, &mut back), Ok(10));
        assert_eq!(back, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let physical = shared.device_address().as_u64() + 4090;
        let mut seen = [0u8; 10];
        platform.device_read(physical, &mut seen);
        assert_eq!(seen, back, "the bytes are where the device looks");
        // At the end: fewer than asked; at or past it: Overrun, saying where.
        assert_eq!(shared.write_bytes(5996, &[9; 8]), Ok(4));
        let mut tail = [0u8; 8];
        assert_eq!(shared.read_bytes(5996, &mut tail), Ok(4));
        assert_eq!(tail, [9, 9, 9, 9, 0, 0, 0, 0]);
        let overrun = IoFailure::new(IoReturn::Overrun, Cause::OutOfRange { offset: 6000, length: 2, size: 6000 });
        assert_eq!(shared.write_bytes(6000, &[1, 2]), Err(overrun));
        assert_eq!(shared.read_bytes(6000, &mut [0; 2]), Err(overrun));
        let far = shared.read_bytes(u64::MAX, &mut [0; 1]).unwrap_err();
        assert_eq!(far.code(), IoReturn::Overrun);
        shared.release().unwrap();
        assert_eq!(platform.free_frames_count(), free, "released, the frames go back");
    }

    #[test]
    fn behind_an_iommu_the_cpu_and_the_device_meet_at_the_same_bytes() {
        use crate::dma::simulated_mapper::SimulatedMapper;
        use crate::dma::{FaultAccess, MappedPlatform};
        let memory = SimulatedPlatform::leak(16);
        let mapper = alloc::sync::Arc::new(SimulatedMapper::new(0x0020, 1 << 20));
        let platform: &'static dyn DmaPlatform = MappedPlatform::leak(memory, mapper.clone());
        let shared = CoherentMemory::allocate(platform, 8192, Specification::UNLIMITED_32).unwrap();
        assert_eq!(shared.write_bytes(5000, b"ring"), Ok(4));
        // The device's address goes through the IOMMU to where the CPU wrote.
        let iova = shared.device_address().as_u64() + 5000;
        let physical = mapper.device_address(iova, FaultAccess::Read).unwrap();
        let mut seen = [0u8; 4];
        memory.device_read(physical, &mut seen);
        assert_eq!(&seen, b"ring");
        memory.device_write(physical, b"used");
        let mut back = [0u8; 4];
        assert_eq!(shared.read_bytes(5000, &mut back), Ok(4));
        assert_eq!(&back, b"used");
        shared.release().unwrap();
    }
}
