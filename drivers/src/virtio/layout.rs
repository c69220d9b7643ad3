//! How a virtio-blk queue's descriptor table is split into slots: a fixed
//! share of descriptors per request, so that a used element's id names its slot
//! by a division (see `block.rs` for why a static split).

use dmakit::dma::{Cause, IoFailure, IoReturn, VirtioCause};

/// The most slots: requests in flight at once.
pub const MAX_DEPTH: usize = 32;
/// Data segments a slot should hold at least, when the queue and `seg_max`
/// allow: six pages' worth of a scattered buffer, and 32 slots of 8
/// descriptors fill QEMU's 256-entry queue exactly.
const DATA_SEGMENTS_WANTED: usize = 6;

/// How the descriptor table is split among the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Queue entries (descriptors).
    pub queue_size: u16,
    /// Slots: requests in flight at once.
    pub depth: usize,
    /// Descriptors each slot owns (K): slot i owns `[i*K, (i+1)*K)`.
    pub descriptors_per_slot: usize,
    /// Data segments one request may use: `min(seg_max, K - 2)`.
    pub data_segments: usize,
}

impl SlotLayout {
    /// The split of a `queue_size`-entry queue for a device that takes
    /// `seg_max` data segments per request. `NoResources` for a queue too small
    /// for one chain (header, one data segment, status); `IoError` for a
    /// `seg_max` of 0 (no request could carry data).
    pub fn new(queue_size: u16, seg_max: usize) -> Result<SlotLayout, IoFailure> {
        if seg_max == 0 {
            // Not even one data segment per request: no request could be made.
            return Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::NoDataSegments)));
        }
        let entries = usize::from(queue_size);
        if entries < 3 {
            let cause = Cause::Virtio(VirtioCause::QueueTooSmall { size: queue_size });
            return Err(IoFailure::new(IoReturn::NoResources, cause));
        }
        let wanted = seg_max.min(DATA_SEGMENTS_WANTED);
        let depth = (entries / (wanted + 2)).clamp(1, MAX_DEPTH);
        let descriptors_per_slot = entries / depth;
        // Two descriptors of each chain are the header and the status.
        let data_segments = seg_max.min(descriptors_per_slot - 2);
        Ok(SlotLayout { queue_size, depth, descriptors_per_slot, data_segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(queue_size: u16, seg_max: usize) -> (usize, usize, usize) {
        let layout = SlotLayout::new(queue_size, seg_max).unwrap();
        (layout.depth, layout.descriptors_per_slot, layout.data_segments)
    }

    #[test]
    fn the_queue_is_split_into_slots_of_equal_shares() {
        assert_eq!(layout(256, 126), (32, 8, 6), "QEMU's queue: 32 slots of 8 descriptors");
        assert_eq!(layout(256, 254), (32, 8, 6));
        assert_eq!(layout(64, 16), (8, 8, 6));
        assert_eq!(layout(512, 16), (32, 16, 14), "a larger queue gives each slot more");
        assert_eq!(layout(1024, 126), (32, 32, 30));
        assert_eq!(layout(1024, 8), (32, 32, 8), "seg_max still caps a slot's data");
        assert_eq!(layout(256, 1), (32, 8, 1), "seg_max 1: small chains, still 32 slots");
        assert_eq!(layout(3, usize::MAX), (1, 3, 1), "the smallest queue holds one chain");
        assert_eq!(layout(4, usize::MAX), (1, 4, 2));
        assert_eq!(layout(100, 6), (12, 8, 6), "100 entries: the last 4 descriptors belong to no slot");
        assert_eq!(SlotLayout::new(2, 16).unwrap_err().code(), IoReturn::NoResources);
        assert_eq!(SlotLayout::new(256, 0).unwrap_err().code(), IoReturn::IoError);
    }
}
