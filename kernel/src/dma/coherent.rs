//! `CoherentMemory`: memory a device and the CPU share for as long as the device
//! runs (a virtqueue, a PRD table), Linux's `dma_alloc_coherent`.
//!
//! It is allocated where the device's specification says, prepared once, and
//! both sides read and write it at any time. It may be freed only once the
//! device has been stopped (reset, engine halted): the driver says so by calling
//! [`CoherentMemory::release`]. Dropped without that, a device may still be
//! using it, so it is leaked and reported instead.

use alloc::sync::Arc;
use core::panic::Location;

use super::failure::{Cause, IoFailure};
use super::{DmaAddr, DmaPlatform, IoDmaCommand, IoMemoryDescriptor, IoReturn, Specification};
use crate::memory::{Constraints, FRAME_SIZE};

/// Memory shared with a device while it runs.
#[derive(Debug)]
pub struct CoherentMemory {
    descriptor: Arc<IoMemoryDescriptor>,
    /// Prepared for the memory's whole life: the device may use it at any time.
    command: IoDmaCommand,
    address: DmaAddr,
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
        Ok(CoherentMemory { descriptor, command, address })
    }

    /// The address the device uses for byte 0.
    pub fn device_address(&self) -> DmaAddr {
        self.address
    }

    /// Bytes.
    pub fn length(&self) -> u64 {
        self.descriptor.length()
    }

    /// Copies bytes from `offset` into `buffer`; `Overrun` past the end.
    #[track_caller]
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, IoFailure> {
        self.descriptor.read_at(offset, buffer, Location::caller())
    }

    /// Copies `data` to `offset`; `Overrun` past the end.
    #[track_caller]
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<usize, IoFailure> {
        self.descriptor.write_at(offset, data, Location::caller())
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
