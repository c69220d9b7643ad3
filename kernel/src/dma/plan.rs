//! Planning a transfer: which parts of the prepared range the device can reach in
//! place, which must be bounced, and the segments the device is given.
//!
//! Pure arithmetic on addresses, so it is tested on the host. The steps:
//! 1. [`plan`] walks the descriptor's physical runs: a run the device can reach
//!    with the right start alignment stays in place; others go to bounce
//!    buffers, consecutive ones sharing one buffer. Under a virtual boundary,
//!    runs whose gaps would fall inside a page are bounced too
//!    ([`keep_gaps_on_the_virtual_boundary`]);
//! 2. [`segments`] turns the pieces into device segments, merging neighbours that
//!    touch and splitting at the boundary and the segment size limit (on the
//!    virtual boundary, when there is one);
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
    let mut offset = 0;
    let mut bounced: Vec<bool> = runs
        .iter()
        .map(|&(address, length)| {
            let alignment = if offset == 0 { rules.alignment } else { rules.alignment_internal };
            offset += length;
            !(rules.reachable(address, length) && address.is_multiple_of(alignment))
        })
        .collect();
    if rules.virtual_boundary != 0 {
        keep_gaps_on_the_virtual_boundary(runs, &mut bounced, rules.virtual_boundary);
    }
    let mut layout = Layout::default();
    let mut offset = 0;
    for (&(address, length), &bounce) in runs.iter().zip(&bounced) {
        if !bounce {
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

/// Marks for bouncing every run a device under virtual boundary `unit` cannot
/// be given in place: wherever the device's view has a gap (two runs that do
/// not touch, or in-place memory next to a bounce buffer), the run before must
/// end and the run after must start on a multiple of `unit`.
///
/// A bounce buffer starts on a multiple of `unit` (its pages are aligned at
/// least that much), and consecutive bounced runs share one, so a group of them
/// needs only its end checked: a group that ends inside a page takes in the run
/// after it, until the group's length is a multiple of `unit` or it reaches the
/// end of the transfer. Runs only ever change from direct to bounced, so this
/// settles after at most one round per run.
fn keep_gaps_on_the_virtual_boundary(runs: &[(u64, u64)], bounced: &mut [bool], unit: u64) {
    let on_boundary = |address: u64| address.is_multiple_of(unit);
    let mut changed = true;
    while changed {
        changed = false;
        // Bytes in the bounce buffer so far, while walking a group of bounced runs.
        let mut group = 0;
        for index in 0..runs.len() {
            let (address, length) = runs[index];
            // A run to the top of the address space ends on no boundary.
            let end = address.saturating_add(length);
            if bounced[index] {
                group += length;
                continue;
            }
            let touches_previous = index > 0 && !bounced[index - 1] && {
                let (previous, previous_length) = runs[index - 1];
                previous.checked_add(previous_length) == Some(address)
            };
            let touches_next = index + 1 < runs.len() && !bounced[index + 1] && runs[index + 1].0 == end;
            let after_a_group_ending_inside_a_page = index > 0 && bounced[index - 1] && !on_boundary(group);
            let start_breaks = index > 0 && !touches_previous && !on_boundary(address);
            let end_breaks = index + 1 < runs.len() && !touches_next && !on_boundary(end);
            if after_a_group_ending_inside_a_page || start_breaks || end_breaks {
                bounced[index] = true;
                group += length;
                changed = true;
            } else {
                group = 0;
            }
        }
    }
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
/// Pieces that touch in the device's address space are merged into one run, and
/// each run is cut greedily: what is left of a run goes in one segment if it
/// fits `rules.max_segment` and crosses no multiple of `rules.boundary`;
/// otherwise it is cut at that multiple if the segment may reach it, else at
/// `rules.max_cut` from the segment's start.
/// [`Specification::rules`](super::Specification::rules) makes the boundary and
/// `max_cut` multiples of the length and internal alignments and of the virtual
/// boundary, so a cut leaves later starts aligned whenever the segment it ends
/// started aligned. (`max_segment` itself need not be: it is never a cut.)
/// One that did not (the first, which may start anywhere under a virtual
/// boundary) is cut back to the last multiple of the virtual boundary instead.
pub(crate) fn segments(layout: &Layout, bounce_addresses: &[u64], rules: &Rules) -> Vec<Segment> {
    let mut output: Vec<Segment> = Vec::new();
    for run in device_runs(layout, bounce_addresses) {
        if run.checked_end().is_none() {
            // A run up to the very top of the address space: no segment's end can
            // be written down. Handing it over whole lets `segments_valid` refuse
            // the plan, so the caller bounces the transfer instead.
            output.push(run);
            continue;
        }
        // From here on `address + remaining` fits, and so does every sum below.
        let mut address = run.address.as_u64();
        let mut remaining = run.length;
        while remaining > 0 {
            // Room left before the boundary, counted from `address`.
            let boundary_room = match rules.boundary {
                0 => u64::MAX,
                boundary => boundary - address % boundary,
            };
            let mut taken = if remaining <= rules.max_segment.min(boundary_room) {
                remaining
            } else if boundary_room <= rules.max_segment {
                boundary_room
            } else {
                // The limit's own multiple may not be a valid place for the next
                // segment to start; its cut is (at most `max_segment`, so below
                // the boundary here).
                rules.max_cut
            };
            let cut = address + taken;
            if taken < remaining && rules.virtual_boundary != 0 && !cut.is_multiple_of(rules.virtual_boundary) {
                // The segment limit counted from a start inside a page: end at
                // the page before, if that leaves anything.
                let page_cut = cut - cut % rules.virtual_boundary;
                if page_cut > address {
                    taken = page_cut - address;
                }
            }
            output.push(Segment { address: DmaAddr::new(address), length: taken });
            address += taken;
            remaining -= taken;
        }
    }
    output
}

/// The pieces of `layout` at their device addresses, neighbours that touch
/// merged into one run.
fn device_runs(layout: &Layout, bounce_addresses: &[u64]) -> Vec<Segment> {
    let mut runs: Vec<Segment> = Vec::with_capacity(layout.pieces.len());
    for piece in &layout.pieces {
        let address = match piece.placement {
            Placement::Direct(address) => address,
            Placement::Bounce { buffer, offset } => (DmaAddr::new(bounce_addresses[buffer]) + offset).as_u64(),
        };
        match runs.last_mut() {
            Some(last) if last.checked_end() == Some(address) && address.checked_add(piece.length).is_some() => {
                last.length += piece.length;
            }
            _ => runs.push(Segment { address: DmaAddr::new(address), length: piece.length }),
        }
    }
    runs
}

/// Whether `segments` obey every rule, including the segment count.
pub(crate) fn segments_valid(segments: &[Segment], rules: &Rules) -> bool {
    rules.segments_ok(segments)
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
    fn a_virtual_boundary_bounces_what_lands_inside_a_page_and_no_more() {
        let rules = Specification { virtual_boundary: 0x1000, ..Specification::UNLIMITED_64 }.rules().unwrap();
        let direct = |layout: &Layout| -> Vec<bool> {
            layout.pieces.iter().map(|piece| matches!(piece.placement, Placement::Direct(_))).collect()
        };
        // Starts inside a page, whole pages, ends inside one: all in place.
        let prp_shaped = plan(&[(0x1300, 0xd00), (0x9000, 0x2000), (0x5000, 0x480)], &rules);
        assert_eq!(direct(&prp_shaped), [true, true, true]);
        // A middle piece starting inside a page, and the page after it, which
        // would start 0xe00 into a bounce page.
        let odd_start = plan(&[(0x1000, 0x1000), (0x9200, 0xe00), (0x5000, 0x1000)], &rules);
        assert_eq!(direct(&odd_start), [true, false, false]);
        assert_eq!(odd_start.bounce_sizes, [0x1e00]);
        // Two half pages fill one bounce page: the next page is in place again.
        let halves = plan(&[(0x1000, 0x1000), (0x9000, 0x800), (0x5800, 0x800), (0x7000, 0x1000)], &rules);
        assert_eq!(direct(&halves), [true, false, false, true]);
        // The first piece ends inside a page: it goes, and the rest follows it.
        let odd_end = plan(&[(0x1000, 0x800), (0x9000, 0x1000)], &rules);
        assert_eq!(direct(&odd_end), [false, false]);
        let bounced = segments(&odd_end, &[0x20_0000], &rules);
        assert_eq!(bounced, vec![Segment { address: DmaAddr::new(0x20_0000), length: 0x1800 }]);
    }

    #[test]
    fn cuts_fall_on_the_virtual_boundary() {
        let spec = Specification { virtual_boundary: 0x1000, max_segment_size: 0x2000, ..Specification::UNLIMITED_64 };
        let rules = spec.rules().unwrap();
        let layout = plan(&[(0x1204, 0x3000)], &rules);
        let segments = segments(&layout, &[], &rules);
        assert_eq!(
            segments,
            vec![
                Segment { address: DmaAddr::new(0x1204), length: 0x2000 - 0x204 },
                Segment { address: DmaAddr::new(0x3000), length: 0x1204 },
            ]
        );
        assert!(segments_valid(&segments, &rules));
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
