//! The realization of a prepared range: the plan (which pieces the device uses
//! in place, which go through a bounce buffer), the bounce buffers, and, behind
//! an IOMMU, the mapping of every page, as one value.
//!
//! A [`Realizer`] carries what the command knows (platform, rules, descriptor,
//! IOMMU domain) and makes a [`Realization`] for a range, or one bounce buffer
//! for all of it when the planned segments break a rule. It also takes one
//! apart: unmap first, so the device can no longer reach the pages, then free
//! the bounce buffers; and when the IOMMU does not confirm the unmap, it frees
//! nothing ([`Realizer::keep_from_reuse`]).

use alloc::vec::Vec;
use core::panic::Location;

use x86_64::PhysAddr;

use super::address::Segment;
use super::bounce::{self, BounceBuffer, BouncedRange};
use super::failure::{Cause, IoFailure};
use super::hooks::{Addresses, HOOKS, Reach, Site};
use super::mapper::{IoMapper, MappedRange};
use super::mapping::{self, IovaChoice};
use super::misuse::{Misuse, MisuseReport};
use super::plan::{self, Layout, Placement};
use super::platform::DmaPlatform;
use super::specification::Rules;
use super::trace::dma_trace;
use super::{IoMemoryDescriptor, IoReturn};
use crate::memory::{Constraints, FRAME_SIZE};

/// A planned range with its memory in place: bounce buffers allocated and,
/// behind an IOMMU, every page mapped.
#[derive(Debug)]
pub(crate) struct Realization {
    /// Where each piece of the range lies: in place or in a bounce buffer.
    pub(crate) layout: Layout,
    /// The bounce buffers the layout's bounced pieces name.
    pub(crate) buffers: Vec<BounceBuffer>,
    /// The device's segments.
    pub(crate) segments: Vec<Segment>,
    /// The IOVA range the segments lie in, when an IOMMU translates them.
    pub(crate) mapped: Option<MappedRange>,
}

impl Realization {
    /// The range `[offset, ...)` of `descriptor` this realizes, with its bounce buffers.
    pub(crate) fn bounced<'a>(&'a self, descriptor: &'a IoMemoryDescriptor, offset: u64) -> BouncedRange<'a> {
        BouncedRange { descriptor, offset, layout: &self.layout, buffers: &self.buffers }
    }

    /// Whether the device uses some of the descriptor's own pages in place.
    fn uses_memory_in_place(&self) -> bool {
        self.layout.pieces.iter().any(|piece| matches!(piece.placement, Placement::Direct(_)))
    }
}

/// What a realization needs to know of its command.
pub(crate) struct Realizer<'a> {
    /// The machine.
    pub(crate) platform: &'static dyn DmaPlatform,
    /// The device's rules.
    pub(crate) rules: &'a Rules,
    /// The IOMMU domain that translates the command's segments, if any.
    pub(crate) mapper: Option<&'static dyn IoMapper>,
    /// The platform's IOMMU domain, translating or not: what was mapped
    /// through it is unmapped through it.
    pub(crate) domain: Option<&'static dyn IoMapper>,
    /// The memory the range is of.
    pub(crate) descriptor: &'a IoMemoryDescriptor,
    /// Where the pages go in IOVA space.
    pub(crate) iova_choice: IovaChoice,
    /// The command's id, for traces and reports.
    pub(crate) command: u64,
    /// The caller's location, for reports.
    pub(crate) at: &'static Location<'static>,
}

impl Realizer<'_> {
    /// Plans `runs` (the physical runs of `length` bytes); if the planned
    /// segments break a rule, realizes one buffer for the whole range instead.
    pub(crate) fn best(&self, runs: &[(u64, u64)], length: u64) -> Result<(Realization, Addresses), IoFailure> {
        let mut rules = *self.rules;
        // Behind a translating IOMMU no physical address is out of reach: the
        // device sees IOVAs, which the mapper places below its limit.
        let reach =
            if rules.highest_address != u64::MAX && self.mapper.is_none() { Reach::Limited } else { Reach::Unlimited };
        // The one place a hook (a learner's experiment) may change the rules.
        let addresses = match HOOKS.get() {
            None => Addresses::Whole,
            Some(hooks) => hooks.adjust_rules(Site::of(self.platform.accounting()), self.command, &mut rules, reach),
        };
        // Before any bounce memory is asked for: a transfer that can never fit
        // the device is refused for that, not for a budget that is short now.
        // (Coherent memory is never bounced: its refusal says so, below.)
        if !self.descriptor.is_coherent() {
            never_fits(&rules, length)?;
        }
        let mut planning = match reach {
            Reach::Limited => rules,
            Reach::Unlimited => Rules { highest_address: u64::MAX, ..rules },
        };
        if self.mapper.is_some() {
            // Behind an IOMMU the pieces' pages sit at consecutive IOVAs, each
            // piece at its own offset in its page: runs that meet on page edges
            // become one run the device sees whole, and a gap between two runs
            // keeps the page offsets of its two sides, which are all that a
            // virtual boundary larger than a page can rely on.
            planning.virtual_boundary = planning.virtual_boundary.min(FRAME_SIZE);
        }
        let layout = plan::plan(runs, &planning);
        if super::trace::enabled() {
            self.trace_plan(runs, &layout);
        }
        let realization = self.realize(layout, &rules)?;
        // Shared memory must stay where both sides look for it: never bounced.
        let bounces_shared_memory = !realization.buffers.is_empty() && self.descriptor.is_coherent();
        if plan::segments_valid(&realization.segments, &rules) && !bounces_shared_memory {
            return Ok((realization, addresses));
        }
        let segment_count = realization.segments.len();
        self.release(&realization)?;
        if self.descriptor.is_coherent() {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::CoherentNeverBounced));
        }
        dma_trace!(
            "  {} segments would break a rule (at most {}, lengths in units of {}, virtual boundary {:#x}): \
             double-buffering the whole transfer",
            segment_count,
            self.rules.max_segments,
            self.rules.alignment_length,
            self.rules.virtual_boundary
        );
        Ok((self.single(length)?, Addresses::Whole))
    }

    /// The whole `length` bytes in one bounce buffer.
    pub(crate) fn single(&self, length: u64) -> Result<Realization, IoFailure> {
        never_fits(self.rules, length)?;
        let realization = self.realize(plan::single_buffer(length), self.rules)?;
        if plan::segments_valid(&realization.segments, self.rules) {
            return Ok(realization);
        }
        self.release(&realization)?;
        let needed = realization.segments.len();
        let cause = if needed > self.rules.max_segments {
            Cause::TooManySegments { needed, allowed: self.rules.max_segments }
        } else {
            Cause::BounceBreaksSpecification
        };
        Err(IoFailure::new(IoReturn::NoResources, cause))
    }

    /// Allocates the layout's bounce buffers, maps everything behind an IOMMU,
    /// and computes the device's segments under `rules`.
    fn realize(&self, layout: Layout, rules: &Rules) -> Result<Realization, IoFailure> {
        let mut buffers = Vec::with_capacity(layout.bounce_sizes.len());
        for &size in &layout.bounce_sizes {
            match self.allocate_buffer(size) {
                Ok(buffer) => buffers.push(buffer),
                Err(error) => {
                    bounce::free(self.platform, &buffers);
                    return Err(error);
                }
            }
        }
        let Some(mapper) = self.mapper else {
            let addresses: Vec<u64> = buffers.iter().map(|buffer| buffer.address.as_u64()).collect();
            let segments = plan::segments(&layout, &addresses, rules);
            return Ok(Realization { layout, buffers, segments, mapped: None });
        };
        let direction = self.descriptor.direction();
        match mapping::map_layout(mapper, &layout, &buffers, direction, rules, self.iova_choice) {
            Ok((segments, mapped)) => {
                dma_trace!("  IOMMU: {} page(s) mapped at IOVA {:#x} in {}", mapped.pages, mapped.iova, mapper.name());
                Ok(Realization { layout, buffers, segments, mapped: Some(mapped) })
            }
            Err(failure) if matches!(failure.cause(), Cause::InvalidationFailed { .. }) => {
                // Undoing the half-made mapping was not confirmed: the pages
                // may be reachable, so nothing is freed.
                let unreachable = Realization { layout, buffers, segments: Vec::new(), mapped: None };
                Err(self.keep_from_reuse(&unreachable, failure))
            }
            Err(failure) => {
                bounce::free(self.platform, &buffers);
                Err(failure)
            }
        }
    }

    fn allocate_buffer(&self, length: u64) -> Result<BounceBuffer, IoFailure> {
        // Behind a translating IOMMU the buffer may lie anywhere (as in `best`).
        let highest = if self.mapper.is_some() { u64::MAX } else { self.rules.highest_address };
        let below = highest.checked_add(1).and_then(|end| PhysAddr::try_new(end).ok());
        let mut alignment = self.rules.alignment.max(self.rules.alignment_internal).max(FRAME_SIZE);
        if self.mapper.is_none() {
            // A bounce buffer the device sees after a gap must start on the
            // virtual boundary (behind an IOMMU, its IOVA starts on a page).
            alignment = alignment.max(self.rules.virtual_boundary);
        }
        let placement = Constraints { below, alignment, boundary: 0 };
        bounce::allocate(self.platform, length, placement, self.rules.address_bits)
    }

    /// Takes `realization` apart: unmaps first, so the device can no longer
    /// reach the pages, then frees the bounce buffers. If the IOMMU does not
    /// confirm the unmap, nothing is freed ([`Realizer::keep_from_reuse`]) and
    /// the failure says [`Cause::InvalidationFailed`].
    pub(crate) fn release(&self, realization: &Realization) -> Result<(), IoFailure> {
        if let (Some(range), Some(domain)) = (realization.mapped, self.domain) {
            unmap(domain, range).map_err(|failure| self.keep_from_reuse(realization, failure))?;
        }
        bounce::free(self.platform, &realization.buffers);
        Ok(())
    }

    /// After an unmap the IOMMU did not confirm: the device may still reach
    /// every page that was mapped, so none of it is ever freed. The bounce
    /// pages are leaked (counted, and kept out of the budget); the descriptor,
    /// if its own pages were mapped (pieces used in place), is abandoned: it
    /// stays prepared and the CPU may not read it. Reported like an abandoned
    /// transfer; returns `failure`.
    pub(crate) fn keep_from_reuse(&self, realization: &Realization, failure: IoFailure) -> IoFailure {
        let pages = bounce::pages(&realization.buffers);
        let accounting = self.platform.accounting();
        accounting.statistics().count_leak(pages);
        accounting.misuse().report(MisuseReport {
            misuse: Misuse::InvalidationFailed,
            command: Some(self.command),
            descriptor: Some(self.descriptor.id()),
            location: self.at,
        });
        let in_place = realization.uses_memory_in_place();
        if in_place {
            self.descriptor.abandon();
        }
        log::error!(
            "DMA: command #{}: {failure}: {pages} bounce page(s){} leaked, never reused",
            self.command,
            if in_place { " and the buffer's own pages" } else { "" }
        );
        failure
    }

    /// Traces each physical run and where the plan put it.
    fn trace_plan(&self, runs: &[(u64, u64)], layout: &Layout) {
        for (&(address, length), piece) in runs.iter().zip(&layout.pieces) {
            let alignment = if piece.start == 0 { self.rules.alignment } else { self.rules.alignment_internal };
            let what = match piece.placement {
                Placement::Direct(_) => "the device reaches it: used in place, no copy",
                Placement::Bounce { .. } if !self.rules.reachable(address, length) => {
                    "beyond the device's address limit: bounced"
                }
                Placement::Bounce { .. } if !address.is_multiple_of(alignment) => "start breaks the alignment: bounced",
                Placement::Bounce { .. } => "a gap inside a page would break the virtual boundary: bounced",
            };
            dma_trace!("  run {address:#x} + {length:#x} bytes: {what}");
        }
    }
}

/// `TooManySegments` when `length` bytes need more segments than `rules`
/// allow wherever they lie ([`Rules::fewest_segments`]): nothing tried later
/// (a plan, one bounce buffer, an IOMMU mapping) could fit the device.
fn never_fits(rules: &Rules, length: u64) -> Result<(), IoFailure> {
    let fewest = rules.fewest_segments(length);
    let allowed = rules.max_segments;
    if fewest <= allowed as u64 {
        return Ok(());
    }
    dma_trace!("  {length:#x} bytes need at least {fewest} segments, the device takes {allowed}: it can never start");
    let needed = usize::try_from(fewest).unwrap_or(usize::MAX);
    Err(IoFailure::new(IoReturn::NoResources, Cause::TooManySegments { needed, allowed }))
}

/// Unmaps `range` from `domain` and waits for the IOMMU to forget it. A
/// failure always carries [`Cause::InvalidationFailed`] for the range,
/// whatever the mapper called it, so callers can match it.
pub(crate) fn unmap(domain: &dyn IoMapper, range: MappedRange) -> Result<(), IoFailure> {
    match domain.unmap(range.iova, range.pages) {
        Ok(()) => {
            dma_trace!("  IOMMU: {} page(s) at IOVA {:#x} unmapped, IOTLB invalidated", range.pages, range.iova);
            Ok(())
        }
        Err(failure) => {
            dma_trace!(
                "  IOMMU: {} page(s) at IOVA {:#x} unmapped, NOT invalidated: {failure}",
                range.pages,
                range.iova
            );
            let cause = Cause::InvalidationFailed { iova: range.iova, pages: range.pages };
            Err(IoFailure::new(failure.code(), cause))
        }
    }
}

/// Why the IOMMU says `range`'s DMA failed, asked after its unmap: a fault
/// into it, or faults lost while it was mapped.
pub(crate) fn refusal(domain: &dyn IoMapper, range: MappedRange) -> Option<Cause> {
    let fault = domain.take_fault(range).map(Cause::IommuFault);
    let lost = domain.faults_lost(range).map(Cause::IommuFaultsLost);
    let refused = fault.or(lost);
    if let Some(cause) = &refused {
        dma_trace!("  {cause}: nothing is copied back");
    }
    refused
}
