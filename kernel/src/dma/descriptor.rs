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

use super::failure::{Cause, IoFailure};
use super::misuse::{Misuse, MisuseReport};
use super::platform::FrameFill;
use super::{DmaPlatform, IoDirection, IoReturn};
use crate::memory::{Constraints, FRAME_SIZE};

/// Where one range of the descriptor starts: in kernel virtual memory (its
/// pages resolved one by one) or in physical memory.
#[derive(Clone, Copy, Debug)]
enum Start {
    Virtual(VirtAddr),
    Physical(PhysAddr),
}

/// One range of the descriptor.
#[derive(Clone, Copy, Debug)]
struct Range {
    start: Start,
    length: u64,
}

/// Who holds a command's prepared memory: the device (from prepare, and
/// again after `synchronize(Out)`) or the CPU (after `synchronize(In)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    Device,
    Cpu,
}

/// What undoing a command's prepare did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undone {
    /// The prepare is undone (and the memory the CPU's again).
    Released,
    /// Nothing: the memory was abandoned to a device and stays prepared, and
    /// lent, for ever.
    StaysAbandoned,
}

#[derive(Debug, Default)]
struct State {
    /// Prepares made by calling [`IoMemoryDescriptor::prepare`] directly.
    direct_prepares: u32,
    /// Prepares made by commands; only the commands undo them, so a stray
    /// `complete()` cannot pull memory out from under a command.
    command_prepares: u32,
    /// Commands that have handed this memory to the device and not taken it back.
    device_owners: u32,
    /// A command gave the memory up while a device could still write it: it is
    /// never freed, and the CPU may not read it.
    abandoned: bool,
    prepared_at: Option<&'static Location<'static>>,
}

impl State {
    fn prepares(&self) -> u32 {
        self.direct_prepares + self.command_prepares
    }
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
    owned_buffer: Option<Box<[u8]>>,
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
        let length = ranges.iter().try_fold(0u64, |total, range| total.checked_add(range.length));
        let length = length.filter(|&length| length > 0 && ranges.iter().all(|range| range.length > 0));
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
            owned_buffer,
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
        let first = platform.allocate_frames(frames, placement, FrameFill::Zeroed).map_err(|_| IoReturn::NoMemory)?;
        let ranges = alloc::vec![Range { start: Start::Physical(first), length }];
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
            match platform.allocate_frames(frames, placement, FrameFill::Zeroed) {
                Ok(first) => {
                    owned.push((first, frames));
                    ranges.push(Range { start: Start::Physical(first), length });
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

    /// As [`IoMemoryDescriptor::allocate_scattered`], each piece `(offset,
    /// length, placement)` starting `offset` bytes into its first fresh frame
    /// (`offset` below a frame): a buffer whose pieces start inside pages, as
    /// memory handed down from above often does and no frame allocator hands
    /// out. The bytes of those frames outside the pieces are the descriptor's
    /// (freed with it) but not part of it.
    pub fn allocate_scattered_at(
        platform: &'static dyn DmaPlatform,
        pieces: &[(u64, u64, Constraints)],
        direction: IoDirection,
    ) -> Result<Arc<Self>, IoReturn> {
        if pieces.iter().any(|&(offset, length, _)| offset >= FRAME_SIZE || length == 0) {
            return Err(IoReturn::BadArgument);
        }
        let whole: Option<Vec<(u64, Constraints)>> =
            pieces.iter().map(|&(offset, length, placement)| Some((offset.checked_add(length)?, placement))).collect();
        let whole = whole.ok_or(IoReturn::BadArgument)?;
        let mut descriptor = Self::allocate_scattered(platform, &whole, direction)?;
        let built = Arc::get_mut(&mut descriptor).ok_or(IoReturn::Busy)?;
        for (range, &(offset, length, _)) in built.ranges.iter_mut().zip(pieces) {
            if let Start::Physical(first) = range.start {
                *range = Range { start: Start::Physical(first + offset), length };
            }
        }
        built.length = pieces.iter().map(|&(_, length, _)| length).sum();
        Ok(descriptor)
    }

    /// Memory that the CPU and a device share for as long as it lives: a ring, a
    /// descriptor table (Linux's `dma_alloc_coherent`). It is allocated to meet
    /// `placement`, so a command whose specification it meets never bounces it
    /// (and refuses to, with `NotPermitted`); the debugging mode lets the CPU
    /// touch it at any time, as both sides must. On a non-coherent machine the
    /// CPU reaches it uncached ([`DmaPlatform::set_uncached`]), so neither side
    /// needs a cache clean or invalidate to see the other's writes.
    pub fn allocate_coherent(
        platform: &'static dyn DmaPlatform,
        length: u64,
        placement: Constraints,
    ) -> Result<Arc<Self>, IoReturn> {
        let mut descriptor = Self::allocate(platform, length, IoDirection::InOut, placement)?;
        let shared = Arc::get_mut(&mut descriptor).ok_or(IoReturn::Busy)?;
        shared.coherent = true;
        for &(first, frames) in &shared.owned_frames {
            platform.set_uncached(first, frames as u64 * FRAME_SIZE);
        }
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
        let ranges = alloc::vec![Range { start: Start::Virtual(address), length: buffer.len() as u64 }];
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
        let ranges =
            ranges.iter().map(|&(address, length)| Range { start: Start::Physical(address), length }).collect();
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
        let ranges = ranges.iter().map(|&(address, length)| Range { start: Start::Virtual(address), length }).collect();
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
        let mut range_start = 0;
        for range in &self.ranges {
            if offset < range_start + range.length {
                let within = offset - range_start;
                return match range.start {
                    Start::Physical(address) => Ok((address + within, range.length - within)),
                    Start::Virtual(address) => {
                        self.virtual_run(address + within, range.length - within).ok_or(IoReturn::BadArgument)
                    }
                };
            }
            range_start += range.length;
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
    /// of `[offset, offset + length)`. `BadArgument` with [`Cause::OutOfRange`]
    /// for a range outside the descriptor, with [`Cause::PageNotMapped`] for a
    /// page that does not resolve.
    pub(crate) fn for_each_run(
        &self,
        offset: u64,
        length: u64,
        mut visit: impl FnMut(u64, PhysAddr, u64),
    ) -> Result<(), IoFailure> {
        let outside = || IoFailure::new(IoReturn::BadArgument, Cause::OutOfRange { offset, length, size: self.length });
        let end = offset.checked_add(length).filter(|&end| end <= self.length).ok_or_else(outside)?;
        // One walk over the ranges, from the one `offset` falls in.
        let mut range_start = 0;
        for range in &self.ranges {
            let range_end = range_start + range.length;
            let mut position = offset.max(range_start);
            while position < end.min(range_end) {
                let within = position - range_start;
                let (physical, run) = match range.start {
                    Start::Physical(address) => (address + within, range.length - within),
                    Start::Virtual(address) => self
                        .virtual_run(address + within, range.length - within)
                        .ok_or(IoFailure::new(IoReturn::BadArgument, Cause::PageNotMapped { offset: position }))?,
                };
                let run = run.min(end - position);
                visit(position, physical, run);
                position += run;
            }
            if range_end >= end {
                break;
            }
            range_start = range_end;
        }
        Ok(())
    }

    /// Checks that every page resolves and counts one more prepare.
    #[track_caller]
    pub fn prepare(&self) -> Result<(), IoReturn> {
        self.for_each_run(0, self.length, |_, _, _| ()).map_err(|failure| failure.code())?;
        let mut state = self.state.lock();
        state.direct_prepares += 1;
        state.prepared_at.get_or_insert(Location::caller());
        Ok(())
    }

    /// Undoes one [`IoMemoryDescriptor::prepare`]; `NotReady` if there is none to
    /// undo. Prepares a command made are the command's to undo (by its
    /// `complete`), never this call's.
    pub fn complete(&self) -> Result<(), IoReturn> {
        let mut state = self.state.lock();
        if state.direct_prepares == 0 {
            return Err(IoReturn::NotReady);
        }
        state.direct_prepares -= 1;
        if state.prepares() == 0 {
            state.prepared_at = None;
        }
        Ok(())
    }

    /// A command's prepare of `[offset, offset + length)`, which lends the
    /// memory to the device: refused for memory abandoned to a device (no other
    /// device gets it), and every page of the descriptor must resolve. Returns
    /// the range's physical runs, neighbours that touch merged.
    #[track_caller]
    pub(crate) fn prepare_for_command(&self, offset: u64, length: u64) -> Result<Vec<(u64, u64)>, IoFailure> {
        // Under the lock, so that no abandon slips in between check and count.
        let mut state = self.state.lock();
        if state.abandoned {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::MemoryAbandoned));
        }
        let outside = || IoFailure::new(IoReturn::BadArgument, Cause::OutOfRange { offset, length, size: self.length });
        let end = offset.checked_add(length).filter(|&end| end <= self.length).ok_or_else(outside)?;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        self.for_each_run(0, self.length, |position, physical, run| {
            // The part of this run inside the range, if any.
            let (from, to) = (position.max(offset), (position + run).min(end));
            if from >= to {
                return;
            }
            let physical = physical.as_u64() + (from - position);
            match runs.last_mut() {
                Some(last) if last.0 + last.1 == physical => last.1 += to - from,
                _ => runs.push((physical, to - from)),
            }
        })?;
        state.command_prepares += 1;
        state.device_owners += 1;
        state.prepared_at.get_or_insert(Location::caller());
        Ok(runs)
    }

    /// Undoes one command's prepare, first taking the memory back from the
    /// device if the command still lends it (`holder`). Memory abandoned to a
    /// device (an unmap the IOMMU did not confirm) is left as it is: prepared,
    /// and lent, for ever.
    #[track_caller]
    pub(crate) fn complete_for_command(&self, holder: Holder) -> Undone {
        let mut state = self.state.lock();
        if state.abandoned {
            return Undone::StaysAbandoned;
        }
        debug_assert!(state.command_prepares > 0, "a command completed a prepare it did not make");
        state.command_prepares = state.command_prepares.saturating_sub(1);
        if state.prepares() == 0 {
            state.prepared_at = None;
        }
        let imbalance = holder == Holder::Device && state.device_owners == 0;
        if holder == Holder::Device {
            state.device_owners = state.device_owners.saturating_sub(1);
        }
        drop(state);
        if imbalance {
            self.report(Misuse::OwnershipImbalance, Location::caller());
        }
        Undone::Released
    }

    /// A command gave up a transfer whose device may still write this memory:
    /// its prepare stays counted for ever, so the memory is never freed.
    pub(crate) fn abandon(&self) {
        self.state.lock().abandoned = true;
    }

    /// Whether a command gave this memory up to a device for good.
    pub fn is_abandoned(&self) -> bool {
        self.state.lock().abandoned
    }

    /// How many prepares are outstanding (direct and by commands).
    pub fn prepare_count(&self) -> u32 {
        self.state.lock().prepares()
    }

    /// A command hands the memory to the device (`true`) or takes it back (`false`).
    #[track_caller]
    pub(crate) fn set_device_owned(&self, owned: bool) {
        let mut state = self.state.lock();
        if owned {
            state.device_owners += 1;
        } else if state.device_owners == 0 {
            drop(state);
            self.report(Misuse::OwnershipImbalance, Location::caller());
        } else {
            state.device_owners -= 1;
        }
    }

    fn report(&self, misuse: Misuse, location: &'static Location<'static>) {
        self.platform.accounting().misuse().report(MisuseReport {
            misuse,
            command: None,
            descriptor: Some(self.id),
            location,
        });
    }

    /// Refuses CPU access to memory a device may be writing: always once the
    /// memory was abandoned to a device, and in debugging mode while a command
    /// has lent it to the device.
    fn check_cpu_access(&self, location: &'static Location<'static>) -> Result<(), IoFailure> {
        let state = self.state.lock();
        if state.abandoned {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::MemoryAbandoned));
        }
        let accounting = self.platform.accounting();
        if accounting.debug() && !self.coherent && state.device_owners > 0 {
            drop(state);
            self.report(Misuse::CpuAccessWhileDeviceOwned, location);
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::DeviceOwnsMemory));
        }
        Ok(())
    }

    /// Copies bytes from offset `offset` into `buffer`; returns how many (fewer
    /// than asked at the end). `Overrun` if `offset` is at or past the end.
    #[track_caller]
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, IoReturn> {
        self.read_at(offset, buffer, Location::caller()).map_err(|failure| failure.code())
    }

    /// Copies `data` to offset `offset`; returns how many bytes (fewer than given
    /// at the end). `Overrun` if `offset` is at or past the end.
    #[track_caller]
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<usize, IoReturn> {
        self.write_at(offset, data, Location::caller()).map_err(|failure| failure.code())
    }

    /// `read_bytes`, saying why it fails.
    pub(crate) fn read_at(
        &self,
        offset: u64,
        buffer: &mut [u8],
        location: &'static Location<'static>,
    ) -> Result<usize, IoFailure> {
        self.check_cpu_access(location)?;
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

    /// `write_bytes`, saying why it fails.
    pub(crate) fn write_at(
        &self,
        offset: u64,
        data: &[u8],
        location: &'static Location<'static>,
    ) -> Result<usize, IoFailure> {
        self.check_cpu_access(location)?;
        let count = self.clamp(offset, data.len())?;
        self.for_each_run(offset, count as u64, |position, physical, run| {
            let start = (position - offset) as usize;
            // SAFETY: as in read_at; the descriptor's memory may be overwritten.
            unsafe { self.platform.write_physical(physical, &data[start..start + run as usize]) };
        })?;
        Ok(count)
    }

    fn clamp(&self, offset: u64, wanted: usize) -> Result<usize, IoFailure> {
        if offset >= self.length {
            let cause = Cause::OutOfRange { offset, length: wanted as u64, size: self.length };
            return Err(IoFailure::new(IoReturn::Overrun, cause));
        }
        Ok((wanted as u64).min(self.length - offset) as usize)
    }
}

impl Drop for IoMemoryDescriptor {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        // Abandoned memory stays prepared for ever; the second test keeps it
        // from reuse even if a prepare were ever undone by mistake.
        if state.prepares() > 0 || state.abandoned {
            // A command that abandoned this memory has reported it already.
            if !state.abandoned {
                self.platform.accounting().misuse().report(MisuseReport {
                    misuse: Misuse::DescriptorDroppedWhilePrepared,
                    command: None,
                    descriptor: Some(self.id),
                    location: state.prepared_at.unwrap_or(Location::caller()),
                });
            }
            // A device may still be using the memory: leaking it is the safe
            // choice, for a heap buffer as much as for frames.
            if let Some(buffer) = self.owned_buffer.take() {
                Box::leak(buffer);
            }
            return;
        }
        for &(first, frames) in &self.owned_frames {
            self.platform.free_frames(first, frames);
        }
    }
}
