//! Putting a planned transfer behind an IOMMU: the pages of every piece are
//! mapped at consecutive I/O virtual addresses, and the device's segments are
//! cut from those IOVAs instead of from physical addresses.
//!
//! Pages that are scattered in physical memory become neighbours in IOVA space,
//! so a transfer the planner split into many runs reaches the device as few
//! segments (one, when the rules allow it): the IOMMU, not a bounce buffer, makes
//! the memory look contiguous.

use alloc::vec::Vec;

use x86_64::PhysAddr;

use super::address::Segment;
use super::bounce::BounceBuffer;
use super::mapper::{IoMapper, MappedRange};
use super::plan::{self, Layout, Piece, Placement};
use super::specification::Rules;
use super::{IoDirection, IoFailure};
use crate::memory::FRAME_SIZE;

/// Where a command's pages go in IOVA space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum IovaChoice {
    /// Wherever the domain has room below the device's limit.
    #[default]
    Anywhere,
    /// At IOVA = physical address, if the domain can (coherent memory).
    Identity,
}

/// Maps every piece of `layout` (its bounce pieces in `buffers`) for a device
/// moving data in `direction`, and returns the device segments and the range.
///
/// With `IovaChoice::Identity`, a layout of one contiguous piece is mapped at
/// IOVA = physical address when the mapper can (coherent memory), else as usual.
pub(crate) fn map_layout(
    mapper: &dyn IoMapper,
    layout: &Layout,
    buffers: &[BounceBuffer],
    direction: IoDirection,
    rules: &Rules,
    iova_choice: IovaChoice,
) -> Result<(Vec<Segment>, MappedRange), IoFailure> {
    // The physical start of each piece, and the pages under it, in order.
    let mut pages: Vec<PhysAddr> = Vec::new();
    let mut starts: Vec<(u64, u64)> = Vec::with_capacity(layout.pieces.len());
    for piece in &layout.pieces {
        let physical = match piece.placement {
            Placement::Direct(address) => address,
            Placement::Bounce { buffer, offset } => buffers[buffer].address.as_u64() + offset,
        };
        let first_page = physical / FRAME_SIZE;
        let end_page = (physical + piece.length).div_ceil(FRAME_SIZE);
        starts.push((pages.len() as u64, physical % FRAME_SIZE));
        pages.extend((first_page..end_page).map(|page| PhysAddr::new(page * FRAME_SIZE)));
    }
    let contiguous = pages.windows(2).all(|pair| pair[1].as_u64() == pair[0].as_u64() + FRAME_SIZE);
    let identity = match iova_choice {
        IovaChoice::Identity if contiguous && layout.pieces.len() == 1 => mapper.map_identity(&pages, direction).ok(),
        _ => None,
    };
    let iova = match identity {
        Some(iova) => iova,
        None => mapper.map(&pages, direction, rules.highest_address)?,
    };
    // The same pieces, now placed at their IOVAs: the planner's segment cutting
    // merges the ones that touch and splits at boundaries and size limits.
    let pieces = layout
        .pieces
        .iter()
        .zip(&starts)
        .map(|(piece, &(page_index, in_page))| Piece {
            placement: Placement::Direct(iova + page_index * FRAME_SIZE + in_page),
            ..*piece
        })
        .collect();
    let device_layout = Layout { pieces, bounce_sizes: Vec::new() };
    let segments = plan::segments(&device_layout, &[], rules);
    Ok((segments, MappedRange { iova, pages: pages.len() }))
}
