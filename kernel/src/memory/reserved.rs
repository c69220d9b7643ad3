//! `ReservedFrame`: one chosen physical frame, taken from the allocator so that
//! nobody else uses it, readable and writable by the kernel (the shell's
//! `no-bounce` experiment aims a device's cut address at one, `dma-steal`
//! plants a secret in one).

use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;

use super::{FRAME_SIZE, MemoryError, physical};

/// A frame the allocator will not hand out until this is dropped.
#[derive(Debug)]
pub struct ReservedFrame {
    frame: PhysFrame,
}

impl ReservedFrame {
    /// Takes the frame at `address` (rounded down to its frame), if it is free.
    pub fn take(address: PhysAddr) -> Result<ReservedFrame, MemoryError> {
        let frame = PhysFrame::containing_address(address);
        physical::reserve_frame(frame)?;
        Ok(ReservedFrame { frame })
    }

    /// Any free frame below `limit` (the shell's `dma-steal` experiment plants
    /// a secret in one a 32-bit device could address).
    pub fn below(limit: PhysAddr) -> Result<ReservedFrame, MemoryError> {
        Ok(ReservedFrame { frame: physical::allocate_frame_below(limit)? })
    }

    /// Its physical address.
    pub fn address(&self) -> PhysAddr {
        self.frame.start_address()
    }

    /// Copies `FRAME_SIZE` bytes (or fewer) from `offset` out of the frame.
    pub fn read(&self, offset: usize, output: &mut [u8]) {
        let length = output.len().min((FRAME_SIZE as usize).saturating_sub(offset));
        let source = physical::to_virtual(self.address() + offset as u64).as_ptr::<u8>();
        // SAFETY: the frame is ours (reserved in the allocator), mapped in the
        // physical-memory window, and `offset + length` stays inside it.
        unsafe { core::ptr::copy_nonoverlapping(source, output.as_mut_ptr(), length) };
    }

    /// Copies `data` (or what fits) into the frame at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let length = data.len().min((FRAME_SIZE as usize).saturating_sub(offset));
        let target = physical::to_virtual(self.address() + offset as u64).as_mut_ptr::<u8>();
        // SAFETY: as in `read`; `&mut self` keeps other kernel writers out.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), target, length) };
    }
}

impl Drop for ReservedFrame {
    fn drop(&mut self) {
        if let Err(error) = physical::free_frame(self.frame) {
            log::error!("reserved frame {:#x} not given back: {error:?}", self.address().as_u64());
        }
    }
}
