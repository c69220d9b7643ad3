//! `dma read ... --scatter N`: the read's buffer made of N pages that are not
//! next to each other in physical memory, and what became of them on the way
//! to the device. All but the allocation is pure (the pieces to ask for, the
//! story of the segments), so it is tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::dma::IoMemoryDescriptor;
#[cfg(target_os = "none")]
use crate::dma::{DmaBuffer, IoDirection};
#[cfg(target_os = "none")]
use crate::memory::Constraints;
use crate::memory::FRAME_SIZE;

/// The alignment each piece is allocated at: two frames. A one-frame piece
/// starting on a multiple of two frames can never touch another such piece
/// (the frame after each one starts an odd frame, which no piece does), so the
/// pieces are apart whatever order the allocator hands them out in.
pub const PIECE_ALIGNMENT: u64 = 2 * FRAME_SIZE;

/// The lengths of the `pages` pieces that hold `bytes`: a page each, the last
/// one the rest. `bytes` must need exactly `pages` pages, so that each piece
/// is a page the read reaches.
pub fn pieces(bytes: u64, pages: u64) -> Result<Vec<u64>, String> {
    let needed = bytes.div_ceil(FRAME_SIZE);
    if needed != pages {
        return Err(format!(
            "--scatter {pages} needs a read of more than {} KiB and at most {} KiB ({pages} pages); this one is {} \
             bytes, {needed} page(s): change COUNT or N",
            (pages - 1) * FRAME_SIZE / 1024,
            pages * FRAME_SIZE / 1024,
            bytes
        ));
    }
    let mut lengths = alloc::vec![FRAME_SIZE; pages as usize];
    if let Some(last) = lengths.last_mut() {
        *last = bytes - (pages - 1) * FRAME_SIZE;
    }
    Ok(lengths)
}

/// Whether any two of `starts` (each a page's physical address) are next to
/// each other in memory.
pub fn any_adjacent(starts: &[u64]) -> bool {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|pair| pair[1] - pair[0] <= FRAME_SIZE)
}

/// A buffer for `dma read --scatter`: `pages` pieces of a page (the last one
/// the rest of `bytes`), each on its own, aligned on two frames so that no two
/// touch ([`PIECE_ALIGNMENT`]).
#[cfg(target_os = "none")]
pub fn buffer(bytes: u64, pages: u64, placement: Constraints) -> Result<DmaBuffer, String> {
    let apart = Constraints { alignment: PIECE_ALIGNMENT, ..placement };
    let pieces: Vec<(u64, Constraints)> = pieces(bytes, pages)?.into_iter().map(|length| (length, apart)).collect();
    let descriptor =
        IoMemoryDescriptor::allocate_scattered(crate::dma::kernel_platform::platform(), &pieces, IoDirection::In)
            .map_err(|code| format!("no {pages} separate pages for the buffer: {code}"))?;
    DmaBuffer::from_descriptor(descriptor).map_err(|failure| format!("{failure}"))
}

/// The physically contiguous runs of `descriptor`, in order: (start, bytes).
pub fn physical_runs(descriptor: &IoMemoryDescriptor) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut offset = 0;
    while let Ok((start, length)) = descriptor.physical_segment(offset) {
        runs.push((start.as_u64(), length));
        offset += length;
    }
    runs
}

/// How the transfer went, as [`explain`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Pieces of the buffer (pages, not adjacent).
    pub pieces: usize,
    /// Segments the device was given.
    pub segments: usize,
    /// Bytes that came back through bounce memory.
    pub bounced: u64,
    /// Whether the segments were IOVAs (an IOMMU translated them).
    pub translated: bool,
}

/// One sentence on what became of the pieces.
pub fn explain(outcome: Outcome) -> String {
    let Outcome { pieces, segments, bounced, translated } = outcome;
    if bounced > 0 {
        return format!(
            "scatter: the {pieces} pieces could not be given to the device as they lie (more segments than it takes, \
             or a piece breaks its boundary, alignment or reach): the transfer went through bounce memory, \
             {segments} segment(s)"
        );
    }
    if translated && segments < pieces {
        return format!(
            "scatter: the IOMMU mapped the {pieces} pages at consecutive IOVAs, so {segments} segment(s) cover what \
             is {pieces} separate pieces in physical memory"
        );
    }
    match segments.cmp(&pieces) {
        core::cmp::Ordering::Equal => {
            format!("scatter: one segment per page: the {pieces} pages are not adjacent, so no two merge")
        }
        core::cmp::Ordering::Greater => format!(
            "scatter: the {pieces} pages became {segments} segments: a boundary or the segment size cut them further"
        ),
        core::cmp::Ordering::Less => format!("scatter: {pieces} pages reached the device as {segments} segment(s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_fills_exactly_its_pages() {
        assert_eq!(pieces(32768, 8), Ok(alloc::vec![4096; 8]));
        assert_eq!(pieces(4096 + 512, 2), Ok(alloc::vec![4096, 512]));
        assert_eq!(
            pieces(32768, 4),
            Err(String::from(
                "--scatter 4 needs a read of more than 12 KiB and at most 16 KiB (4 pages); this one is 32768 bytes, \
                 8 page(s): change COUNT or N"
            ))
        );
        assert!(pieces(4096, 2).is_err(), "a page the read never reaches");
    }

    #[test]
    fn pieces_aligned_on_two_frames_never_touch() {
        assert_eq!(PIECE_ALIGNMENT % FRAME_SIZE, 0);
        let starts: Vec<u64> = [7u64, 2, 9, 4].iter().map(|&n| n * PIECE_ALIGNMENT).collect();
        assert!(!any_adjacent(&starts));
        assert!(any_adjacent(&[0x10_0000, 0x10_1000]));
        assert!(any_adjacent(&[0x10_1000, 0x20_0000, 0x10_0000]), "in any order");
    }

    #[test]
    fn the_story_follows_what_the_device_got() {
        let outcome = Outcome { pieces: 8, segments: 8, bounced: 0, translated: false };
        assert_eq!(explain(outcome), "scatter: one segment per page: the 8 pages are not adjacent, so no two merge");
        let merged = explain(Outcome { segments: 1, translated: true, ..outcome });
        assert!(merged.starts_with("scatter: the IOMMU mapped the 8 pages at consecutive IOVAs, so 1 segment(s)"));
        let bounced = explain(Outcome { segments: 1, bounced: 32768, ..outcome });
        assert!(bounced.contains("went through bounce memory, 1 segment(s)"), "{bounced}");
        let cut = explain(Outcome { segments: 16, ..outcome });
        assert!(cut.contains("became 16 segments"), "{cut}");
    }
}
