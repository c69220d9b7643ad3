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
use super::{Cause, IoDirection, IoFailure};
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
        IovaChoice::Identity if contiguous && layout.pieces.len() == 1 => {
            match mapper.map_identity(&pages, direction) {
                Ok(iova) => Some(iova),
                // A half-made identity mapping whose undo the IOMMU did not
                // confirm: the device may still reach the pages, so they must
                // not be mapped again or freed; the caller keeps them from reuse.
                Err(failure) if matches!(failure.cause(), Cause::InvalidationFailed { .. }) => return Err(failure),
                // Any other refusal: the mapper could not map them 1:1, so an
                // ordinary mapping is tried.
                Err(_) => None,
            }
        }
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

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::dma::{IoReturn, IommuFault, Specification};

    /// A mapper whose identity map fails with `identity`, and which records
    /// whether an ordinary map was tried after it.
    struct Refusing {
        identity: IoFailure,
        mapped: AtomicBool,
    }

    impl IoMapper for Refusing {
        fn name(&self) -> String {
            String::from("refusing")
        }
        fn translating(&self) -> bool {
            true
        }
        fn map(&self, _: &[PhysAddr], _: IoDirection, _: u64) -> Result<u64, IoFailure> {
            self.mapped.store(true, Ordering::Relaxed);
            Ok(0x1000)
        }
        fn map_identity(&self, _: &[PhysAddr], _: IoDirection) -> Result<u64, IoFailure> {
            Err(self.identity)
        }
        fn unmap(&self, _: u64, _: usize) -> Result<(), IoFailure> {
            Ok(())
        }
        fn translate(&self, _: u64) -> Option<PhysAddr> {
            None
        }
        fn take_fault(&self, _: MappedRange) -> Option<IommuFault> {
            None
        }
    }

    fn map_one_page(mapper: &Refusing) -> Result<(Vec<Segment>, MappedRange), IoFailure> {
        let piece = Piece { start: 0, length: FRAME_SIZE, placement: Placement::Direct(0x20_0000) };
        let layout = Layout { pieces: alloc::vec![piece], bounce_sizes: Vec::new() };
        let rules = Specification::UNLIMITED_64.rules().unwrap();
        map_layout(mapper, &layout, &[], IoDirection::In, &rules, IovaChoice::Identity)
    }

    #[test]
    fn an_identity_map_the_iommu_could_not_undo_is_not_mapped_again() {
        let unconfirmed = IoFailure::new(IoReturn::Timeout, Cause::InvalidationFailed { iova: 0x20_0000, pages: 1 });
        let mapper = Refusing { identity: unconfirmed, mapped: AtomicBool::new(false) };
        assert_eq!(map_one_page(&mapper).unwrap_err(), unconfirmed, "the caller must keep the pages from reuse");
        assert!(
            !mapper.mapped.load(Ordering::Relaxed),
            "the pages a stale IOTLB entry may reach were not mapped again"
        );
    }

    #[test]
    fn an_identity_map_the_mapper_cannot_make_falls_back_to_an_ordinary_one() {
        let unsupported =
            IoFailure::new(IoReturn::NotPermitted, Cause::Iommu(crate::dma::IommuCause::IdentityUnsupported));
        let mapper = Refusing { identity: unsupported, mapped: AtomicBool::new(false) };
        let (_, range) = map_one_page(&mapper).unwrap();
        assert_eq!(range, MappedRange { iova: 0x1000, pages: 1 });
        assert!(mapper.mapped.load(Ordering::Relaxed));
    }
}
