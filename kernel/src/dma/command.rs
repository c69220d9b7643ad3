//! `IoDmaCommand`: turns a memory descriptor into segments a particular device can
//! use, bouncing what it cannot reach, and keeps the two copies in sync.
//!
//! The life of a transfer: `set_memory_descriptor` binds the memory; `prepare`
//! plans the segments, allocates bounce buffers where the specification demands
//! them and fills them from the descriptor; the driver gives the device the
//! segments from `gen_iovm_segments`; `synchronize` copies between the descriptor
//! and the bounce buffers when the driver asks; `complete` copies device-written
//! data back (for `In` transfers) and frees the bounce buffers. On a machine
//! whose DMA does not snoop the CPU's caches, prepare, synchronize and complete
//! also clean and invalidate the memory the device uses (`IoDmaCommand::maintain`).
//!
//! This file is that state machine, but for `synchronize` (`command/synchronize.rs`).
//! What a prepared range is made of (plan,
//! bounce buffers, IOMMU mapping) is `realization.rs`, the copies are
//! `bounce.rs`, the segments as the device reads them `segments.rs`, and the
//! one-call transfer `with_transfer.rs`.

mod synchronize;

use alloc::sync::Arc;
use core::ops::Range;
use core::panic::Location;

use super::address::Segment;
use super::bounce::{self, BounceBuffer, Maintenance};
use super::descriptor::{Holder, Undone};
use super::failure::{Cause, IoFailure};
use super::hooks::{HOOKS, Site, Skip};
use super::mapper::{IoMapper, MappedRange, Mapping};
use super::mapping::IovaChoice;
use super::misuse::{Misuse, MisuseReport};
use super::realization::{self, Realization, Realizer};
use super::specification::Rules;
use super::statistics::{Counted, Statistics, TransferKind};
use super::trace::dma_trace;
use super::{Coherence, DmaPlatform, IoDirection, IoMemoryDescriptor, IoReturn, Specification};

/// How a prepare will be completed, which decides whether an `In` transfer's
/// fresh bounce buffers must be filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Completion {
    /// `complete()`: the whole prepared range is copied back, so every bounce
    /// byte must hold the descriptor's data first (a byte the device did not
    /// write would otherwise carry stale memory into the descriptor).
    WholeRange,
    /// `complete_moved(bytes)`: only the bytes the device reports are copied
    /// back, so an `In` transfer needs no fill at all.
    DeviceCount,
}

#[derive(Debug)]
struct Prepared {
    offset: u64,
    length: u64,
    count: u32,
    /// The plan, the bounce buffers and the IOMMU mapping behind the segments.
    realization: Realization,
    /// Who holds the memory now (the device from prepare on).
    holder: Holder,
    /// Whether the bounce buffers hold the descriptor's bytes (not stale memory).
    filled: bool,
    /// What this prepare added to the statistics, for [`IoDmaCommand::withdraw_prepare`].
    counted: Counted,
    /// Why the IOMMU refused DMA through a mapping the transfer left already
    /// (a forced double buffer's old one), for `complete` to report.
    refused: Option<Cause>,
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
    /// The platform's IOMMU domain, looked up once: a platform keeps its
    /// domain for its life. Whether it translates is asked at each prepare.
    domain: Option<&'static dyn IoMapper>,
    /// The platform's counters, looked up once.
    statistics: &'static Statistics,
    /// Whether the platform's DMA snoops the CPU's caches, asked once: a
    /// platform keeps its answer for its life.
    coherence: Coherence,
    descriptor: Option<Arc<IoMemoryDescriptor>>,
    prepared: Option<Prepared>,
    mapping: Mapping,
    iova_choice: IovaChoice,
}

impl IoDmaCommand {
    /// A command for a device with `specification` (`IODMACommand::withSpecification`).
    /// `BadArgument` if the specification is invalid.
    #[doc(alias = "withSpecification")]
    pub fn new(platform: &'static dyn DmaPlatform, specification: Specification) -> Result<Self, IoReturn> {
        let rules = specification.rules()?;
        let accounting = platform.accounting();
        Ok(IoDmaCommand {
            id: accounting.next_id(),
            specification,
            rules,
            platform,
            domain: platform.mapper(),
            statistics: accounting.statistics(),
            coherence: platform.coherence(),
            descriptor: None,
            prepared: None,
            mapping: Mapping::Mapped,
            iova_choice: IovaChoice::Anywhere,
        })
    }

    /// Asks for IOVA = physical address behind an IOMMU (coherent memory, whose
    /// device address must survive a switch to pass-through).
    pub(crate) fn map_identically(&mut self) {
        self.iova_choice = IovaChoice::Identity;
    }

    /// Whether this command's transfers go through the device's IOMMU domain
    /// (XNU's `kMapped`, the default) or give it physical addresses (`kBypassed`,
    /// which works only where the domain passes DMA through untranslated).
    /// `Busy` while prepared.
    pub fn set_mapping(&mut self, mapping: Mapping) -> Result<(), IoReturn> {
        if self.prepared.is_some() {
            return Err(IoReturn::Busy);
        }
        self.mapping = mapping;
        Ok(())
    }

    /// The mapping choice (see [`IoDmaCommand::set_mapping`]).
    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    /// The IOMMU domain that translates this command's segments, if any: the
    /// platform's mapper, when the command is mapped and the domain translates.
    pub fn mapper(&self) -> Option<&'static dyn IoMapper> {
        self.domain.filter(|domain| self.mapping == Mapping::Mapped && domain.translating())
    }

    /// The IOVA range the prepared segments lie in, when an IOMMU translates them.
    pub fn mapped_range(&self) -> Option<MappedRange> {
        self.prepared.as_ref().and_then(|prepared| prepared.realization.mapped)
    }

    /// A number that names this command in traces and misuse reports.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The machine the command works on.
    pub fn platform(&self) -> &'static dyn DmaPlatform {
        self.platform
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

    /// Whether the command is free for a new transfer: not prepared, and no
    /// descriptor bound.
    pub(crate) fn is_idle(&self) -> bool {
        self.prepared.is_none() && self.descriptor.is_none()
    }

    /// The prepared range `(offset, length)` within the descriptor.
    pub fn prepared_range(&self) -> Option<(u64, u64)> {
        self.prepared.as_ref().map(|p| (p.offset, p.length))
    }

    /// All device segments of the prepared range, in order.
    pub fn segments(&self) -> &[Segment] {
        self.prepared.as_ref().map_or(&[], |p| &p.realization.segments)
    }

    /// The bounce buffers in use.
    pub fn bounce_buffers(&self) -> &[BounceBuffer] {
        self.prepared.as_ref().map_or(&[], |p| &p.realization.buffers)
    }

    /// Whether the whole prepared range sits in one bounce buffer.
    pub fn is_wholly_double_buffered(&self) -> bool {
        self.prepared.as_ref().is_some_and(|p| p.realization.layout.wholly_double_buffered())
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
        self.prepare_for(offset, length, Completion::WholeRange, at).map(|_| ()).map_err(|failure| failure.code())
    }

    /// `prepare`, saying how the transfer will be completed and why it fails;
    /// returns the bytes prepared.
    pub(crate) fn prepare_for(
        &mut self,
        offset: u64,
        length: u64,
        completion: Completion,
        at: &'static Location<'static>,
    ) -> Result<u64, IoFailure> {
        let descriptor = self.descriptor.clone().ok_or(IoFailure::new(IoReturn::BadArgument, Cause::NoMemoryBound))?;
        let size = descriptor.length();
        let length = if length == 0 { size.saturating_sub(offset) } else { length };
        if offset >= size || offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::OutOfRange { offset, length, size }));
        }
        if let Some(prepared) = &mut self.prepared {
            if descriptor.is_abandoned() {
                // A device given up on may still write it: no other device
                // gets it (a fresh prepare asks the descriptor, below).
                return Err(IoFailure::new(IoReturn::NotPermitted, Cause::MemoryAbandoned));
            }
            if (prepared.offset, prepared.length) != (offset, length) {
                let cause = Cause::NestedPrepareMismatch { offset: prepared.offset, length: prepared.length };
                return Err(IoFailure::new(IoReturn::NotReady, cause));
            }
            prepared.count += 1;
            return Ok(length);
        }
        if length > self.rules.max_transfer {
            let cause = Cause::TransferTooLong { length, limit: self.rules.max_transfer };
            return Err(IoFailure::new(IoReturn::NoSpace, cause));
        }
        if !length.is_multiple_of(self.rules.alignment_length) {
            let cause = Cause::LengthNotAligned { length, alignment: self.rules.alignment_length };
            return Err(IoFailure::new(IoReturn::NotAligned, cause));
        }
        // Refused for memory abandoned to a device: no other device gets it.
        let runs = descriptor.prepare_for_command(offset, length)?;
        dma_trace!(
            "prepare: command #{} for a {}-bit device, descriptor #{} ({:?}), bytes {:#x}..{:#x}",
            self.id,
            self.rules.address_bits,
            descriptor.id(),
            descriptor.direction(),
            offset,
            offset + length
        );
        let (mut realization, addresses) = match self.realizer(&descriptor, at).best(&runs, length) {
            Ok(realized) => realized,
            Err(error) => {
                // Memory the IOMMU may still let a device reach was abandoned
                // by the realizer: it stays prepared for ever, and this undoes nothing.
                descriptor.complete_for_command(Holder::Device);
                return Err(error);
            }
        };
        // Only an experiment's hook makes them other than planned.
        addresses.apply(&mut realization.segments, self.rules.address_bits);
        let kind = TransferKind::with_buffers(realization.buffers.len());
        let counted = Counted::prepared(kind);
        let mut prepared = Prepared {
            offset,
            length,
            count: 1,
            realization,
            holder: Holder::Device,
            filled: false,
            counted,
            refused: None,
            at,
        };
        // A fresh bounce buffer starts as a copy of the descriptor whenever the
        // device reads it (Out) or whenever the whole range will be copied back:
        // then no stale byte of the bounce memory can ever reach the descriptor.
        // An `In` transfer completed with the device's byte count copies back only
        // what the device wrote, so it skips the fill.
        let must_fill = descriptor.direction().includes_out() || completion == Completion::WholeRange;
        if must_fill && !prepared.realization.buffers.is_empty() {
            let bytes = self.fill(&descriptor, &prepared, "prepare fills fresh bounce buffers");
            prepared.counted.copied(IoDirection::Out, bytes);
        }
        prepared.filled = must_fill;
        // Whatever the direction, the device must find in memory what the CPU
        // last wrote: the bytes it reads, and for `In` the bytes it does not
        // write, which the copy back or the CPU's next read takes from memory.
        self.maintain(&descriptor, &prepared, Maintenance::Clean, 0..u64::MAX, "prepare");
        self.statistics.count_prepared(kind);
        trace_segments(&prepared.realization.segments);
        self.prepared = Some(prepared);
        Ok(length)
    }

    /// Fills the bounce buffers from the descriptor before the device reads
    /// them, unless a hook (a learner's experiment) skips it this once.
    /// Returns the bytes copied.
    fn fill(&self, descriptor: &IoMemoryDescriptor, prepared: &Prepared, why: &str) -> u64 {
        if let Some(hooks) = HOOKS.get()
            && hooks.skip(Site::of(self.platform.accounting()), self.id, Skip::Fill)
        {
            return 0;
        }
        self.copy(descriptor, prepared, IoDirection::Out, 0..u64::MAX, why)
    }

    /// Copies the bounced pieces of `window` (bytes of the prepared range; see
    /// [`BouncedRange::copy`](super::bounce::BouncedRange::copy)); returns the bytes copied.
    fn copy(
        &self,
        descriptor: &IoMemoryDescriptor,
        prepared: &Prepared,
        way: IoDirection,
        window: Range<u64>,
        why: &str,
    ) -> u64 {
        prepared.realization.bounced(descriptor, prepared.offset).copy(self.platform, way, window, why)
    }

    /// Cleans or invalidates the memory the device uses for `window` of the
    /// prepared range (see [`BouncedRange::maintain`](super::bounce::BouncedRange::maintain)),
    /// on a machine whose DMA does not snoop the CPU's caches; a coherent machine
    /// pays this one test. Memory shared with a device for its life is skipped:
    /// the CPU reaches it uncached.
    ///
    /// Where, after Linux's table for a non-coherent CPU (Russell King, 2018,
    /// quoted in arch/arc/mm/dma.c), with map = prepare or the new buffer of a
    /// `ForceDoubleBuffer`, for_device = `synchronize(Out)`, for_cpu =
    /// `synchronize(In)`, unmap = complete or the old memory of a
    /// `ForceDoubleBuffer`:
    ///
    /// | direction | map | for_device | for_cpu | unmap |
    /// |---|---|---|---|---|
    /// | `Out` | clean | clean | invalidate (1) | nothing |
    /// | `In` | clean (2) | clean (2) | invalidate | invalidate |
    /// | `InOut` | clean | clean | invalidate | invalidate |
    ///
    /// (1) Linux does nothing here; dmakit's `synchronize(In)` copies whatever
    /// the direction, so it invalidates whatever the direction.
    /// (2) Linux invalidates; dmakit cleans, as arm64 does: a partial read
    /// leaves the bytes the device did not write as the caller left them, and
    /// an invalidate would drop the CPU's changes to them not yet written back.
    fn maintain(
        &self,
        descriptor: &IoMemoryDescriptor,
        prepared: &Prepared,
        maintenance: Maintenance,
        window: Range<u64>,
        why: &str,
    ) {
        if self.coherence == Coherence::Coherent || descriptor.is_coherent() {
            return;
        }
        prepared.realization.bounced(descriptor, prepared.offset).maintain(self.platform, maintenance, window, why);
    }

    /// What a realization of this command's ranges needs to know.
    fn realizer<'a>(&'a self, descriptor: &'a IoMemoryDescriptor, at: &'static Location<'static>) -> Realizer<'a> {
        Realizer {
            platform: self.platform,
            rules: &self.rules,
            mapper: self.mapper(),
            domain: self.domain,
            descriptor,
            iova_choice: self.iova_choice,
            command: self.id,
            at,
        }
    }

    /// Ends one prepare (`complete`). The last one copies bounced data back to the
    /// descriptor if its direction includes `In`, then frees the bounce buffers.
    /// `NotReady` if not prepared.
    #[track_caller]
    pub fn complete(&mut self) -> Result<(), IoReturn> {
        let moved = self.prepared.as_ref().map_or(0, |prepared| prepared.length);
        self.complete_moved(moved, Location::caller()).map_err(|failure| failure.code())
    }

    /// Ends one prepare after the device moved `moved` bytes from the start of the
    /// prepared range: the last complete copies back exactly those bytes (for an
    /// `In` direction) and frees the bounce buffers. Everything is released
    /// whatever the result; the result is `Underrun` when the device moved fewer
    /// bytes than were prepared (XNU's `kIOReturnUnderrun`, Linux's residual,
    /// FreeBSD's `bio_resid`), and `IoError` with [`Cause::DeviceClaimedTooMuch`]
    /// when a device claims more (a device is not trusted: nothing past the
    /// prepared range is copied back). The one exception: when the IOMMU does not
    /// confirm the unmap ([`Cause::InvalidationFailed`]), nothing the device may
    /// still reach is released: see [`Realizer::keep_from_reuse`].
    pub(crate) fn complete_moved(&mut self, moved: u64, at: &'static Location<'static>) -> Result<(), IoFailure> {
        let Some(prepared) = self.prepared.as_mut() else {
            self.report(Misuse::CompleteWithoutPrepare, at);
            return Err(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
        };
        if prepared.count > 1 {
            prepared.count -= 1;
            return Ok(());
        }
        let Some(descriptor) = self.descriptor.clone() else {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::NoMemoryBound));
        };
        let prepared = self.prepared.take().expect("checked above");
        dma_trace!("complete: command #{} ({moved} of {} bytes moved)", self.id, prepared.length);
        // Behind an IOMMU the pages are unmapped before anything else: from here
        // on the device cannot reach them, whatever it still tries.
        // A refused DMA, or faults lost while it was in flight (a refusal it
        // cannot rule out), fails the transfer: nothing is copied back.
        let (unmapped, refused) = match (prepared.realization.mapped, self.domain) {
            (Some(range), Some(domain)) => (realization::unmap(domain, range), realization::refusal(domain, range)),
            _ => (Ok(()), None),
        };
        let refused = refused.or(prepared.refused);
        let result = match unmapped {
            // ... unless the IOMMU did not confirm it: then the device may still
            // reach the memory, so nothing is copied back and nothing is freed.
            Err(failure) => Err(self.realizer(&descriptor, at).keep_from_reuse(&prepared.realization, failure)),
            Ok(()) => {
                if descriptor.direction().includes_in() {
                    // The CPU is about to read what the device wrote, from the
                    // bounce buffer or in place: not from its cache.
                    self.maintain(&descriptor, &prepared, Maintenance::Invalidate, 0..moved, "complete");
                }
                // Only bounced pieces have anything to copy back or free.
                let buffers = &prepared.realization.buffers;
                if !buffers.is_empty() {
                    if refused.is_none() && descriptor.direction().includes_in() {
                        self.copy_back(&descriptor, &prepared, moved);
                    }
                    bounce::free(self.platform, buffers);
                    dma_trace!("  freed {} bounce page(s)", bounce::pages(buffers));
                }
                match refused {
                    Some(cause) => Err(IoFailure::new(IoReturn::DmaError, cause)),
                    None if moved < prepared.length => {
                        let cause = Cause::ShortTransfer { moved, prepared: prepared.length };
                        Err(IoFailure::new(IoReturn::Underrun, cause))
                    }
                    None if moved > prepared.length => {
                        let cause = Cause::DeviceClaimedTooMuch { claimed: moved, prepared: prepared.length };
                        Err(IoFailure::new(IoReturn::IoError, cause))
                    }
                    None => Ok(()),
                }
            }
        };
        self.statistics.command_released();
        // The memory goes back to the CPU, unless it was abandoned to the
        // device (an unmap the IOMMU did not confirm): then it stays prepared,
        // and lent, for ever, and the command lets it go.
        if descriptor.complete_for_command(prepared.holder) == Undone::StaysAbandoned {
            self.descriptor = None;
        }
        result
    }

    /// Copies the first `moved` bytes the device wrote back from the bounce
    /// buffers, unless a hook (a learner's experiment) skips it this once.
    fn copy_back(&self, descriptor: &IoMemoryDescriptor, prepared: &Prepared, moved: u64) {
        if let Some(hooks) = HOOKS.get()
            && hooks.skip(Site::of(self.platform.accounting()), self.id, Skip::CopyBack)
        {
            return;
        }
        self.copy(descriptor, prepared, IoDirection::In, 0..moved, "complete copies what the device wrote");
    }

    /// Undoes a prepare nobody saw (no device was given its segments, nothing
    /// was copied back): it is released as `complete_moved(0)` releases it,
    /// and what it added to the statistics is taken back out, so they read as
    /// if it never happened. For `DmaTransfer::prepare` when its forced double
    /// buffering fails. A nested prepare is only counted down.
    pub(crate) fn withdraw_prepare(&mut self, at: &'static Location<'static>) {
        let counted = match &self.prepared {
            Some(prepared) if prepared.count == 1 => Some(prepared.counted),
            _ => None,
        };
        // A device never saw the segments, so whatever the release says (a
        // short transfer: no byte moved) is no failure of this undo.
        let released = self.complete_moved(0, at);
        match (counted, released) {
            // An unmap the IOMMU did not confirm keeps memory for ever: that
            // stays counted, and so does the prepare that took it.
            (Some(_), Err(failure)) if matches!(failure.cause(), Cause::InvalidationFailed { .. }) => {}
            (Some(counted), _) => self.statistics.withdraw(&counted),
            (None, _) => {}
        }
    }

    /// Gives up a prepared transfer whose device may still be writing: nothing is
    /// freed. The bounce pages stay allocated (and counted as leaked) and the
    /// descriptor stays prepared for ever, so its memory is never reused and the
    /// CPU may not read it. The command is unbound and can be used again.
    /// `misuse` says how it came to this, for the debugging mode's log.
    pub(crate) fn abandon(&mut self, misuse: Misuse, at: &'static Location<'static>) {
        let Some(prepared) = self.prepared.take() else {
            return;
        };
        let pages = bounce::pages(&prepared.realization.buffers);
        self.statistics.count_leak(pages);
        self.statistics.command_released();
        self.report(misuse, at);
        if let Some(descriptor) = self.descriptor.take() {
            log::error!(
                "DMA: command #{} abandoned with the device still able to write: {pages} bounce page(s) and \
                 descriptor #{} ({} bytes) are leaked, never reused",
                self.id,
                descriptor.id(),
                descriptor.length()
            );
            descriptor.abandon();
        }
    }

    fn report(&self, misuse: Misuse, location: &'static Location<'static>) {
        self.platform.accounting().misuse().report(MisuseReport {
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

impl Drop for IoDmaCommand {
    /// A command dropped while prepared may have a device still writing through
    /// its segments: freeing its bounce pages (or letting the descriptor's memory
    /// go) could let that device write into memory already reused. It leaks both
    /// and says so; a driver stops its device and completes first.
    fn drop(&mut self) {
        if let Some(prepared) = &self.prepared {
            let at = prepared.at;
            self.abandon(Misuse::DroppedWhilePrepared, at);
        }
    }
}
