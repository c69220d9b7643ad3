//! Planning a transfer: which parts of the prepared range the device can reach in
//! place, which must be bounced, and the segments the device is given.
//!
//! Pure arithmetic on addresses, so it is tested on the host. The steps:
//! 1. [`plan`] walks the descriptor's physical runs: a run the device can reach
//!    with the right start alignment stays in place; others go to bounce
//!    buffers, consecutive ones sharing one buffer;
//! 2. [`segments`] turns the pieces into device segments, merging neighbours that
//!    touch and splitting at the boundary and the segment size limit;
//! 3. if those segments still break a rule (length alignment, segment count), the
//!    caller falls back to [`single_buffer`]: the whole range in one buffer.

use alloc::vec::Vec;

use super::address::{DmaAddr, Segment};
use super::specification::Rules;

/// Where one piece of the prepared range lives while the device works on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the descriptor's own memory, at this physical address.
    Direct(u64),
    /// In bounce buffer `buffer`, at `offset` from its start.
    Bounce { buffer: usize, offset: u64 },
}

/// A contiguous part of the prepared range and where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Offset from the start of the prepared range.
    pub start: u64,
    /// Bytes.
    pub length: u64,
    /// Where the bytes are.
    pub placement: Placement,
}

/// The pieces of a transfer and the size of each bounce buffer it needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub pieces: Vec<Piece>,
    pub bounce_sizes: Vec<u64>,
}

impl Layout {
    /// Whether the whole range lives in one bounce buffer.
    pub fn wholly_double_buffered(&self) -> bool {
        self.bounce_sizes.len() == 1
            && self.pieces.iter().all(|piece| matches!(piece.placement, Placement::Bounce { .. }))
    }
}

/// Classifies each physical run (address, length), in order, as direct or bounced.
pub(crate) fn plan(runs: &[(u64, u64)], rules: &Rules) -> Layout {
    let mut layout = Layout::default();
    let mut offset = 0;
    for &(address, length) in runs {
        let alignment = if offset == 0 { rules.alignment } else { rules.alignment_internal };
        let in_place = rules.reachable(address, length) && address.is_multiple_of(alignment);
        if in_place {
            layout.pieces.push(Piece { start: offset, length, placement: Placement::Direct(address) });
        } else {
            let previous_bounced =
                matches!(layout.pieces.last(), Some(Piece { placement: Placement::Bounce { .. }, .. }));
            if !previous_bounced {
                layout.bounce_sizes.push(0);
            }
            let buffer = layout.bounce_sizes.len() - 1;
            let buffer_offset = layout.bounce_sizes[buffer];
            layout.bounce_sizes[buffer] += length;
            layout.pieces.push(Piece {
                start: offset,
                length,
                placement: Placement::Bounce { buffer, offset: buffer_offset },
            });
        }
        offset += length;
    }
    layout
}

/// The whole range of `length` bytes in one bounce buffer.
pub(crate) fn single_buffer(length: u64) -> Layout {
    Layout {
        pieces: alloc::vec![Piece { start: 0, length, placement: Placement::Bounce { buffer: 0, offset: 0 } }],
        bounce_sizes: alloc::vec![length],
    }
}

/// Device segments for `layout`, with bounce buffer `i` at `bounce_addresses[i]`.
///
/// Cuts fall at `rules.max_segment` from a segment's start or at a multiple of
/// `rules.boundary`; [`Specification::rules`](super::Specification::rules) makes
/// both multiples of the length and internal alignments, so a cut leaves later
/// starts aligned whenever the segment it ends started aligned.
pub(crate) fn segments(layout: &Layout, bounce_addresses: &[u64], rules: &Rules) -> Vec<Segment> {
    let mut output: Vec<Segment> = Vec::new();
    for piece in &layout.pieces {
        let mut address = match piece.placement {
            Placement::Direct(address) => address,
            Placement::Bounce { buffer, offset } => (DmaAddr::new(bounce_addresses[buffer]) + offset).as_u64(),
        };
        if address.checked_add(piece.length).is_none() {
            // A run up to the very top of the address space: no segment's end can
            // be written down. Handing it over whole lets `segments_valid` refuse
            // the plan, so the caller bounces the transfer instead.
            output.push(Segment { address: DmaAddr::new(address), length: piece.length });
            continue;
        }
        // From here on `address + remaining` fits, and so does every sum below.
        let mut remaining = piece.length;
        while remaining > 0 {
            // Room left before the boundary, counted from `address`.
            let boundary_room = match rules.boundary {
                0 => u64::MAX,
                boundary => boundary - address % boundary,
            };
            let last = output.last_mut();
            let extends = last.as_ref().is_some_and(|last| {
                last.checked_end() == Some(address)
                    && last.length < rules.max_segment
                    && boundary_room != rules.boundary
            });
            let taken = if extends {
                let last = last.expect("checked above");
                let taken = remaining.min(rules.max_segment - last.length).min(boundary_room);
                last.length += taken;
                taken
            } else {
                let taken = remaining.min(rules.max_segment).min(boundary_room);
                output.push(Segment { address: DmaAddr::new(address), length: taken });
                taken
            };
            address += taken;
            remaining -= taken;
        }
    }
    output
}

/// Whether `segments` obey every rule, including the segment count.
pub(crate) fn segments_valid(segments: &[Segment], rules: &Rules) -> bool {
    segments.len() <= rules.max_segments
        && segments
            .iter()
            .enumerate()
            .all(|(index, segment)| rules.segment_ok(index, segment.address.as_u64(), segment.length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::Specification;

    const GIB: u64 = 1 << 30;

    #[test]
    fn pages_above_the_limit_bounce_and_share_a_buffer() {
        let rules = Specification::UNLIMITED_32.rules().unwrap();
        let runs = [(0x1000, 0x1000), (5 * GIB, 0x1000), (6 * GIB, 0x800), (0x9000, 0x800)];
        let layout = plan(&runs, &rules);
        assert_eq!(layout.bounce_sizes, vec![0x1800]);
        assert_eq!(layout.pieces[0].placement, Placement::Direct(0x1000));
        assert_eq!(layout.pieces[2].placement, Placement::Bounce { buffer: 0, offset: 0x1000 });
        let segments = segments(&layout, &[0x7000_0000], &rules);
        assert_eq!(
            segments,
            vec![
                Segment { address: DmaAddr::new(0x1000), length: 0x1000 },
                Segment { address: DmaAddr::new(0x7000_0000), length: 0x1800 },
                Segment { address: DmaAddr::new(0x9000), length: 0x800 },
            ]
        );
        assert!(segments_valid(&segments, &rules));
    }

    #[test]
    fn boundaries_split_and_touching_runs_merge() {
        let spec = Specification { boundary: 0x10000, max_segment_size: 0x8000, ..Specification::UNLIMITED_32 };
        let rules = spec.rules().unwrap();
        let layout = plan(&[(0xf000, 0x1000), (0x10000, 0x9000)], &rules);
        let segments = segments(&layout, &[], &rules);
        assert_eq!(
            segments,
            vec![
                Segment { address: DmaAddr::new(0xf000), length: 0x1000 },
                Segment { address: DmaAddr::new(0x10000), length: 0x8000 },
                Segment { address: DmaAddr::new(0x18000), length: 0x1000 },
            ]
        );
    }

    #[test]
    fn too_many_segments_is_detected() {
        let spec = Specification { max_segments: 2, ..Specification::UNLIMITED_64 };
        let rules = spec.rules().unwrap();
        let layout = plan(&[(0x1000, 0x100), (0x3000, 0x100), (0x5000, 0x100)], &rules);
        assert!(!segments_valid(&segments(&layout, &[], &rules), &rules));
        let single = single_buffer(0x300);
        assert!(single.wholly_double_buffered());
        assert!(segments_valid(&segments(&single, &[0x8000], &rules), &rules));
    }
}
