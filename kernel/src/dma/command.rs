//! `IoDmaCommand`: turns a memory descriptor into segments a particular device can
//! use, bouncing what it cannot reach, and keeps the two copies in sync.
//!
//! The life of a transfer: `set_memory_descriptor` binds the memory; `prepare`
//! plans the segments, allocates bounce buffers where the specification demands
//! them and fills them from the descriptor; the driver gives the device the
//! segments from `gen_iovm_segments`; `synchronize` copies between the descriptor
//! and the bounce buffers when the driver asks; `complete` copies device-written
//! data back (for `In` transfers) and frees the bounce buffers.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::panic::Location;

use x86_64::PhysAddr;

use super::accounting::{Misuse, MisuseReport};
use super::address::Segment;
use super::plan::{self, Layout, Placement};
use super::specification::Rules;
use super::trace::dma_trace;
use super::{DmaPlatform, IoMemoryDescriptor, IoReturn, Specification, SyncOptions, TransferOptions};
use crate::memory::{Constraints, FRAME_SIZE};

/// A bounce buffer: contiguous frames the device can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BounceBuffer {
    /// Physical (and, without an IOMMU, device) address of the first byte.
    pub address: PhysAddr,
    /// Bytes of the transfer it holds.
    pub length: u64,
    /// Whole frames allocated.
    pub pages: usize,
}

#[derive(Debug)]
struct Prepared {
    offset: u64,
    length: u64,
    count: u32,
    layout: Layout,
    buffers: Vec<BounceBuffer>,
    segments: Vec<Segment>,
    device_owned: bool,
    at: &'static Location<'static>,
}

/// A DMA command for one device (`IODMACommand`).
#[doc(alias = "IODMACommand")]
#[derive(Debug)]
pub struct IoDmaCommand {
    id: u64,
    specification: Specification,
    rules: Rules,
    platform: &'static dyn DmaPlatform,
    descriptor: Option<Arc<IoMemoryDescriptor>>,
    prepared: Option<Prepared>,
}

impl core::fmt::Debug for dyn DmaPlatform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DmaPlatform")
    }
}

impl IoDmaCommand {
    /// A command for a device with `specification` (`IODMACommand::withSpecification`).
    /// `BadArgument` if the specification is invalid.
    #[doc(alias = "withSpecification")]
    pub fn new(platform: &'static dyn DmaPlatform, specification: Specification) -> Result<Self, IoReturn> {
        let rules = specification.rules()?;
        Ok(IoDmaCommand {
            id: platform.accounting().next_id(),
            specification,
            rules,
            platform,
            descriptor: None,
            prepared: None,
        })
    }

    /// A number that names this command in traces and misuse reports.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The device's specification.
    pub fn specification(&self) -> &Specification {
        &self.specification
    }

    /// The specification with defaults resolved.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The bound descriptor.
    pub fn memory_descriptor(&self) -> Option<&Arc<IoMemoryDescriptor>> {
        self.descriptor.as_ref()
    }

    /// Binds `descriptor` (`setMemoryDescriptor`), then prepares all of it if
    /// `auto_prepare`. `Busy` if another descriptor is bound and prepared.
    #[track_caller]
    pub fn set_memory_descriptor(
        &mut self,
        descriptor: Arc<IoMemoryDescriptor>,
        auto_prepare: bool,
    ) -> Result<(), IoReturn> {
        if self.prepared.is_some() {
            let same = self.descriptor.as_ref().is_some_and(|bound| Arc::ptr_eq(bound, &descriptor));
            return if same { Ok(()) } else { Err(IoReturn::Busy) };
        }
        self.descriptor = Some(descriptor);
        if auto_prepare { self.prepare(0, 0) } else { Ok(()) }
    }

    /// Unbinds the descriptor (`clearMemoryDescriptor`). If prepared, completes
    /// every nested prepare when `auto_complete`, else fails with `NotReady`.
    #[track_caller]
    pub fn clear_memory_descriptor(&mut self, auto_complete: bool) -> Result<(), IoReturn> {
        if self.prepared.is_some() {
            if !auto_complete {
                self.report(Misuse::ClearWhilePrepared, Location::caller());
                return Err(IoReturn::NotReady);
            }
            while self.prepared.is_some() {
                self.complete()?;
            }
        }
        self.descriptor = None;
        Ok(())
    }

    /// Whether the command is prepared.
    pub fn is_prepared(&self) -> bool {
        self.prepared.is_some()
    }

    /// The prepared range `(offset, length)` within the descriptor.
    pub fn prepared_range(&self) -> Option<(u64, u64)> {
        self.prepared.as_ref().map(|p| (p.offset, p.length))
    }

    /// All device segments of the prepared range, in order.
    pub fn segments(&self) -> &[Segment] {
        self.prepared.as_ref().map_or(&[], |p| &p.segments)
    }

    /// The bounce buffers in use.
    pub fn bounce_buffers(&self) -> &[BounceBuffer] {
        self.prepared.as_ref().map_or(&[], |p| &p.buffers)
    }

    /// Whether the whole prepared range sits in one bounce buffer.
    pub fn is_wholly_double_buffered(&self) -> bool {
        self.prepared.as_ref().is_some_and(|p| p.layout.wholly_double_buffered())
    }

    /// Bytes of the prepared range that are bounced.
    pub fn bounced_bytes(&self) -> u64 {
        self.bounce_buffers().iter().map(|buffer| buffer.length).sum()
    }

    /// Prepares `[offset, offset + length)` of the descriptor for the device
    /// (`prepare`); `length` 0 means "to the end". A nested prepare of the same
    /// range only counts. On any error the command is exactly as before.
    #[track_caller]
    pub fn prepare(&mut self, offset: u64, length: u64) -> Result<(), IoReturn> {
        let at = Location::caller();
        let descriptor = self.descriptor.clone().ok_or(IoReturn::BadArgument)?;
        if offset >= descriptor.length() {
            return Err(IoReturn::BadArgument);
        }
        let length = if length == 0 { descriptor.length() - offset } else { length };
        if offset.checked_add(length).is_none_or(|end| end > descriptor.length()) {
            return Err(IoReturn::BadArgument);
        }
        if let Some(prepared) = &mut self.prepared {
            if (prepared.offset, prepared.length) != (offset, length) {
                return Err(IoReturn::NotReady);
            }
            prepared.count += 1;
            return Ok(());
        }
        if length > self.rules.max_transfer {
            return Err(IoReturn::NoSpace);
        }
        if !length.is_multiple_of(self.rules.alignment_length) {
            return Err(IoReturn::NotAligned);
        }
        descriptor.prepare()?;
        dma_trace!(
            "prepare: command #{} for a {}-bit device, descriptor #{} ({:?}), bytes {:#x}..{:#x}",
            self.id,
            self.rules.address_bits,
            descriptor.id(),
            descriptor.direction(),
            offset,
            offset + length
        );
        let planned = descriptor.runs(offset, length).and_then(|runs| self.realize_best(&runs, length));
        let (layout, buffers, segments) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                descriptor.complete()?;
                return Err(error);
            }
        };
        let prepared = Prepared { offset, length, count: 1, layout, buffers, segments, device_owned: true, at };
        // A fresh bounce buffer always starts as a copy of the descriptor, whatever
        // the direction, so the device never sees stale memory.
        if let Err(error) = self.copy(&descriptor, &prepared, true, "prepare fills fresh bounce buffers") {
            self.free_buffers(&prepared.buffers);
            descriptor.complete()?;
            return Err(error);
        }
        let accounting = self.platform.accounting();
        accounting.count_transfer(!prepared.buffers.is_empty());
        accounting.command_prepared(true);
        descriptor.set_device_owned(true);
        trace_segments(&prepared.segments);
        self.prepared = Some(prepared);
        Ok(())
    }

    /// Plans the runs; if the planned segments break a rule, plans one buffer.
    fn realize_best(
        &self,
        runs: &[(u64, u64)],
        length: u64,
    ) -> Result<(Layout, Vec<BounceBuffer>, Vec<Segment>), IoReturn> {
        let coherent = self.descriptor.as_ref().is_some_and(|descriptor| descriptor.is_coherent());
        let layout = plan::plan(runs, &self.rules);
        if super::trace::enabled() {
            self.trace_plan(runs, &layout);
        }
        let (layout, buffers, segments) = self.realize(layout)?;
        let bounces_shared_memory = coherent && !buffers.is_empty();
        if plan::segments_valid(&segments, &self.rules) && !bounces_shared_memory {
            return Ok((layout, buffers, segments));
        }
        self.free_buffers(&buffers);
        if coherent {
            // Shared memory must stay where both sides look for it.
            return Err(IoReturn::NotPermitted);
        }
        dma_trace!(
            "  {} segments would break a rule (at most {}, lengths in units of {}): double-buffering the whole transfer",
            segments.len(),
            self.rules.max_segments,
            self.rules.alignment_length
        );
        self.realize_single(length)
    }

    fn realize_single(&self, length: u64) -> Result<(Layout, Vec<BounceBuffer>, Vec<Segment>), IoReturn> {
        let (layout, buffers, segments) = self.realize(plan::single_buffer(length))?;
        if plan::segments_valid(&segments, &self.rules) {
            return Ok((layout, buffers, segments));
        }
        self.free_buffers(&buffers);
        Err(IoReturn::NoResources)
    }

    /// Allocates the layout's bounce buffers and computes its segments.
    fn realize(&self, layout: Layout) -> Result<(Layout, Vec<BounceBuffer>, Vec<Segment>), IoReturn> {
        let mut buffers = Vec::with_capacity(layout.bounce_sizes.len());
        for &size in &layout.bounce_sizes {
            match self.allocate_buffer(size) {
                Ok(buffer) => buffers.push(buffer),
                Err(error) => {
                    self.free_buffers(&buffers);
                    return Err(error);
                }
            }
        }
        let addresses: Vec<u64> = buffers.iter().map(|buffer| buffer.address.as_u64()).collect();
        let segments = plan::segments(&layout, &addresses, &self.rules);
        Ok((layout, buffers, segments))
    }

    fn allocate_buffer(&self, length: u64) -> Result<BounceBuffer, IoReturn> {
        let pages = length.div_ceil(FRAME_SIZE) as usize;
        let accounting = self.platform.accounting();
        if !accounting.reserve_pages(pages) {
            return Err(IoReturn::NoResources);
        }
        let limit = self.rules.highest_address.checked_add(1).and_then(|end| PhysAddr::try_new(end).ok());
        let alignment = self.rules.alignment.max(self.rules.alignment_internal).max(FRAME_SIZE);
        let constraints = Constraints { below: limit, alignment, boundary: 0 };
        match self.platform.allocate_frames(pages, constraints, false) {
            Ok(address) => {
                dma_trace!("  bounce buffer: {pages} page(s) at {:#x}, reachable by the device", address.as_u64());
                Ok(BounceBuffer { address, length, pages })
            }
            Err(_) => {
                accounting.release_pages(pages);
                Err(IoReturn::NoResources)
            }
        }
    }

    fn free_buffers(&self, buffers: &[BounceBuffer]) {
        for buffer in buffers {
            self.platform.free_frames(buffer.address, buffer.pages);
            self.platform.accounting().release_pages(buffer.pages);
        }
    }

    /// Copies every bounced piece: descriptor -> bounce (`towards_device`) or back.
    fn copy(
        &self,
        descriptor: &IoMemoryDescriptor,
        prepared: &Prepared,
        towards_device: bool,
        why: &str,
    ) -> Result<(), IoReturn> {
        let mut total = 0;
        for piece in &prepared.layout.pieces {
            let Placement::Bounce { buffer, offset } = piece.placement else {
                continue;
            };
            let bounce = prepared.buffers[buffer].address + offset;
            let start = prepared.offset + piece.start;
            descriptor.for_each_run(start, piece.length, |position, physical, run| {
                let bounce = bounce + (position - start);
                // SAFETY: `physical` is part of the prepared descriptor and `bounce` part
                // of this command's own bounce buffer; they cannot overlap (bounce
                // frames come from the allocator) and nobody else copies them now.
                unsafe {
                    if towards_device {
                        self.platform.copy_physical(bounce, physical, run);
                    } else {
                        self.platform.copy_physical(physical, bounce, run);
                    }
                }
            })?;
            total += piece.length;
        }
        if total > 0 {
            self.platform.accounting().count_copy(towards_device, total);
            let arrow = if towards_device { "descriptor -> bounce" } else { "bounce -> descriptor" };
            dma_trace!("  copy {arrow}: {total} bytes ({why})");
        }
        Ok(())
    }

    /// Device-visible segments from `offset` (relative to the prepared range), at
    /// most `max`, and the offset after the last one (`genIOVMSegments`).
    pub fn gen_iovm_segments(&self, offset: u64, max: usize) -> Result<(Vec<Segment>, u64), IoReturn> {
        let prepared = self.prepared.as_ref().ok_or(IoReturn::NotReady)?;
        if max == 0 {
            return Err(IoReturn::BadArgument);
        }
        if offset >= prepared.length {
            return Err(IoReturn::Overrun);
        }
        let mut output = Vec::new();
        let mut position = 0;
        for segment in &prepared.segments {
            let end = position + segment.length;
            if end > offset && output.len() < max {
                let skip = offset.saturating_sub(position);
                output.push(Segment { address: segment.address + skip, length: segment.length - skip });
            }
            position = end;
            if output.len() == max {
                break;
            }
        }
        Ok((output, position))
    }

    /// Writes segments from `offset` into `output` as records in the
    /// specification's output format; returns how many and the next offset.
    pub fn write_segments(&self, offset: u64, output: &mut [u8]) -> Result<(usize, u64), IoReturn> {
        let format = self.specification.output;
        let room = output.len() / format.record_size();
        let (segments, next) = self.gen_iovm_segments(offset, room)?;
        for (segment, record) in segments.iter().zip(output.chunks_mut(format.record_size())) {
            format.encode(*segment, record)?;
        }
        Ok((segments.len(), next))
    }

    /// Brings descriptor and bounce buffers into sync (`synchronize`):
    /// `OUT` copies descriptor -> bounce, `IN` bounce -> descriptor (whatever the
    /// descriptor's direction), `FORCE_DOUBLE_BUFFER` moves the whole prepared
    /// range into one new page-aligned buffer. `BadArgument` for invalid options,
    /// `NotReady` if not prepared.
    #[track_caller]
    pub fn synchronize(&mut self, options: SyncOptions) -> Result<(), IoReturn> {
        options.validate()?;
        let Some(mut prepared) = self.prepared.take() else {
            self.report(Misuse::SynchronizeWithoutPrepare, Location::caller());
            return Err(IoReturn::NotReady);
        };
        let result = self.synchronize_prepared(&mut prepared, options);
        self.prepared = Some(prepared);
        result
    }

    fn synchronize_prepared(&self, prepared: &mut Prepared, options: SyncOptions) -> Result<(), IoReturn> {
        let descriptor = self.descriptor.clone().ok_or(IoReturn::NotReady)?;
        dma_trace!("synchronize({}): command #{}", describe_options(options), self.id);
        if options.contains(SyncOptions::FORCE_DOUBLE_BUFFER) && descriptor.is_coherent() {
            return Err(IoReturn::NotPermitted);
        }
        if options.contains(SyncOptions::FORCE_DOUBLE_BUFFER) && !prepared.layout.wholly_double_buffered() {
            let (layout, buffers, segments) = self.realize_single(prepared.length)?;
            if descriptor.direction().includes_in() {
                self.copy(&descriptor, prepared, false, "keep what the device already wrote")?;
            }
            self.free_buffers(&prepared.buffers);
            prepared.layout = layout;
            prepared.buffers = buffers;
            prepared.segments = segments;
            self.copy(&descriptor, prepared, true, "fill the new buffer")?;
            trace_segments(&prepared.segments);
        }
        if options.contains(SyncOptions::IN) {
            self.copy(&descriptor, prepared, false, "synchronize(In)")?;
            if prepared.device_owned {
                descriptor.set_device_owned(false);
                prepared.device_owned = false;
            }
        }
        if options.contains(SyncOptions::OUT) {
            self.copy(&descriptor, prepared, true, "synchronize(Out)")?;
            if !prepared.device_owned {
                descriptor.set_device_owned(true);
                prepared.device_owned = true;
            }
        }
        Ok(())
    }

    /// One whole transfer in one call: binds `descriptor`, prepares
    /// `[offset, offset + length)` (0 = to the end), forces double buffering if
    /// `options` ask, hands the device segments to `transfer`, then completes
    /// (copying bounced data back for `In`) and unbinds, whatever `transfer`
    /// returned. With `options.restrict`, the transfer runs on a temporary command
    /// whose specification is this one's tightened by the restriction.
    #[track_caller]
    pub fn with_transfer<T>(
        &mut self,
        descriptor: Arc<IoMemoryDescriptor>,
        offset: u64,
        length: u64,
        options: &TransferOptions,
        transfer: impl FnOnce(&[Segment]) -> Result<T, IoReturn>,
    ) -> Result<T, IoReturn> {
        let mut restricted;
        let command = match options.restrict {
            Some(restrict) => {
                restricted = IoDmaCommand::new(self.platform, self.specification.restricted_by(&restrict))?;
                &mut restricted
            }
            None => self,
        };
        command.set_memory_descriptor(descriptor, false)?;
        let result = command.prepare(offset, length).and_then(|()| {
            if options.force_double_buffer {
                // The move fills the new buffer from the descriptor: no `Out` needed.
                command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER)?;
            }
            transfer(command.segments())
        });
        let completed = command.clear_memory_descriptor(true);
        let value = result?;
        completed?;
        Ok(value)
    }

    /// Ends one prepare (`complete`). The last one copies bounced data back to the
    /// descriptor if its direction includes `In`, then frees the bounce buffers.
    /// `NotReady` if not prepared.
    #[track_caller]
    pub fn complete(&mut self) -> Result<(), IoReturn> {
        let Some(prepared) = self.prepared.as_mut() else {
            self.report(Misuse::CompleteWithoutPrepare, Location::caller());
            return Err(IoReturn::NotReady);
        };
        if prepared.count > 1 {
            prepared.count -= 1;
            return Ok(());
        }
        let prepared = self.prepared.take().expect("checked above");
        let descriptor = self.descriptor.clone().ok_or(IoReturn::NotReady)?;
        dma_trace!("complete: command #{}", self.id);
        let copied = if descriptor.direction().includes_in() {
            self.copy(&descriptor, &prepared, false, "complete copies what the device wrote")
        } else {
            Ok(())
        };
        self.free_buffers(&prepared.buffers);
        let pages: usize = prepared.buffers.iter().map(|buffer| buffer.pages).sum();
        if pages > 0 {
            dma_trace!("  freed {pages} bounce page(s)");
        }
        if prepared.device_owned {
            descriptor.set_device_owned(false);
        }
        descriptor.complete()?;
        self.platform.accounting().command_prepared(false);
        copied
    }

    fn report(&self, misuse: Misuse, location: &'static Location<'static>) {
        self.platform.accounting().report(MisuseReport {
            misuse,
            command: Some(self.id),
            descriptor: self.descriptor.as_ref().map(|descriptor| descriptor.id()),
            location,
        });
    }
}

/// Lists the segments the device gets.
fn trace_segments(segments: &[Segment]) {
    dma_trace!("  {} segment(s) for the device:", segments.len());
    for (index, segment) in segments.iter().enumerate() {
        dma_trace!("    [{index}] {:#x} + {:#x} bytes", segment.address.as_u64(), segment.length);
    }
}

/// `In`, `Out`, `ForceDoubleBuffer` joined with `|`.
fn describe_options(options: SyncOptions) -> &'static str {
    let force = options.contains(SyncOptions::FORCE_DOUBLE_BUFFER);
    match (force, options.contains(SyncOptions::IN), options.contains(SyncOptions::OUT)) {
        (true, true, _) => "ForceDoubleBuffer | In",
        (true, _, true) => "ForceDoubleBuffer | Out",
        (true, _, _) => "ForceDoubleBuffer",
        (false, true, _) => "In",
        _ => "Out",
    }
}

impl IoDmaCommand {
    /// Traces each physical run and where the plan put it.
    fn trace_plan(&self, runs: &[(u64, u64)], layout: &Layout) {
        for (&(address, length), piece) in runs.iter().zip(&layout.pieces) {
            let what = match piece.placement {
                Placement::Direct(_) => "the device reaches it: used in place, no copy",
                Placement::Bounce { .. } if !self.rules.reachable(address, length) => {
                    "beyond the device's address limit: bounced"
                }
                Placement::Bounce { .. } => "start breaks the alignment: bounced",
            };
            dma_trace!("  run {address:#x} + {length:#x} bytes: {what}");
        }
    }
}

impl Drop for IoDmaCommand {
    fn drop(&mut self) {
        if let Some(prepared) = &self.prepared {
            self.report(Misuse::DroppedWhilePrepared, prepared.at);
            while self.prepared.is_some() {
                if self.complete().is_err() {
                    break;
                }
            }
        }
    }
}
