//! A command's data pointer, built from the transfer's typed segment entries:
//! PRP1 and PRP2 with chained PRP list pages, or an SGL.
//!
//! # PRPs (NVMe 2.0, 4.1.1)
//!
//! A PRP entry names one memory page. Only the first may start inside its
//! page; every other starts on one, and every one but the last runs to the end
//! of its page. PRP1 is the first; if the data ends in the next page PRP2 is
//! that page, and if it runs further PRP2 points at a *PRP list*: a page of
//! 512 entries whose last one, when more entries follow, points at the next
//! list page instead of holding data.
//!
//! ```text
//! PRP1 -> data page 0 (may start at an offset)
//! PRP2 -> list page A: [page 1][page 2] ... [page 511][-> list page B]
//!                       list page B: [page 512] ... [last page]
//! ```
//!
//! The segments come from the DMA layer under the driver's specification, so
//! they should keep these rules already (or have been bounced); each is still
//! checked as a [`PrpEntry`] and a segment that breaks a rule is refused with
//! [`NvmeCause::PrpRuleBroken`]: the driver never bounces, and never builds a
//! list the controller reads differently from what it meant. Only `experiment
//! prp-offset` switches that check off, for one transfer ([`PrpCheck`]), to let
//! the controller refuse the list itself.
//!
//! # SGLs
//!
//! When the controller takes SGLs, one segment is a Data Block descriptor in
//! the command itself; several are Data Block descriptors in the slot's list
//! area, which a Last Segment descriptor in the command points at. Segments
//! need no page rules here, only what a descriptor holds.

use alloc::vec::Vec;

use dmakit::dma::{
    Cause, CoherentMemory, FromSegment, IoDirection, IoFailure, IoReturn, NvmeCause, PrpRule, Segment, SegmentPosition,
};

use super::registers::PAGE_SIZE;
use super::structures::{PrpEntry, SGL_LAST_SEGMENT, SglDescriptor};

/// PRP entries in one list page.
pub const PRP_ENTRIES_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;
/// SGL descriptors in one page.
pub const SGL_DESCRIPTORS_PER_PAGE: usize = (PAGE_SIZE / 16) as usize;

/// How a command's data is described to the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPointer {
    /// PRP1, PRP2 (0 when unused): one or two pages.
    Prp {
        /// The first entry.
        prp1: u64,
        /// The second entry.
        prp2: u64,
    },
    /// PRP1, and in PRP2 the first PRP list page: more than two pages.
    PrpList {
        /// The first entry.
        prp1: u64,
        /// The first list page.
        list: u64,
    },
    /// The first SGL descriptor.
    Sgl(SglDescriptor),
}

/// Which description a transfer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPointerChoice {
    /// PRPs always (a controller without SGL support).
    PrpOnly,
    /// SGLs for transfers of at least this many bytes, PRPs below (Linux's
    /// `sgl_threshold`, 32 KiB, is where SGLs start to pay).
    SglFrom(u64),
}

impl DataPointerChoice {
    /// Whether a transfer of `length` bytes goes by SGL.
    pub fn uses_sgl(self, length: u64) -> bool {
        matches!(self, DataPointerChoice::SglFrom(threshold) if length >= threshold)
    }
}

/// Whether the segments are checked against the PRP rules before the entries
/// are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpCheck {
    /// Always, but in one experiment: a segment that breaks a rule is refused.
    Rules,
    /// Switched off for one transfer by a hook (`experiment prp-offset`): each
    /// segment becomes entries as it is, and the controller judges the list.
    Skipped,
}

/// A slot's share of list memory: `pages` pages from `offset` of `memory`.
pub struct ListArea<'a> {
    /// The memory holding every slot's lists.
    pub memory: &'a CoherentMemory,
    /// Where this slot's share starts (page aligned).
    pub offset: u64,
    /// Pages in the share.
    pub pages: usize,
}

impl ListArea<'_> {
    fn address(&self, byte: u64) -> u64 {
        self.memory.device_address().as_u64() + self.offset + byte
    }
}

/// The typed PRP entries for `segments`, each checked where it sits (unless
/// `check` says it is skipped); a refusal names the segment.
pub fn prp_entries(segments: &[Segment], direction: IoDirection, check: PrpCheck) -> Result<Vec<PrpEntry>, IoFailure> {
    if check == PrpCheck::Skipped {
        return Ok(segments.iter().map(|&segment| PrpEntry { segment }).collect());
    }
    let count = segments.len();
    segments
        .iter()
        .enumerate()
        .map(|(index, segment)| {
            PrpEntry::from_segment(*segment, SegmentPosition::of(index, count), direction).map_err(|failure| {
                match failure.cause() {
                    Cause::Nvme(NvmeCause::PrpRuleBroken { rule, .. }) => {
                        IoFailure::new(failure.code(), Cause::Nvme(NvmeCause::PrpRuleBroken { index, rule }))
                    }
                    _ => failure,
                }
            })
        })
        .collect()
}

/// List pages a transfer of `entries` PRP entries needs (0 for two or fewer).
pub const fn prp_list_pages(entries: usize) -> usize {
    if entries <= 2 {
        return 0;
    }
    // Every page but the last gives one entry to the chain pointer.
    let listed = entries - 1;
    if listed <= PRP_ENTRIES_PER_PAGE { 1 } else { (listed - 1).div_ceil(PRP_ENTRIES_PER_PAGE - 1) }
}

/// PRP entries that PRP1, PRP2 and `list_pages` chained list pages hold: the
/// inverse of [`prp_list_pages`] (every list page but the last gives its last
/// entry to the chain pointer).
pub const fn prp_entries_in(list_pages: usize) -> usize {
    match list_pages {
        0 => 2,
        pages => 1 + pages * PRP_ENTRIES_PER_PAGE - (pages - 1),
    }
}

/// Builds PRP1/PRP2 for `segments`, checked as `check` says, writing list
/// pages into `area`.
pub fn build_prps(
    segments: &[Segment],
    direction: IoDirection,
    check: PrpCheck,
    area: &ListArea<'_>,
) -> Result<DataPointer, IoFailure> {
    let pages: Vec<u64> = prp_entries(segments, direction, check)?.iter().flat_map(PrpEntry::pages).collect();
    let refused =
        |rule| IoFailure::new(IoReturn::NoResources, Cause::Nvme(NvmeCause::PrpRuleBroken { index: 0, rule }));
    match pages.as_slice() {
        [] => Err(IoFailure::new(
            IoReturn::BadArgument,
            Cause::Nvme(NvmeCause::PrpRuleBroken { index: 0, rule: PrpRule::DwordAligned }),
        )),
        [prp1] => Ok(DataPointer::Prp { prp1: *prp1, prp2: 0 }),
        [prp1, prp2] => Ok(DataPointer::Prp { prp1: *prp1, prp2: *prp2 }),
        [prp1, listed @ ..] => {
            if prp_list_pages(pages.len()) > area.pages {
                return Err(refused(PrpRule::ListPagesPerSlot));
            }
            let mut remaining = listed;
            let mut page = 0u64;
            loop {
                let mut list = Vec::with_capacity(PAGE_SIZE as usize);
                let last_page = remaining.len() <= PRP_ENTRIES_PER_PAGE;
                let here = if last_page { remaining.len() } else { PRP_ENTRIES_PER_PAGE - 1 };
                for address in &remaining[..here] {
                    list.extend_from_slice(&address.to_le_bytes());
                }
                if !last_page {
                    // The last entry chains to the next list page.
                    list.extend_from_slice(&area.address((page + 1) * PAGE_SIZE).to_le_bytes());
                }
                area.memory.write_bytes(area.offset + page * PAGE_SIZE, &list)?;
                remaining = &remaining[here..];
                if last_page {
                    break;
                }
                page += 1;
            }
            Ok(DataPointer::PrpList { prp1: *prp1, list: area.address(0) })
        }
    }
}

/// Builds the SGL for `segments`: one Data Block in the command, or a Last
/// Segment pointing at the Data Blocks in `area`.
pub fn build_sgl(segments: &[Segment], direction: IoDirection, area: &ListArea<'_>) -> Result<DataPointer, IoFailure> {
    let descriptors: Vec<SglDescriptor> = dmakit::dma::entries_for(segments, direction)?;
    match descriptors.as_slice() {
        [only] => Ok(DataPointer::Sgl(*only)),
        _ if descriptors.len() > area.pages * SGL_DESCRIPTORS_PER_PAGE || descriptors.is_empty() => {
            let rule = "a request takes at most its slot's SGL descriptors";
            Err(IoFailure::new(IoReturn::NoResources, Cause::EntryFormat { format: "SGL", rule }))
        }
        _ => {
            let bytes: Vec<u8> = descriptors.iter().flat_map(|descriptor| descriptor.to_bytes()).collect();
            area.memory.write_bytes(area.offset, &bytes)?;
            let length = bytes.len() as u32;
            Ok(DataPointer::Sgl(SglDescriptor::new(area.address(0), length, SGL_LAST_SEGMENT)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_leave_room_for_the_chain_pointer() {
        assert_eq!(prp_list_pages(1), 0);
        assert_eq!(prp_list_pages(2), 0);
        assert_eq!(prp_list_pages(3), 1);
        assert_eq!(prp_list_pages(513), 1, "512 listed entries fill one page, no chain");
        assert_eq!(prp_list_pages(514), 2, "513 listed: 511 + pointer, then 2");
        assert_eq!(prp_list_pages(1 + 511 + 512), 2);
        assert_eq!(prp_list_pages(1 + 511 + 513), 3);
        for pages in 0..5 {
            assert_eq!(prp_list_pages(prp_entries_in(pages)), pages, "{pages} pages hold no fewer");
            assert_eq!(prp_list_pages(prp_entries_in(pages) + 1), pages + 1, "{pages} pages hold no more");
        }
    }
}
