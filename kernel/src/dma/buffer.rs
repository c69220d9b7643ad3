//! `DmaBuffer`: memory that one owner lends to devices, one transfer at a time.
//!
//! An [`IoMemoryDescriptor`] lives behind an `Arc`, so anyone holding a clone
//! can read it while a device writes it; the debugging mode catches that only at
//! run time. A `DmaBuffer` is the only handle to its descriptor. The CPU reads
//! it through `&self` and writes it through `&mut self`; lending it to a device
//! ([`super::DmaTransfer::prepare`]) moves the buffer or borrows it exclusively,
//! so CPU access while the device owns it does not compile.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::panic::Location;

use super::failure::{Cause, IoFailure};
use super::{DmaPlatform, IoDirection, IoMemoryDescriptor, IoReturn};
use crate::memory::{Constraints, FRAME_SIZE};

/// Memory one owner lends to devices (Tock's `&'static mut [u8]` handed to a
/// device and back, with IOKit's descriptor underneath).
#[derive(Debug)]
pub struct DmaBuffer {
    /// The only handle to the memory, but for the one a transfer binds to its
    /// command (`DmaTransfer::prepare` clones it) while it holds the buffer.
    pub(super) descriptor: Arc<IoMemoryDescriptor>,
}

impl DmaBuffer {
    /// `length` bytes of fresh, zeroed, physically contiguous frames that meet
    /// `placement`, for transfers in `direction`.
    pub fn allocate(
        platform: &'static dyn DmaPlatform,
        length: u64,
        direction: IoDirection,
        placement: Constraints,
    ) -> Result<DmaBuffer, IoFailure> {
        let descriptor =
            IoMemoryDescriptor::allocate(platform, length, direction, placement).map_err(|code| match code {
                IoReturn::NoMemory => {
                    IoFailure::new(code, Cause::NoFramesForPlacement { pages: length.div_ceil(FRAME_SIZE) as usize })
                }
                _ => IoFailure::new(code, Cause::EmptyBuffer),
            })?;
        Ok(DmaBuffer { descriptor })
    }

    /// Takes over `descriptor`, which must be the only handle to it and not
    /// prepared: `Busy` otherwise (someone else could touch it behind the
    /// buffer's back).
    pub fn from_descriptor(mut descriptor: Arc<IoMemoryDescriptor>) -> Result<DmaBuffer, IoFailure> {
        if Arc::get_mut(&mut descriptor).is_none() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::DescriptorShared));
        }
        if descriptor.prepare_count() > 0 {
            return Err(IoFailure::new(IoReturn::Busy, Cause::DescriptorPrepared));
        }
        Ok(DmaBuffer { descriptor })
    }

    /// Bytes in the buffer.
    pub fn length(&self) -> u64 {
        self.descriptor.length()
    }

    /// The transfers it is made for.
    pub fn direction(&self) -> IoDirection {
        self.descriptor.direction()
    }

    /// The descriptor underneath, to look at (`physical_segment`, `id`); it
    /// cannot be cloned from here, so the buffer stays its only owner.
    pub fn descriptor(&self) -> &IoMemoryDescriptor {
        &self.descriptor
    }

    /// A second handle to the same memory, for a call that keeps `self`
    /// exclusively borrowed until the transfer made with the handle is over (the
    /// block layer's synchronous `read` and `write`): while the call runs, no
    /// one can reach `self`, so the handle is still the memory's only user. The
    /// call drops it before it returns. A device that could not be stopped keeps
    /// it for ever, and the descriptor, marked abandoned, refuses the CPU.
    pub(crate) fn alias_for_call(&mut self) -> DmaBuffer {
        DmaBuffer { descriptor: self.descriptor.clone() }
    }

    /// Copies bytes from `offset` into `buffer`; returns how many (fewer than
    /// asked at the end). `Overrun` if `offset` is at or past the end;
    /// `NotPermitted` if a device was abandoned while it could write this memory.
    #[track_caller]
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, IoFailure> {
        self.descriptor.read_at(offset, buffer, Location::caller())
    }

    /// Copies `data` to `offset`; returns how many bytes (fewer than given at the
    /// end). `Overrun` if `offset` is at or past the end.
    #[track_caller]
    pub fn write_bytes(&mut self, offset: u64, data: &[u8]) -> Result<usize, IoFailure> {
        self.descriptor.write_at(offset, data, Location::caller())
    }

    /// `length` bytes from `offset`, as a vector (`Overrun` if they do not fit).
    #[track_caller]
    pub fn to_vec(&self, offset: u64, length: usize) -> Result<Vec<u8>, IoFailure> {
        let mut bytes = alloc::vec![0; length];
        let read = self.read_bytes(offset, &mut bytes)?;
        if read < length {
            let cause = Cause::OutOfRange { offset, length: length as u64, size: self.length() };
            return Err(IoFailure::new(IoReturn::Overrun, cause));
        }
        Ok(bytes)
    }
}
