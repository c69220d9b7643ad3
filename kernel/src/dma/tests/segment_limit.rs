//! A segment limit that is not a multiple of the internal alignment: it is
//! rounded down only where a segment is cut (so that the next one starts
//! aligned); a transfer that fits in one segment of the stated size is given in
//! place, in one segment.

use super::*;
use crate::dma::Specification;

/// 5040 bytes a segment (315 units of 16), later segments on 32 bytes.
const SPEC: Specification = Specification {
    max_segment_size: 5040,
    alignment_length: 16,
    alignment_internal_segments: 32,
    ..Specification::UNLIMITED_64
};

#[test]
fn a_transfer_that_fits_one_segment_of_the_stated_size_is_not_bounced() {
    let platform = machine();
    let below = Constraints::below(PhysAddr::new(FOUR_GIB));
    // An odd address: the first segment may start anywhere (alignment 1).
    let descriptor =
        IoMemoryDescriptor::allocate_scattered_at(platform, &[(1, 5040, below)], IoDirection::Out).unwrap();
    let (physical, _) = descriptor.physical_segment(0).unwrap();
    let mut command = IoDmaCommand::new(platform, SPEC).unwrap();
    command.set_memory_descriptor(descriptor, true).unwrap();
    assert_eq!(command.bounced_bytes(), 0, "one segment of 5040 bytes meets every rule");
    assert_eq!(command.segments(), &[Segment { address: crate::dma::DmaAddr::new(physical.as_u64()), length: 5040 }]);
    command.complete().unwrap();
}

#[test]
fn a_cut_still_falls_on_the_internal_alignment() {
    let platform = machine();
    let descriptor = low_buffer(platform, 3 * 5040, IoDirection::Out);
    let rules = SPEC.rules().unwrap();
    let mut command = IoDmaCommand::new(platform, SPEC).unwrap();
    command.set_memory_descriptor(descriptor, true).unwrap();
    assert_eq!(command.bounced_bytes(), 0, "page-aligned memory can be cut in place");
    assert!(rules.segments_ok(command.segments()), "{:?}", command.segments());
    assert!(command.segments().iter().skip(1).all(|segment| segment.address.as_u64().is_multiple_of(32)));
    assert_eq!(command.segments().iter().map(|segment| segment.length).sum::<u64>(), 3 * 5040);
    command.complete().unwrap();
}
