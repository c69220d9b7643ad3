//! Regression tests for defects found in the specification handling: each test
//! failed (or did not compile) before its fix.

use super::*;
use crate::dma::plan::{self, Layout, Piece, Placement};
use crate::dma::{IoReturn, OutputFormat, Rules, Specification, SyncOptions, TransferOptions};

/// Every segment of `segments` obeys `rules`, and they cover `length` bytes.
fn assert_segments_obey(rules: &Rules, segments: &[Segment], length: u64) {
    assert!(segments.len() <= rules.max_segments(), "{} segments", segments.len());
    for (index, segment) in segments.iter().enumerate() {
        assert!(
            rules.segment_ok(index, segment.address.as_u64(), segment.length),
            "segment {index} {segment:?} breaks {rules:?}"
        );
    }
    assert_eq!(segments.iter().map(|segment| segment.length).sum::<u64>(), length, "segments cover the range");
}

/// Whether `strict` is at least as strict as `loose` in every rule.
fn at_least_as_strict(strict: &Rules, loose: &Rules) -> bool {
    // A boundary of 0 is "none"; a smaller power of two is stricter.
    let boundary = |rules: &Rules| if rules.boundary() == 0 { u64::MAX } else { rules.boundary() };
    strict.highest_address() <= loose.highest_address()
        && strict.max_segment() <= loose.max_segment()
        && strict.max_transfer() <= loose.max_transfer()
        && strict.alignment() >= loose.alignment()
        && strict.alignment_length() >= loose.alignment_length()
        && strict.alignment_internal() >= loose.alignment_internal()
        && boundary(strict) <= boundary(loose)
        && strict.max_segments() <= loose.max_segments()
}

// Defect 1: `restricted_by` compared the raw internal alignment, so an unset one
// (meaning "= alignment") lost to the other side's smaller explicit value.

#[test]
fn restricting_keeps_the_internal_alignment_the_device_needs() {
    let device = Specification { alignment: 512, ..Specification::UNLIMITED_64 };
    let restriction = Specification { alignment_internal_segments: 2, ..Specification::UNLIMITED_64 };
    let one_way = device.restricted_by(&restriction).rules().unwrap();
    let other_way = restriction.restricted_by(&device).rules().unwrap();
    assert_eq!(one_way.alignment_internal(), 512, "the device's own default is kept");
    assert_eq!(one_way, other_way, "equally strict both ways");
}

#[test]
fn a_restricted_transfer_never_gives_the_device_a_misaligned_segment() {
    let platform = machine();
    let device = Specification { alignment: 512, ..Specification::UNLIMITED_64 };
    // The odd segment limit cuts at ...1002 if the internal alignment became 2.
    let restriction =
        Specification { alignment_internal_segments: 2, max_segment_size: 0x1002, ..Specification::UNLIMITED_64 };
    let device_rules = device.rules().unwrap();
    let buffer = low_buffer(platform, 4 * 4096, IoDirection::Out);
    let mut command = IoDmaCommand::new(platform, device).unwrap();
    let options = TransferOptions { restrict: Some(restriction), force_double_buffer: false };
    let segments = command.with_transfer(buffer, 0, 0, &options, |segments| Ok(segments.to_vec())).unwrap();
    assert!(segments.len() > 1, "the segment limit cuts: {segments:?}");
    assert_segments_obey(&device_rules, &segments, 4 * 4096);
}

#[test]
fn restricting_is_equally_strict_both_ways_and_never_looser() {
    // One output format for all: it is the device's, not part of the comparison.
    let base = Specification::UNLIMITED_64;
    let specifications = [
        base,
        Specification { alignment: 512, ..base },
        Specification { alignment: 8, alignment_internal_segments: 2, ..base },
        Specification { alignment_internal_segments: 64, ..base },
        Specification { alignment_length: 4, ..base },
        Specification { num_address_bits: 0, ..base },
        Specification { num_address_bits: 32, max_segment_size: 0x1_0000, boundary: 0x1_0000, ..base },
        Specification { max_transfer_size: 0x8000, max_segments: 3, ..base },
        Specification { boundary: 0x1000, alignment_length: 2, ..base },
    ];
    for first in &specifications {
        for second in &specifications {
            let one_way = first.restricted_by(second).rules().unwrap();
            let other_way = second.restricted_by(first).rules().unwrap();
            assert_eq!(one_way, other_way, "{first:?} and {second:?}");
            assert!(at_least_as_strict(&one_way, &first.rules().unwrap()), "{first:?} and {second:?}");
            assert!(at_least_as_strict(&one_way, &second.rules().unwrap()), "{first:?} and {second:?}");
        }
    }
}

// Defect 2: a segment limit that is not a multiple of the internal alignment cut
// segments whose successors started misaligned, so valid transfers failed.

#[test]
fn an_odd_segment_limit_is_cut_on_the_internal_alignment() {
    let platform = machine();
    let spec =
        Specification { max_segment_size: 0xffff, alignment_internal_segments: 2, ..Specification::UNLIMITED_64 };
    let rules = spec.rules().unwrap();
    let length = 128 * 1024;
    let buffer = low_buffer(platform, length, IoDirection::Out);
    // Read before the prepare: afterwards the memory is lent to the device.
    let original = contents(&buffer);
    let mut command = IoDmaCommand::new(platform, spec).unwrap();
    command.set_memory_descriptor(buffer, false).unwrap();
    command.prepare(0, length).unwrap();
    assert_eq!(rules.max_cut(), 0xfffe, "cut on the internal alignment");
    assert_eq!(command.bounced_bytes(), 0, "aligned, contiguous, reachable: used in place");
    assert_segments_obey(&rules, command.segments(), length);
    assert_eq!(device_reads(platform, &command), original);
    command.complete().unwrap();
}

#[test]
fn force_double_buffer_with_an_odd_segment_limit_succeeds() {
    let platform = machine();
    let spec =
        Specification { max_segment_size: 0x1001, alignment_internal_segments: 2, ..Specification::UNLIMITED_64 };
    let rules = spec.rules().unwrap();
    let length = 6 * 1024;
    let buffer = low_buffer(platform, length, IoDirection::Out);
    // Read before the prepare: afterwards the memory is lent to the device.
    let original = contents(&buffer);
    let mut command = IoDmaCommand::new(platform, spec).unwrap();
    command.set_memory_descriptor(buffer, false).unwrap();
    command.prepare(0, length).unwrap();
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert!(command.is_wholly_double_buffered());
    assert_segments_obey(&rules, command.segments(), length);
    assert_eq!(device_reads(platform, &command), original);
    command.complete().unwrap();
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

#[test]
fn specifications_that_cannot_cut_aligned_are_refused() {
    let platform = machine();
    for spec in [
        // Rounding the segment limit down to the internal alignment leaves nothing.
        Specification { max_segment_size: 1, alignment_internal_segments: 2, ..Specification::UNLIMITED_64 },
        // The internal alignment defaults to the first segment's.
        Specification { max_segment_size: 512, alignment: 4096, ..Specification::UNLIMITED_64 },
        // A cut at a boundary would start the next segment misaligned.
        Specification { boundary: 0x1000, alignment_internal_segments: 0x2000, ..Specification::UNLIMITED_64 },
        Specification { boundary: 0x1000, alignment: 0x2000, ..Specification::UNLIMITED_32 },
    ] {
        assert_eq!(spec.rules(), Err(IoReturn::BadArgument), "{spec:?}");
        assert_eq!(IoDmaCommand::new(platform, spec).err(), Some(IoReturn::BadArgument), "{spec:?}");
    }
}

#[test]
fn the_resolved_segment_limit_is_a_multiple_of_both_alignments() {
    let spec = Specification {
        max_segment_size: 0x1fff,
        alignment_length: 4,
        alignment_internal_segments: 0x800,
        boundary: 0x800,
        ..Specification::UNLIMITED_32
    };
    let rules = spec.rules().unwrap();
    assert_eq!(rules.max_cut(), 0x1800);
    let swapped = Specification { alignment_length: 0x800, alignment_internal_segments: 4, ..spec };
    assert_eq!(swapped.rules().unwrap().max_cut(), 0x1800);
}

// Defect 3: `Rules` had public fields, so anyone could build one that no
// specification check had passed. The getters replace the fields outside the crate.

#[test]
fn rules_are_read_through_getters() {
    let spec = Specification {
        output: OutputFormat::BIG32,
        num_address_bits: 40,
        max_segment_size: 0x1_0001,
        max_transfer_size: 0x10_0000,
        alignment: 8,
        alignment_length: 2,
        alignment_internal_segments: 4,
        boundary: 0x1_0000,
        max_segments: 16,
        virtual_boundary: 0x1000,
    };
    let rules = spec.rules().unwrap();
    assert_eq!((rules.highest_address(), rules.address_bits()), (u64::from(u32::MAX), 32));
    assert_eq!((rules.max_segment(), rules.max_transfer()), (0x1_0000, 0x10_0000));
    assert_eq!((rules.alignment(), rules.alignment_length(), rules.alignment_internal()), (8, 2, 4));
    assert_eq!((rules.boundary(), rules.max_segments(), rules.virtual_boundary()), (0x1_0000, 16, 0x1000));
}

// Defect 4: `segment_ok` computed `address + length - 1` unchecked when a
// boundary was set.

#[test]
fn segment_ok_refuses_empty_and_wrapping_segments_without_panicking() {
    let bounded = Specification { boundary: 0x1000, ..Specification::UNLIMITED_64 }.rules().unwrap();
    let unbounded = Specification::UNLIMITED_64.rules().unwrap();
    for rules in [bounded, unbounded] {
        assert!(!rules.segment_ok(0, 0, 0), "empty at 0");
        assert!(!rules.segment_ok(1, 0x1000, 0), "empty");
        assert!(!rules.segment_ok(0, u64::MAX, 2), "wraps");
        assert!(!rules.segment_ok(0, u64::MAX - 0xfff, 0x1000), "its end is 2^64");
        assert!(!rules.segment_ok(0, 0x1000, u64::MAX), "wraps from low memory");
        assert!(rules.segment_ok(0, u64::MAX - 0x1fff, 0x1000), "ends one page below the top");
    }
}

// Defect 5: segment arithmetic wrapped silently in release builds; `plan`
// overflowed on a run that reaches the top of the address space.

#[test]
fn a_run_at_the_top_of_the_address_space_is_planned_without_wrapping() {
    let rules = Specification { boundary: 0x1000, ..Specification::UNLIMITED_64 }.rules().unwrap();
    let top = u64::MAX - 0xfff;
    let layout = Layout {
        pieces: alloc::vec![Piece { start: 0, length: 0x1000, placement: Placement::Direct(top) }],
        bounce_sizes: Vec::new(),
    };
    let segments = plan::segments(&layout, &[], &rules);
    assert_eq!(segments.iter().map(|segment| segment.length).sum::<u64>(), 0x1000);
    assert!(!plan::segments_valid(&segments, &rules), "a segment whose end is 2^64 is refused");
    // Below the top the same run is fine.
    let below = Layout {
        pieces: alloc::vec![Piece { start: 0, length: 0x1000, placement: Placement::Direct(top - 0x1000) }],
        bounce_sizes: Vec::new(),
    };
    assert!(plan::segments_valid(&plan::segments(&below, &[], &rules), &rules));
}
