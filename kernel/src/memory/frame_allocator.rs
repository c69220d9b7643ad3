//! The physical frame allocator: zones, single frames in O(log n), and
//! constrained contiguous runs for DMA.
//!
//! Memory is split into zones the way Linux splits it, because devices are
//! split that way: `Dma` (below 16 MiB, for ISA-era devices), `Dma32` (below
//! 4 GiB, for 32-bit bus masters such as PIIX IDE) and `Normal` (the rest).
//! Single frames come from the highest zone first, so low memory stays free for
//! the devices that can reach nothing else.
//!
//! Each zone keeps two bitmaps over its frames: `usable` (set once, from the boot
//! memory map) and `free` (a [`BitTree`], so the lowest free frame is found in a
//! few steps). A frame that was never usable can never be handed out or freed.

use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use super::MemoryError;
use super::bit_tree::BitTree;

/// Bytes per frame.
pub const FRAME_SIZE: u64 = 4096;

/// The zones, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneKind {
    /// Below 16 MiB.
    Dma,
    /// 16 MiB to 4 GiB.
    Dma32,
    /// 4 GiB and above.
    Normal,
}

impl ZoneKind {
    /// All zones, lowest first.
    pub const ALL: [ZoneKind; 3] = [ZoneKind::Dma, ZoneKind::Dma32, ZoneKind::Normal];

    /// The physical range `[start, end)` the zone covers.
    pub const fn span(self) -> (u64, u64) {
        match self {
            ZoneKind::Dma => (0, 16 << 20),
            ZoneKind::Dma32 => (16 << 20, 1 << 32),
            ZoneKind::Normal => (1 << 32, u64::MAX),
        }
    }

    /// The name Linux gives the zone.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneKind::Dma => "DMA",
            ZoneKind::Dma32 => "DMA32",
            ZoneKind::Normal => "Normal",
        }
    }
}

/// Counts for one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneStats {
    /// Which zone.
    pub kind: ZoneKind,
    /// Usable frames in the zone.
    pub total: usize,
    /// Of those, free now.
    pub free: usize,
    /// The physical range `[start, end)` from the zone's first usable frame to
    /// the end of its last: what the machine really has, not the zone's [`ZoneKind::span`].
    pub start: u64,
    /// See `start`.
    pub end: u64,
}

/// What a contiguous run must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constraints {
    /// Every byte of the run lies below this address; `None` for no limit.
    pub below: Option<PhysAddr>,
    /// The run starts at a multiple of this (a power of two; below a frame means a frame).
    pub alignment: u64,
    /// The run does not cross a multiple of this (a power of two, or 0 for none).
    pub boundary: u64,
}

impl Constraints {
    /// No constraint at all.
    pub const NONE: Constraints = Constraints { below: None, alignment: FRAME_SIZE, boundary: 0 };

    /// Only an address limit.
    pub const fn below(limit: PhysAddr) -> Constraints {
        Constraints { below: Some(limit), alignment: FRAME_SIZE, boundary: 0 }
    }
}

#[derive(Debug)]
struct Zone<'a> {
    kind: ZoneKind,
    first_frame: u64,
    usable: &'a mut [u64],
    free: BitTree<'a>,
    total: usize,
    free_count: usize,
}

impl Zone<'_> {
    fn frame_count(&self) -> u64 {
        self.free.len() as u64
    }

    fn contains(&self, frame: u64) -> bool {
        frame >= self.first_frame && frame < self.first_frame + self.frame_count()
    }

    /// `Ok` if `frame` is usable and allocated, so that freeing it is right.
    fn check_allocated(&self, frame: u64) -> Result<(), MemoryError> {
        if !self.is_usable(frame) {
            return Err(MemoryError::NotUsable);
        }
        if self.free.get((frame - self.first_frame) as usize) {
            return Err(MemoryError::NotAllocated);
        }
        Ok(())
    }

    fn is_usable(&self, frame: u64) -> bool {
        let index = (frame - self.first_frame) as usize;
        self.usable[index / 64] & (1 << (index % 64)) != 0
    }

    fn take(&mut self, frame: u64) {
        self.take_run(frame, 1);
    }

    /// Gives back `count` allocated frames from `first` on, in one pass over
    /// their words.
    fn release_run(&mut self, first: u64, count: u64) {
        let from = (first - self.first_frame) as usize;
        self.free.set_range(from, from + count as usize);
        self.free_count += count as usize;
    }

    /// Takes `count` free frames from `first` on, in one pass over their words.
    fn take_run(&mut self, first: u64, count: u64) {
        let from = (first - self.first_frame) as usize;
        self.free.clear_range(from, from + count as usize);
        self.free_count -= count as usize;
    }

    /// The first run of `count` free frames in `[first, limit)` meeting the
    /// alignment and boundary, scanning upwards. Each step moves past a used
    /// frame or a boundary, so the scan is linear in the zone's size.
    fn find_run(&self, count: u64, limit: u64, alignment: u64, boundary: u64) -> Option<u64> {
        let base = self.first_frame;
        let mut candidate = base.next_multiple_of(alignment);
        while candidate + count <= limit {
            if boundary != 0 && candidate / boundary != (candidate + count - 1) / boundary {
                candidate = ((candidate / boundary + 1) * boundary).next_multiple_of(alignment);
                continue;
            }
            let from = (candidate - base) as usize;
            match self.free.first_clear_in(from, from + count as usize) {
                None => return Some(candidate),
                Some(used) => {
                    let next_free = self.free.next_set(used + 1)? as u64 + base;
                    candidate = next_free.next_multiple_of(alignment);
                }
            }
        }
        None
    }
}

/// The allocator: up to one [`Zone`] per [`ZoneKind`].
#[derive(Debug)]
pub struct FrameAllocator<'a> {
    zones: [Option<Zone<'a>>; 3],
}

/// The whole frames inside `[start, end)`, as frame numbers `[first, end)`.
fn whole_frames(start: u64, end: u64) -> (u64, u64) {
    (start.div_ceil(FRAME_SIZE), end / FRAME_SIZE)
}

/// Frame numbers `[first, end)` of usable memory inside `zone`, if any.
fn zone_extent(zone: ZoneKind, usable: &[(PhysAddr, PhysAddr)]) -> Option<(u64, u64)> {
    let (zone_start, zone_end) = zone.span();
    let mut extent: Option<(u64, u64)> = None;
    for &(start, end) in usable {
        let (start, end) = whole_frames(start.as_u64().max(zone_start), end.as_u64().min(zone_end));
        if start < end {
            extent = Some(match extent {
                None => (start, end),
                Some((low, high)) => (low.min(start), high.max(end)),
            });
        }
    }
    extent
}

impl<'a> FrameAllocator<'a> {
    /// Words of storage [`FrameAllocator::new`] needs for these usable ranges.
    pub fn storage_words(usable: &[(PhysAddr, PhysAddr)]) -> usize {
        ZoneKind::ALL
            .iter()
            .filter_map(|&zone| zone_extent(zone, usable))
            .map(|(first, end)| {
                let frames = (end - first) as usize;
                frames.div_ceil(64) + BitTree::words_needed(frames)
            })
            .sum()
    }

    /// An allocator in which exactly the whole frames inside `usable` are free.
    /// `storage` must hold [`FrameAllocator::storage_words`] words.
    pub fn new(usable: &[(PhysAddr, PhysAddr)], storage: &'a mut [u64]) -> Result<Self, MemoryError> {
        if storage.len() < Self::storage_words(usable) {
            return Err(MemoryError::BadRequest);
        }
        let mut zones = [None, None, None];
        let mut rest = storage;
        for (slot, &kind) in zones.iter_mut().zip(ZoneKind::ALL.iter()) {
            let Some((first, end)) = zone_extent(kind, usable) else {
                continue;
            };
            let frames = (end - first) as usize;
            let (usable_words, after) = rest.split_at_mut(frames.div_ceil(64));
            let (tree_words, after) = after.split_at_mut(BitTree::words_needed(frames));
            rest = after;
            usable_words.fill(0);
            let mut zone = Zone {
                kind,
                first_frame: first,
                usable: usable_words,
                free: BitTree::new(frames, tree_words),
                total: 0,
                free_count: 0,
            };
            for &(start, stop) in usable {
                let (start, stop) = whole_frames(start.as_u64(), stop.as_u64());
                for frame in start.max(first)..stop.min(end) {
                    let index = (frame - first) as usize;
                    if zone.usable[index / 64] & (1 << (index % 64)) == 0 {
                        zone.usable[index / 64] |= 1 << (index % 64);
                        zone.free.set(index);
                        zone.total += 1;
                        zone.free_count += 1;
                    }
                }
            }
            *slot = Some(zone);
        }
        Ok(Self { zones })
    }

    fn zone_of(&mut self, frame: u64) -> Option<&mut Zone<'a>> {
        self.zones.iter_mut().flatten().find(|zone| zone.contains(frame))
    }

    /// One frame, below `below` if given, from the highest zone that has one.
    pub fn allocate(&mut self, below: Option<PhysAddr>) -> Result<PhysFrame<Size4KiB>, MemoryError> {
        let limit = below.map_or(u64::MAX, |address| address.as_u64() / FRAME_SIZE);
        for zone in self.zones.iter_mut().rev().flatten() {
            let Some(index) = zone.free.first_set() else {
                continue;
            };
            let frame = zone.first_frame + index as u64;
            if frame < limit {
                zone.take(frame);
                return Ok(frame_at(frame));
            }
        }
        Err(MemoryError::OutOfMemory)
    }

    /// `count` physically contiguous frames meeting `constraints`; the first frame.
    pub fn allocate_contiguous(
        &mut self,
        count: usize,
        constraints: Constraints,
    ) -> Result<PhysFrame<Size4KiB>, MemoryError> {
        let alignment = constraints.alignment.max(FRAME_SIZE);
        let bad_boundary = constraints.boundary != 0
            && (!constraints.boundary.is_power_of_two() || constraints.boundary < count as u64 * FRAME_SIZE);
        if count == 0 || !alignment.is_power_of_two() || bad_boundary {
            return Err(MemoryError::BadRequest);
        }
        let alignment = alignment / FRAME_SIZE;
        let boundary = constraints.boundary / FRAME_SIZE;
        let limit = constraints.below.map_or(u64::MAX, |address| address.as_u64() / FRAME_SIZE);
        for zone in self.zones.iter_mut().rev().flatten() {
            let zone_limit = limit.min(zone.first_frame + zone.frame_count());
            if let Some(start) = zone.find_run(count as u64, zone_limit, alignment, boundary) {
                zone.take_run(start, count as u64);
                return Ok(frame_at(start));
            }
        }
        Err(MemoryError::NoContiguousRun)
    }

    /// Takes the specific frame `frame` out of the free set (for memory that is in
    /// use before the allocator exists, such as its own storage).
    pub fn reserve(&mut self, frame: PhysFrame<Size4KiB>) -> Result<(), MemoryError> {
        let number = frame.start_address().as_u64() / FRAME_SIZE;
        let zone = self.zone_of(number).ok_or(MemoryError::NotUsable)?;
        if !zone.is_usable(number) {
            return Err(MemoryError::NotUsable);
        }
        if !zone.free.get((number - zone.first_frame) as usize) {
            return Err(MemoryError::NotFree);
        }
        zone.take(number);
        Ok(())
    }

    /// Returns `frame` to the free set. Freeing a frame that is free, or that was
    /// never usable, is an error and changes nothing.
    pub fn free(&mut self, frame: PhysFrame<Size4KiB>) -> Result<(), MemoryError> {
        let number = frame.start_address().as_u64() / FRAME_SIZE;
        let zone = self.zone_of(number).ok_or(MemoryError::NotUsable)?;
        zone.check_allocated(number)?;
        zone.release_run(number, 1);
        Ok(())
    }

    /// Frees `count` frames starting at `first`. If any of them is free already
    /// or was never usable, nothing is freed and the first such error is returned.
    pub fn free_contiguous(&mut self, first: PhysFrame<Size4KiB>, count: usize) -> Result<(), MemoryError> {
        let number = first.start_address().as_u64() / FRAME_SIZE;
        let end = number + count as u64;
        for frame in number..end {
            self.zone_of(frame).ok_or(MemoryError::NotUsable)?.check_allocated(frame)?;
        }
        let mut frame = number;
        while frame < end {
            let zone = self.zone_of(frame).expect("every frame was checked above");
            let run_end = end.min(zone.first_frame + zone.frame_count());
            zone.release_run(frame, run_end - frame);
            frame = run_end;
        }
        Ok(())
    }

    /// Whether `frame` is usable and currently free.
    pub fn is_free(&mut self, frame: PhysFrame<Size4KiB>) -> bool {
        let number = frame.start_address().as_u64() / FRAME_SIZE;
        self.zone_of(number).is_some_and(|zone| zone.free.get((number - zone.first_frame) as usize))
    }

    /// Counts per zone, lowest zone first; zones without memory are left out.
    pub fn stats(&self) -> impl Iterator<Item = ZoneStats> + '_ {
        self.zones.iter().flatten().map(|zone| ZoneStats {
            kind: zone.kind,
            total: zone.total,
            free: zone.free_count,
            start: zone.first_frame * FRAME_SIZE,
            end: (zone.first_frame + zone.frame_count()) * FRAME_SIZE,
        })
    }

    /// Free frames over all zones.
    pub fn free_frames(&self) -> usize {
        self.stats().map(|zone| zone.free).sum()
    }
}

fn frame_at(number: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(number * FRAME_SIZE))
}

#[cfg(test)]
mod tests;
