//! `IoMemoryDescriptor`: a description of memory for a transfer, one or several
//! ranges of kernel virtual or physical memory (scatter/gather), with a direction.
//!
//! Like IOKit's `IOMemoryDescriptor`, it does not move data by itself: it says
//! where the bytes are. `prepare()` makes sure every page resolves to a physical
//! address and marks the memory DMA-active; `complete()` undoes one `prepare()`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::panic::Location;

use spin::Mutex;
use x86_64::{PhysAddr, VirtAddr};

use super::accounting::{Misuse, MisuseReport};
use super::{DmaPlatform, IoDirection, IoReturn};
use crate::memory::{Constraints, FRAME_SIZE};

/// One range of the descriptor.
#[derive(Clone, Copy, Debug)]
enum Range {
    Virtual { address: VirtAddr, length: u64 },
    Physical { address: PhysAddr, length: u64 },
}

impl Range {
    fn length(&self) -> u64 {
        match *self {
            Range::Virtual { length, .. } | Range::Physical { length, .. } => length,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    prepare_count: u32,
    /// Commands that have handed this memory to the device and not taken it back.
    device_owners: u32,
    prepared_at: Option<&'static Location<'static>>,
}

/// Memory for a transfer (`IOMemoryDescriptor`).
#[doc(alias = "IOMemoryDescriptor")]
pub struct IoMemoryDescriptor {
    id: u64,
    platform: &'static dyn DmaPlatform,
    direction: IoDirection,
    ranges: Vec<Range>,
    length: u64,
    /// Frame runs this descriptor allocated and frees when dropped.
    owned_frames: Vec<(PhysAddr, usize)>,
    /// A heap buffer this descriptor keeps alive.
    _owned_buffer: Option<Box<[u8]>>,
    /// Shared with a device continuously (rings, descriptor tables): never
    /// bounced, and CPU access is always allowed.
    coherent: bool,
    state: Mutex<State>,
}

impl core::fmt::Debug for IoMemoryDescriptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoMemoryDescriptor")
            .field("id", &self.id)
            .field("direction", &self.direction)
            .field("length", &self.length)
            .field("ranges", &self.ranges)
            .finish()
    }
}

impl IoMemoryDescriptor {
    fn build(
        platform: &'static dyn DmaPlatform,
        ranges: Vec<Range>,
        direction: IoDirection,
        owned_frames: Vec<(PhysAddr, usize)>,
        owned_buffer: Option<Box<[u8]>>,
    ) -> Result<Arc<Self>, IoReturn> {
        let length = ranges.iter().try_fold(0u64, |total, range| total.checked_add(range.length()));
        let length = length.filter(|&length| length > 0 && ranges.iter().all(|range| range.length() > 0));
        let Some(length) = length else {
            for &(first, frames) in &owned_frames {
                platform.free_frames(first, frames);
            }
            return Err(IoReturn::BadArgument);
        };
        Ok(Arc::new(IoMemoryDescriptor {
            id: platform.accounting().next_id(),
            platform,
            direction,
            ranges,
            length,
            owned_frames,
            _owned_buffer: owned_buffer,
            coherent: false,
            state: Mutex::new(State::default()),
        }))
    }

    /// A buffer of `length` bytes in fresh, zeroed, physically contiguous frames
    /// that meet `placement` (IOKit's `IOBufferMemoryDescriptor`). Unconstrained
    /// buffers come from the highest memory zone, which on a machine with more than
    /// 4 GiB lies above 4 GiB.
    pub fn allocate(
        platform: &'static dyn DmaPlatform,
        length: u64,
        direction: IoDirection,
        placement: Constraints,
    ) -> Result<Arc<Self>, IoReturn> {
        if length == 0 {
            return Err(IoReturn::BadArgument);
        }
        let frames = length.div_ceil(FRAME_SIZE) as usize;
        let first = platform.allocate_frames(frames, placement, true).map_err(|_| IoReturn::NoMemory)?;
        let ranges = alloc::vec![Range::Physical { address: first, length }];
        Self::build(platform, ranges, direction, alloc::vec![(first, frames)], None)
    }

    /// A scatter/gather buffer made of separately allocated pieces, each of
    /// `length` bytes in fresh frames meeting its `placement`: a buffer whose
    /// parts are deliberately not physically contiguous.
    pub fn allocate_scattered(
        platform: &'static dyn DmaPlatform,
        pieces: &[(u64, Constraints)],
        direction: IoDirection,
    ) -> Result<Arc<Self>, IoReturn> {
        let mut owned = Vec::with_capacity(pieces.len());
        let mut ranges = Vec::with_capacity(pieces.len());
        for &(length, placement) in pieces {
            let frames = length.div_ceil(FRAME_SIZE) as usize;
            match platform.allocate_frames(frames, placement, true) {
                Ok(first) => {
                    owned.push((first, frames));
                    ranges.push(Range::Physical { address: first, length });
                }
                Err(_) => {
                    for &(first, frames) in &owned {
                        platform.free_frames(first, frames);
                    }
                    return Err(IoReturn::NoMemory);
                }
            }
        }
        Self::build(platform, ranges, direction, owned, None)
    }

    /// Memory that the CPU and a device share for as long as it lives: a ring, a
    /// descriptor table (Linux's `dma_alloc_coherent`). It is allocated to meet
    /// `placement`, so a command whose specification it meets never bounces it
    /// (and refuses to, with `NotPermitted`); the debugging mode lets the CPU
    /// touch it at any time, as both sides must.
    pub fn allocate_coherent(
        platform: &'static dyn DmaPlatform,
        length: u64,
        placement: Constraints,
    ) -> Result<Arc<Self>, IoReturn> {
        let mut descriptor = Self::allocate(platform, length, IoDirection::InOut, placement)?;
        Arc::get_mut(&mut descriptor).ok_or(IoReturn::Busy)?.coherent = true;
        Ok(descriptor)
    }

    /// Whether the memory is shared with a device continuously.
    pub fn is_coherent(&self) -> bool {
        self.coherent
    }

    /// A descriptor over a kernel heap buffer, which it keeps alive. The buffer's
    /// pages need not be physically contiguous.
    pub fn from_boxed(
        platform: &'static dyn DmaPlatform,
        buffer: Box<[u8]>,
        direction: IoDirection,
    ) -> Result<Arc<Self>, IoReturn> {
        let address = VirtAddr::from_ptr(buffer.as_ptr());
        let ranges = alloc::vec![Range::Virtual { address, length: buffer.len() as u64 }];
        Self::build(platform, ranges, direction, Vec::new(), Some(buffer))
    }

    /// A descriptor over physical ranges (scatter/gather), in order.
    ///
    /// # Safety
    /// The ranges must be RAM that the caller owns for the descriptor's whole life
    /// and that nothing else reads or writes while it is in use.
    pub unsafe fn with_physical_ranges(
        platform: &'static dyn DmaPlatform,
        ranges: &[(PhysAddr, u64)],
        direction: IoDirection,
    ) -> Result<Arc<Self>, IoReturn> {
        let ranges = ranges.iter().map(|&(address, length)| Range::Physical { address, length }).collect();
        Self::build(platform, ranges, direction, Vec::new(), None)
    }

    /// A descriptor over kernel virtual ranges (scatter/gather), in order.
    ///
    /// # Safety
    /// As for [`IoMemoryDescriptor::with_physical_ranges`], for the memory behind
    /// the virtual ranges; the mapping must not change while the descriptor lives.
    pub unsafe fn with_virtual_ranges(
        platform: &'static dyn DmaPlatform,
        ranges: &[(VirtAddr, u64)],
        direction: IoDirection,
    ) -> Result<Arc<Self>, IoReturn> {
        let ranges = ranges.iter().map(|&(address, length)| Range::Virtual { address, length }).collect();
        Self::build(platform, ranges, direction, Vec::new(), None)
    }

    /// A number that names this descriptor in traces and misuse reports.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Total bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The transfer direction.
    pub fn direction(&self) -> IoDirection {
        self.direction
    }

    /// The platform the memory lives on.
    pub fn platform(&self) -> &'static dyn DmaPlatform {
        self.platform
    }

    /// The physical address of byte `offset` and how many bytes from there are
    /// physically contiguous (within one range). `Overrun` past the end;
    /// `BadArgument` if the page is not mapped.
    pub fn physical_segment(&self, offset: u64) -> Result<(PhysAddr, u64), IoReturn> {
        let mut start = 0;
        for range in &self.ranges {
            let length = range.length();
            if offset < start + length {
                let within = offset - start;
                return match *range {
                    Range::Physical { address, length } => Ok((address + within, length - within)),
                    Range::Virtual { address, length } => {
                        self.virtual_run(address + within, length - within).ok_or(IoReturn::BadArgument)
                    }
                };
            }
            start += length;
        }
        Err(IoReturn::Overrun)
    }

    /// Translates `address` and extends the run over following pages that are
    /// physically contiguous, up to `limit` bytes.
    fn virtual_run(&self, address: VirtAddr, limit: u64) -> Option<(PhysAddr, u64)> {
        let physical = self.platform.translate(address)?;
        let mut length = (FRAME_SIZE - address.as_u64() % FRAME_SIZE).min(limit);
        while length < limit {
            let next = self.platform.translate(address + length)?;
            if next != physical + length {
                break;
            }
            length = (length + FRAME_SIZE).min(limit);
        }
        Some((physical, length))
    }

    /// Calls `visit(offset, physical, length)` for each physically contiguous run
    /// of `[offset, offset + length)`.
    pub(crate) fn for_each_run(
        &self,
        offset: u64,
        length: u64,
        mut visit: impl FnMut(u64, PhysAddr, u64),
    ) -> Result<(), IoReturn> {
        let end = offset.checked_add(length).filter(|&end| end <= self.length).ok_or(IoReturn::BadArgument)?;
        let mut position = offset;
        while position < end {
            let (physical, run) = self.physical_segment(position)?;
            let run = run.min(end - position);
            visit(position, physical, run);
            position += run;
        }
        Ok(())
    }

    /// The physical runs of `[offset, offset + length)`, neighbours that touch merged.
    pub(crate) fn runs(&self, offset: u64, length: u64) -> Result<Vec<(u64, u64)>, IoReturn> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        self.for_each_run(offset, length, |_, physical, run| match runs.last_mut() {
            Some(last) if last.0 + last.1 == physical.as_u64() => last.1 += run,
            _ => runs.push((physical.as_u64(), run)),
        })?;
        Ok(runs)
    }

    /// Checks that every page resolves and counts one more prepare.
    #[track_caller]
    pub fn prepare(&self) -> Result<(), IoReturn> {
        self.for_each_run(0, self.length, |_, _, _| ())?;
        let mut state = self.state.lock();
        state.prepare_count += 1;
        state.prepared_at.get_or_insert(Location::caller());
        Ok(())
    }

    /// Undoes one [`IoMemoryDescriptor::prepare`]; `NotReady` if not prepared.
    pub fn complete(&self) -> Result<(), IoReturn> {
        let mut state = self.state.lock();
        if state.prepare_count == 0 {
            return Err(IoReturn::NotReady);
        }
        state.prepare_count -= 1;
        if state.prepare_count == 0 {
            state.prepared_at = None;
        }
        Ok(())
    }

    /// How many prepares are outstanding.
    pub fn prepare_count(&self) -> u32 {
        self.state.lock().prepare_count
    }

    /// A command hands the memory to the device (`true`) or takes it back (`false`).
    pub(crate) fn set_device_owned(&self, owned: bool) {
        let mut state = self.state.lock();
        if owned {
            state.device_owners += 1;
        } else {
            state.device_owners = state.device_owners.saturating_sub(1);
        }
    }

    /// In debugging mode, CPU access while a device owns the memory is refused.
    #[track_caller]
    fn check_cpu_access(&self) -> Result<(), IoReturn> {
        let accounting = self.platform.accounting();
        if accounting.debug() && !self.coherent && self.state.lock().device_owners > 0 {
            accounting.report(MisuseReport {
                misuse: Misuse::CpuAccessWhileDeviceOwned,
                command: None,
                descriptor: Some(self.id),
                location: Location::caller(),
            });
            return Err(IoReturn::NotPermitted);
        }
        Ok(())
    }

    /// Copies bytes from offset `offset` into `buffer`; returns how many (fewer
    /// than asked at the end). `Overrun` if `offset` is at or past the end.
    #[track_caller]
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, IoReturn> {
        self.check_cpu_access()?;
        let count = self.clamp(offset, buffer.len())?;
        self.for_each_run(offset, count as u64, |position, physical, run| {
            let start = (position - offset) as usize;
            let target = &mut buffer[start..start + run as usize];
            // SAFETY: the run belongs to this descriptor, whose memory its creator
            // promised is owned and not written concurrently.
            unsafe { self.platform.read_physical(physical, target) };
        })?;
        Ok(count)
    }

    /// Copies `data` to offset `offset`; returns how many bytes (fewer than given
    /// at the end). `Overrun` if `offset` is at or past the end.
    #[track_caller]
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<usize, IoReturn> {
        self.check_cpu_access()?;
        let count = self.clamp(offset, data.len())?;
        self.for_each_run(offset, count as u64, |position, physical, run| {
            let start = (position - offset) as usize;
            // SAFETY: as in read_bytes; the descriptor's memory may be overwritten.
            unsafe { self.platform.write_physical(physical, &data[start..start + run as usize]) };
        })?;
        Ok(count)
    }

    fn clamp(&self, offset: u64, wanted: usize) -> Result<usize, IoReturn> {
        if offset >= self.length {
            return Err(IoReturn::Overrun);
        }
        Ok((wanted as u64).min(self.length - offset) as usize)
    }
}

impl Drop for IoMemoryDescriptor {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if state.prepare_count > 0 {
            self.platform.accounting().report(MisuseReport {
                misuse: Misuse::DescriptorDroppedWhilePrepared,
                command: None,
                descriptor: Some(self.id),
                location: state.prepared_at.unwrap_or(Location::caller()),
            });
            // A device may still be using the frames: leaking them is the safe choice.
            return;
        }
        for &(first, frames) in &self.owned_frames {
            self.platform.free_frames(first, frames);
        }
    }
}
