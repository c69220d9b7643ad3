//! Safety steps a learner may switch off for one transfer, to watch what goes
//! wrong (the shell's `experiment` command). Nothing is skipped unless a step
//! is armed on a platform (`Accounting::arm_experiment`), and an armed step is
//! skipped once, at the first transfer on that platform that would have done
//! it, then it is on again. Only bounce copies can be skipped: they are the
//! copies a driver relies on without seeing them.
//!
//! For `experiment synchronize`, [`device_writes`] and [`device_reads`] play
//! a device on a prepared command's segments, so that synchronize can be
//! watched between the device's accesses.

use alloc::vec::Vec;

use x86_64::PhysAddr;

use super::{Cause, IoDmaCommand, IoFailure, IoReturn};

/// A step that can be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Skip {
    /// The copy out of bounce memory at `complete` (an `In` transfer): the
    /// device's bytes stay in the bounce buffer and the CPU's buffer keeps what
    /// it held before.
    CopyBack = 1,
    /// The fill of bounce memory from the buffer, before the device reads it
    /// (an `Out` transfer): the device reads whatever the bounce frames held.
    Fill = 2,
    /// The split of segments at the device's `boundary` (PIIX IDE: 64 KiB):
    /// one segment may cross it.
    Boundary = 3,
    /// The bounce for memory beyond the device's address limit: the device is
    /// given the real address, and its address register keeps only the bits it
    /// has, as real hardware would (the record is cut to the device's width).
    Reach = 4,
}

/// The segments of a prepared command that has no IOMMU in between, whose
/// addresses are physical: what a played device may touch.
fn physical_segments(command: &IoDmaCommand) -> Result<&[super::Segment], IoFailure> {
    if !command.is_prepared() {
        return Err(IoFailure::new(IoReturn::NotReady, Cause::WrongState("the command is not prepared")));
    }
    if command.mapper().is_some() {
        let cause = Cause::Other("behind an IOMMU the segments are IOVAs; a played device needs physical ones");
        return Err(IoFailure::new(IoReturn::NotPermitted, cause));
    }
    Ok(command.segments())
}

/// Plays the device for a demonstration: writes `data` through the prepared
/// `command`'s segments, in order, as its DMA would.
pub fn device_writes(command: &IoDmaCommand, data: &[u8]) -> Result<(), IoFailure> {
    let mut done = 0;
    for segment in physical_segments(command)? {
        let length = (segment.length as usize).min(data.len() - done);
        // SAFETY: a prepared command's segments are memory lent to its device
        // (the descriptor's pages or the command's own bounce pages) until
        // complete; the caller plays that device, and nothing else writes them.
        unsafe {
            command.platform().write_physical(PhysAddr::new(segment.address.as_u64()), &data[done..done + length])
        };
        done += length;
    }
    Ok(())
}

/// Plays the device for a demonstration: reads `length` bytes through the
/// prepared `command`'s segments, as its DMA would.
pub fn device_reads(command: &IoDmaCommand, length: usize) -> Result<Vec<u8>, IoFailure> {
    let mut data = alloc::vec![0u8; length];
    let mut done = 0;
    for segment in physical_segments(command)? {
        let take = (segment.length as usize).min(length - done);
        // SAFETY: as in `device_writes`; reading does not change the memory.
        unsafe {
            command.platform().read_physical(PhysAddr::new(segment.address.as_u64()), &mut data[done..done + take])
        };
        done += take;
    }
    Ok(data)
}
