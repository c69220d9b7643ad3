//! The formats of a split virtqueue (virtio 1.0 section 2.4): the descriptor and
//! where each part lies in memory shared with the device (`virtqueue.rs` keeps
//! the queue itself).
//!
//! Layout for the legacy interface, `size` entries (the modern interface takes
//! each part's address separately and needs less alignment, so the same layout
//! serves it too):
//! ```text
//! offset 0               descriptor table   16 * size bytes   (driver writes)
//! offset 16 * size       available ring     6 + 2 * size      (driver writes)
//! next 4096 boundary     used ring          6 + 8 * size      (device writes)
//! ```
//! The whole queue is one coherent buffer: both sides read and write it while it
//! lives, so it is never bounced.

use dmakit::dma::{
    Cause, DmaAddr, FromSegment, IoDirection, IoFailure, IoReturn, OutputFormat, Segment, SegmentPosition,
};

use super::registers::QUEUE_ALIGNMENT;
use super::transport::QueueAreas;

/// One entry of the descriptor table (`struct virtq_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtqDescriptor {
    /// 0x00: device address of the buffer.
    pub address: u64,
    /// 0x08: its length.
    pub length: u32,
    /// 0x0c: `NEXT` and `WRITE` flags.
    pub flags: u16,
    /// 0x0e: index of the next descriptor when `NEXT` is set.
    pub next: u16,
}
const _: () = assert!(size_of::<VirtqDescriptor>() == 16);

/// The output format of the driver's DMA specification: `{address: u64,
/// length: u64}`, little-endian, what IOKit's `writeSegments` writes.
pub const SEGMENT_FORMAT: OutputFormat = OutputFormat::LITTLE64;

/// The descriptor continues in `next`.
pub const DESCRIPTOR_NEXT: u16 = 1;
/// The device writes this buffer (otherwise it reads it).
pub const DESCRIPTOR_WRITE: u16 = 2;

impl FromSegment for VirtqDescriptor {
    /// The descriptor for one segment of memory the device accesses as
    /// `access` says, seen from memory: `In`, the device writes it (`WRITE`
    /// flag); `Out`, the device reads it. A virtio buffer is one or the other,
    /// so `None` and `InOut` are `BadArgument`. A length that does not fit the
    /// descriptor's 32 bits is `MessageTooLarge` (a specification with
    /// `max_segment_size` `u32::MAX` never produces one). The chain's links
    /// (`NEXT`, `next`) are the queue's to set.
    fn from_segment(segment: Segment, _: SegmentPosition, access: IoDirection) -> Result<VirtqDescriptor, IoFailure> {
        let flags = match access {
            IoDirection::In => DESCRIPTOR_WRITE,
            IoDirection::Out => 0,
            IoDirection::None | IoDirection::InOut => {
                let rule = "a buffer is either read (Out) or written (In) by the device";
                return Err(IoFailure::new(IoReturn::BadArgument, Cause::EntryFormat { format: "virtq", rule }));
            }
        };
        let length = u32::try_from(segment.length).map_err(|_| {
            let rule = "a descriptor holds at most u32::MAX bytes";
            IoFailure::new(IoReturn::MessageTooLarge, Cause::EntryFormat { format: "virtq", rule })
        })?;
        Ok(VirtqDescriptor { address: segment.address.as_u64(), length, flags, next: 0 })
    }
}

impl VirtqDescriptor {
    /// The descriptor for one segment (see [`FromSegment`]).
    pub fn for_segment(segment: Segment, access: IoDirection) -> Result<VirtqDescriptor, IoFailure> {
        VirtqDescriptor::from_segment(segment, SegmentPosition::Only, access)
    }

    /// Little-endian bytes, as the (legacy, x86) device reads them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[0..8].copy_from_slice(&self.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.length.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.flags.to_le_bytes());
        bytes[14..16].copy_from_slice(&self.next.to_le_bytes());
        bytes
    }

    /// The descriptor in `bytes` (for fake devices).
    pub fn from_bytes(bytes: &[u8; 16]) -> VirtqDescriptor {
        let word = |range: core::ops::Range<usize>| {
            let mut buffer = [0u8; 8];
            buffer[..range.len()].copy_from_slice(&bytes[range]);
            u64::from_le_bytes(buffer)
        };
        VirtqDescriptor {
            address: word(0..8),
            length: word(8..12) as u32,
            flags: word(12..14) as u16,
            next: word(14..16) as u16,
        }
    }

    /// The segment this descriptor names.
    pub fn segment(&self) -> Segment {
        Segment { address: DmaAddr::new(self.address), length: u64::from(self.length) }
    }
}

/// Where each part of a queue of `size` entries lies, in bytes from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Entries.
    pub size: u16,
    /// The available ring's offset.
    pub available: u64,
    /// The used ring's offset.
    pub used: u64,
    /// Total bytes.
    pub total: u64,
}

impl QueueLayout {
    /// The legacy layout for `size` entries.
    pub const fn new(size: u16) -> QueueLayout {
        let entries = size as u64;
        let available = 16 * entries;
        let used = (available + 6 + 2 * entries).next_multiple_of(QUEUE_ALIGNMENT);
        let total = (used + 6 + 8 * entries).next_multiple_of(QUEUE_ALIGNMENT);
        QueueLayout { size, available, used, total }
    }

    /// Where the three parts lie when the queue starts at `base`.
    pub fn areas(&self, base: DmaAddr) -> QueueAreas {
        QueueAreas {
            descriptors: base,
            driver: DmaAddr::new(base.as_u64() + self.available),
            device: DmaAddr::new(base.as_u64() + self.used),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_legacy_formula() {
        let layout = QueueLayout::new(256);
        assert_eq!(layout.available, 4096);
        assert_eq!(layout.used, 8192, "the used ring starts on the next page");
        assert_eq!(layout.total, 3 * 4096);
        let descriptor = VirtqDescriptor { address: 0x1234_5678_9abc, length: 512, flags: 3, next: 7 };
        assert_eq!(VirtqDescriptor::from_bytes(&descriptor.to_bytes()), descriptor);
    }

    #[test]
    fn descriptors_come_from_segments_and_name_who_writes() {
        let segment = Segment { address: DmaAddr::new(0x1_2345_6000), length: 0x1200 };
        let written = VirtqDescriptor::for_segment(segment, IoDirection::In).unwrap();
        assert_eq!(
            written,
            VirtqDescriptor { address: 0x1_2345_6000, length: 0x1200, flags: DESCRIPTOR_WRITE, next: 0 }
        );
        assert_eq!(written.segment(), segment);
        let read = VirtqDescriptor::for_segment(segment, IoDirection::Out).unwrap();
        assert_eq!(read.flags, 0, "the device only reads an Out buffer");
        let both = VirtqDescriptor::for_segment(segment, IoDirection::InOut).unwrap_err();
        assert_eq!(both.code(), IoReturn::BadArgument);
        let long = Segment { address: DmaAddr::new(0x1000), length: 1 << 32 };
        let too_long = VirtqDescriptor::for_segment(long, IoDirection::In).unwrap_err();
        assert_eq!(too_long.code(), IoReturn::MessageTooLarge);
    }
}
