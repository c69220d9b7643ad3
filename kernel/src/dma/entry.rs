//! Typed segment entries: a device's own descriptor format (a PIIX PRD, an
//! AHCI PRDT entry, a virtq descriptor, an NVMe PRP entry) made from one
//! prepared segment at a time.
//!
//! IOKit hands a driver its segments as raw records (`writeSegments` into a
//! byte buffer in an `OutputFormat`), which the driver then decodes into its
//! own structure. dmakit drivers skip the round trip: each entry type says how
//! it is made from a [`Segment`] and where that segment sits in the list, and
//! checks the format's own limits there, so a driver never builds an entry the
//! device would misread. The list is the same one `segments()` and
//! `write_segments()` read, so all three always agree.

use super::{IoDirection, IoFailure, Segment};

/// Where a segment sits in a transfer's list: some formats treat the first or
/// the last entry differently (the PRD table's end-of-table bit; NVMe's first
/// PRP entry, the only one that may start inside a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentPosition {
    /// The only segment: both first and last.
    Only,
    /// The first of several.
    First,
    /// Neither first nor last.
    Middle,
    /// The last of several.
    Last,
}

impl SegmentPosition {
    /// The position of entry `index` in a list of `count`.
    pub const fn of(index: usize, count: usize) -> SegmentPosition {
        match (index == 0, index + 1 == count) {
            (true, true) => SegmentPosition::Only,
            (true, false) => SegmentPosition::First,
            (false, true) => SegmentPosition::Last,
            (false, false) => SegmentPosition::Middle,
        }
    }

    /// Whether the segment ends the list.
    pub const fn is_last(self) -> bool {
        matches!(self, SegmentPosition::Only | SegmentPosition::Last)
    }

    /// Whether the segment starts the list.
    pub const fn is_first(self) -> bool {
        matches!(self, SegmentPosition::Only | SegmentPosition::First)
    }
}

/// A device's descriptor format, made from one segment.
pub trait FromSegment: Sized {
    /// The entry for `segment` at `position` of a transfer whose memory the
    /// device accesses as `direction` (`In`: the device writes memory). An
    /// error names the format's limit the segment breaks: the transfer's
    /// specification should have kept it within, so this is a driver bug
    /// caught before the device sees it, not a device limit.
    fn from_segment(segment: Segment, position: SegmentPosition, direction: IoDirection) -> Result<Self, IoFailure>;
}

/// The entries for `segments`, in order.
pub fn entries_for<E: FromSegment>(
    segments: &[Segment],
    direction: IoDirection,
) -> Result<alloc::vec::Vec<E>, IoFailure> {
    let count = segments.len();
    segments
        .iter()
        .enumerate()
        .map(|(index, segment)| E::from_segment(*segment, SegmentPosition::of(index, count), direction))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_name_the_ends_of_the_list() {
        assert_eq!(SegmentPosition::of(0, 1), SegmentPosition::Only);
        assert_eq!(SegmentPosition::of(0, 3), SegmentPosition::First);
        assert_eq!(SegmentPosition::of(1, 3), SegmentPosition::Middle);
        assert_eq!(SegmentPosition::of(2, 3), SegmentPosition::Last);
        assert!(SegmentPosition::Only.is_first() && SegmentPosition::Only.is_last());
        assert!(!SegmentPosition::Middle.is_first() && !SegmentPosition::Middle.is_last());
    }
}
