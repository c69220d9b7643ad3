//! Property tests: random buffers (sizes, offsets, page layouts, above and below
//! 4 GiB) x random specifications x every direction, on coherent and
//! non-coherent machines.

use super::*;
use crate::dma::{IoReturn, OutputFormat, Specification};
use proptest::prelude::*;

/// One scatter/gather range: a frame below or above 4 GiB, and a part of it.
#[derive(Clone, Debug)]
struct RangeChoice {
    high: bool,
    start: u64,
    length: u64,
}

fn range_choice() -> impl Strategy<Value = RangeChoice> {
    // Page edges often, so that whole pages and pieces that start or end on
    // one (what a virtual boundary lets through in place) are common.
    let start = prop_oneof![Just(0u64), Just(0x800), 0u64..4096];
    let end = prop_oneof![Just(4096u64), Just(0x800), 1u64..=4096];
    // Drawn the wrong way round, the two become the piece's end and start.
    (any::<bool>(), start, end).prop_map(|(high, start, end)| {
        let (start, end) = (start.min(end - 1), start.max(end));
        RangeChoice { high, start, length: end - start }
    })
}

fn power_or_zero(max_shift: u32) -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), (0..=max_shift).prop_map(|shift| 1u64 << shift)]
}

fn specification() -> impl Strategy<Value = Specification> {
    (
        prop_oneof![Just(OutputFormat::HOST32), Just(OutputFormat::BIG64), Just(OutputFormat::LITTLE64)],
        prop_oneof![Just(0u8), Just(32), Just(33), Just(64)],
        prop_oneof![Just(0u64), Just(512), Just(4096), 1u64..10_000],
        power_or_zero(12),
        prop_oneof![Just(0u64), Just(1), Just(2), Just(4), Just(512)],
        power_or_zero(12),
        prop_oneof![Just(0u64), Just(1024), Just(4096), Just(65536)],
        prop_oneof![Just(0usize), 1usize..10],
        prop_oneof![3 => Just(0u64), 1 => Just(512), 3 => Just(4096), 1 => Just(8192)],
    )
        .prop_map(
            |(
                output,
                bits,
                max_segment,
                alignment,
                alignment_length,
                internal,
                boundary,
                max_segments,
                virtual_boundary,
            )| {
                Specification {
                    output,
                    num_address_bits: bits,
                    max_segment_size: max_segment,
                    max_transfer_size: 0,
                    alignment,
                    alignment_length,
                    alignment_internal_segments: internal,
                    boundary,
                    max_segments,
                    virtual_boundary,
                }
            },
        )
}

fn direction() -> impl Strategy<Value = IoDirection> {
    prop_oneof![Just(IoDirection::In), Just(IoDirection::Out), Just(IoDirection::InOut)]
}

fn coherence() -> impl Strategy<Value = Coherence> {
    prop_oneof![Just(Coherence::Coherent), Just(Coherence::NonCoherent)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_transfer_obeys_the_spec_and_moves_the_right_bytes(
        choices in prop::collection::vec(range_choice(), 1..8),
        specification in specification(),
        direction in direction(),
        offset_pick in any::<u64>(),
        length_pick in any::<u64>(),
        seed in any::<u8>(),
        coherence in coherence(),
    ) {
        let platform = match coherence {
            Coherence::Coherent => SimulatedPlatform::leak(256),
            Coherence::NonCoherent => SimulatedPlatform::leak_noncoherent(256),
        };
        let free_at_start = platform.free_frames_count();
        let Ok(rules) = specification.rules() else {
            prop_assert_eq!(IoDmaCommand::new(platform, specification).err(), Some(IoReturn::BadArgument));
            return Ok(());
        };
        // Each range gets a frame of its own, so pages are never contiguous by accident.
        let frames: Vec<_> = choices.iter().map(|choice| {
            let placement = if choice.high { Constraints::NONE } else { Constraints::below(PhysAddr::new(FOUR_GIB)) };
            IoMemoryDescriptor::allocate(platform, 4096, IoDirection::InOut, placement).unwrap()
        }).collect();
        let ranges: Vec<_> = choices.iter().zip(&frames).map(|(choice, frame)| {
            (frame.physical_segment(0).unwrap().0 + choice.start, choice.length)
        }).collect();
        // SAFETY: every range lies in a frame this test owns and keeps alive.
        let descriptor = unsafe { IoMemoryDescriptor::with_physical_ranges(platform, &ranges, direction) }.unwrap();
        let total = descriptor.length();
        let original = pattern(total as usize, seed);
        descriptor.write_bytes(0, &original).unwrap();

        let offset = offset_pick % total;
        let units = (total - offset) / rules.alignment_length;
        prop_assume!(units > 0);
        let length = (1 + length_pick % units) * rules.alignment_length;

        let mut command = IoDmaCommand::new(platform, specification).unwrap();
        command.set_memory_descriptor(descriptor.clone(), false).unwrap();
        match command.prepare(offset, length) {
            Ok(()) => {}
            Err(IoReturn::NoResources) => {
                // Only when even one contiguous buffer cannot meet the segment rules:
                // too few segments allowed, or cuts that break the internal alignment.
                prop_assert!(rules.max_segments != usize::MAX || rules.alignment_internal > 1);
                let stats = platform.accounting().stats();
                prop_assert_eq!(stats.pages_in_use, 0);
                prop_assert!(!command.is_prepared());
                return Ok(());
            }
            Err(error) => prop_assert!(false, "unexpected {}", error),
        }

        let segments = command.segments().to_vec();
        prop_assert!(segments.len() <= rules.max_segments);
        for (index, segment) in segments.iter().enumerate() {
            prop_assert!(rules.segment_ok(index, segment.address.as_u64(), segment.length), "segment {} {:?} breaks {:?}", index, segment, rules);
        }
        if rules.virtual_boundary() != 0 {
            prop_assert!(meets_virtual_boundary(&segments, rules.virtual_boundary()), "{:x?} break the virtual boundary of {:?}", segments, rules);
        }
        prop_assert_eq!(segments.iter().map(|s| s.length).sum::<u64>(), length, "segments cover the range exactly");
        let range = offset as usize..(offset + length) as usize;
        prop_assert_eq!(device_reads(platform, &command), &original[range.clone()], "the device reads the descriptor's bytes");

        let device_data = pattern(length as usize, seed.wrapping_add(1));
        if direction.includes_in() {
            device_writes(platform, &segments, &device_data);
        }
        command.complete().unwrap();
        let mut expected = original.clone();
        if direction.includes_in() {
            expected[range].copy_from_slice(&device_data);
        }
        prop_assert_eq!(contents(&descriptor), expected, "same result as a direct transfer");

        let stats = platform.accounting().stats();
        prop_assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 0));
        prop_assert!(platform.accounting().misuse_log().is_empty());
        drop(command);
        drop(descriptor);
        drop(frames);
        prop_assert_eq!(platform.free_frames_count(), free_at_start, "every frame returned");
    }
}
