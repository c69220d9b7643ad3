//! The PRP and SGL builders against the fake controller's walk (QEMU's rules):
//! whatever the builder writes, the walk finds exactly the transfer's bytes,
//! in order; and what breaks the rules is refused by both, with QEMU's status.

use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{
    Cause, CoherentMemory, GenericStatus, IoDirection, NvmeCause, NvmeStatus, PrpRule, Segment, Specification,
};
use proptest::prelude::*;

use crate::nvme::data_pointer::{DataPointer, ListArea, PrpCheck, build_prps, build_sgl, prp_list_pages};
use crate::nvme::fake::walk::{Run, map_prp, map_sgl};
use crate::nvme::registers::PAGE_SIZE;
use crate::nvme::structures::segment;

const PAGE: Specification = Specification { alignment: PAGE_SIZE, ..Specification::UNLIMITED_64 };

/// `count` separate pages, each its own allocation (scattered).
pub(super) fn pages(platform: &'static SimulatedPlatform, count: usize) -> Vec<CoherentMemory> {
    (0..count).map(|_| CoherentMemory::allocate(platform, PAGE_SIZE, PAGE).unwrap()).collect()
}

/// The bytes of `segments`, one run per page-piece, merged where contiguous.
pub(super) fn merged(runs: impl IntoIterator<Item = Run>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (address, length) in runs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == address => last.1 += length,
            _ => out.push((address, length)),
        }
    }
    out
}

pub(super) fn walk(
    platform: &'static SimulatedPlatform,
    pointer: DataPointer,
    length: u64,
) -> Result<Vec<Run>, NvmeStatus> {
    let read = |address: u64, bytes: &mut [u8]| {
        assert!(platform.is_allocated(address), "the walk read unallocated memory at {address:#x}");
        platform.device_read(address, bytes)
    };
    match pointer {
        DataPointer::Prp { prp1, prp2 } | DataPointer::PrpList { prp1, list: prp2 } => {
            map_prp(&read, prp1, prp2, length)
        }
        DataPointer::Sgl(first) => map_sgl(&read, first, length),
    }
}

/// List pages for `count` pages' segments on either path (SGL descriptors
/// are twice a PRP entry's size).
fn list_pages(count: usize) -> usize {
    prp_list_pages(count + 1).max(count.div_ceil(256)).max(1)
}

/// Builds both descriptions of `segments` and checks the walk finds exactly them.
fn round_trip(platform: &'static SimulatedPlatform, segments: &[Segment], list_pages: usize) {
    let lists = CoherentMemory::allocate(platform, list_pages as u64 * PAGE_SIZE, PAGE).unwrap();
    let area = ListArea { memory: &lists, offset: 0, pages: list_pages };
    let length: u64 = segments.iter().map(|segment| segment.length).sum();
    let wanted = merged(segments.iter().map(|segment| (segment.address.as_u64(), segment.length)));
    let prps = build_prps(segments, IoDirection::In, PrpCheck::Rules, &area).unwrap();
    assert_eq!(merged(walk(platform, prps, length).unwrap()), wanted, "PRPs");
    let sgl = build_sgl(segments, IoDirection::In, &area).unwrap();
    assert_eq!(merged(walk(platform, sgl, length).unwrap()), wanted, "SGL");
    lists.release().unwrap();
}

/// Segments over `memory`'s pages: the first from `offset`, the last `tail`
/// bytes short of its page end.
pub(super) fn scattered(memory: &[CoherentMemory], offset: u64, tail: u64) -> Vec<Segment> {
    let count = memory.len();
    memory
        .iter()
        .enumerate()
        .map(|(index, page)| {
            let start = if index == 0 { offset } else { 0 };
            let end = if index + 1 == count { PAGE_SIZE - tail } else { PAGE_SIZE };
            segment(page.device_address().as_u64() + start, end - start)
        })
        .collect()
}

#[test]
fn one_two_three_512_and_600_pages_walk_back_to_the_same_bytes() {
    let platform = SimulatedPlatform::leak(16);
    for count in [1, 2, 3, 512, 513, 600, 1100] {
        let memory = pages(platform, count);
        for (offset, tail) in [(0, 0), (0x204, 0), (0x804, 0x100), (0xffc, 0)] {
            if count == 1 && offset + tail >= PAGE_SIZE {
                continue;
            }
            round_trip(platform, &scattered(&memory, offset, tail), list_pages(count));
        }
        // One contiguous segment over many pages takes the same list.
        let contiguous = CoherentMemory::allocate(platform, count as u64 * PAGE_SIZE, PAGE).unwrap();
        let whole = [segment(contiguous.device_address().as_u64() + 0x200, count as u64 * PAGE_SIZE - 0x200)];
        round_trip(platform, &whole, list_pages(count + 1));
    }
}

#[test]
fn the_driver_refuses_segments_that_break_a_prp_rule_instead_of_building_a_list() {
    let platform = SimulatedPlatform::leak(16);
    let memory = pages(platform, 3);
    let lists = CoherentMemory::allocate(platform, PAGE_SIZE, PAGE).unwrap();
    let area = ListArea { memory: &lists, offset: 0, pages: 1 };
    let base = |index: usize| memory[index].device_address().as_u64();
    let refused =
        |segments: &[Segment]| build_prps(segments, IoDirection::In, PrpCheck::Rules, &area).unwrap_err().cause();
    let rule = |index, rule| Cause::Nvme(NvmeCause::PrpRuleBroken { index, rule });
    // The second segment starts inside its page.
    let inner = [segment(base(0), PAGE_SIZE), segment(base(1) + 0x200, 0x200)];
    assert_eq!(refused(&inner), rule(1, PrpRule::InnerStartsOnPage));
    // The first ends inside its page, with more to come.
    let short = [segment(base(0), 0x800), segment(base(1), PAGE_SIZE)];
    assert_eq!(refused(&short), rule(0, PrpRule::EndsOnPage));
    assert_eq!(refused(&[segment(base(0) + 2, 0x200)]), rule(0, PrpRule::DwordAligned));
    // More list pages than the slot has.
    let many: Vec<Segment> = (0..600).map(|index| segment(base(index % 3), PAGE_SIZE)).collect();
    assert_eq!(refused(&many), rule(0, PrpRule::ListPagesPerSlot));
}

#[test]
fn the_fake_refuses_what_qemu_refuses_with_prp_offset_invalid() {
    let platform = SimulatedPlatform::leak(16);
    let memory = pages(platform, 4);
    let base = |index: usize| memory[index].device_address().as_u64();
    let list = CoherentMemory::allocate(platform, 2 * PAGE_SIZE, PAGE).unwrap();
    let list_at = list.device_address().as_u64();
    let offset_invalid = Err(NvmeStatus::Generic(GenericStatus::PrpOffsetInvalid));
    // PRP2 holding data (two pages) must start on a page.
    let pointer = DataPointer::Prp { prp1: base(0), prp2: base(1) + 0x200 };
    assert_eq!(walk(platform, pointer, 2 * PAGE_SIZE), offset_invalid);
    // A list entry with an offset (the `experiment prp-offset` case).
    list.write_bytes(0, &[base(1).to_le_bytes(), (base(2) + 0x200).to_le_bytes()].concat()).unwrap();
    let pointer = DataPointer::Prp { prp1: base(0), prp2: list_at };
    assert_eq!(walk(platform, pointer, 3 * PAGE_SIZE), offset_invalid);
    // A list pointer may start inside its page: then the page's last entry
    // chains, and a data page there (not page aligned) is refused.
    let near_end = list_at + PAGE_SIZE - 16;
    list.write_bytes(PAGE_SIZE - 16, &[base(1).to_le_bytes(), (base(2) + 4).to_le_bytes()].concat()).unwrap();
    let pointer = DataPointer::Prp { prp1: base(0), prp2: near_end };
    assert_eq!(walk(platform, pointer, 4 * PAGE_SIZE), offset_invalid, "a list does not run off its page");
    // The same list, chained properly to page 2 of the list memory.
    let next = list_at + PAGE_SIZE;
    list.write_bytes(PAGE_SIZE - 8, &next.to_le_bytes()).unwrap();
    list.write_bytes(PAGE_SIZE, &[base(2).to_le_bytes(), base(3).to_le_bytes()].concat()).unwrap();
    let runs = walk(platform, DataPointer::Prp { prp1: base(0), prp2: near_end }, 4 * PAGE_SIZE).unwrap();
    let pages: Vec<u64> = runs.iter().map(|run| run.0).collect();
    assert_eq!(pages, [base(0), base(1), base(2), base(3)]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Random scattered buffers, random offsets and lengths: the walk finds
    /// exactly the transfer's bytes in order, on both paths.
    #[test]
    fn random_scattered_buffers_walk_back_exactly(
        count in 1usize..700,
        offset_dwords in 0u64..1024,
        tail_dwords in 0u64..1024,
        order in proptest::collection::vec(any::<u16>(), 700),
    ) {
        let platform = SimulatedPlatform::leak(16);
        let mut memory = pages(platform, count);
        // Scatter: shuffle the pages by the random keys.
        let mut keyed: Vec<(u16, CoherentMemory)> = order.iter().copied().zip(memory.drain(..)).collect();
        keyed.sort_by_key(|(key, _)| *key);
        let memory: Vec<CoherentMemory> = keyed.into_iter().map(|(_, page)| page).collect();
        let offset = offset_dwords * 4;
        let tail = if count == 1 { tail_dwords * 4 % (PAGE_SIZE - offset) } else { tail_dwords * 4 };
        let segments = scattered(&memory, offset, tail);
        round_trip(platform, &segments, list_pages(count));
    }
}
