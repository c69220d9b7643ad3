//! The Physical Region Descriptor table the PIIX bus-master engine walks.
//!
//! Each segment of a prepared transfer becomes one [`PrdEntry`]
//! ([`FromSegment`]): the same address, the length in 16 bits (where 0 means
//! 64 KiB), and the end-of-table mark on the last one. The entry checks the
//! format's own limits (32-bit address, even, 1 to 64 KiB); the channel's
//! specification keeps every segment within them, and within the engine's rule
//! that no region crosses a 64 KiB line,
//! so a refusal here is a driver bug caught before the controller sees it.
//! The specification's output format, [`RECORD_FORMAT`] (little-endian
//! `{address: u32, length: u32}`, IOKit's `OutputLittle32`), is what IOKit's
//! `writeSegments` would write for the same segments.

use dmakit::dma::{
    Cause, DmaAddr, FromSegment, IoDirection, IoFailure, IoReturn, OutputFormat, Segment, SegmentPosition,
};

/// One PRD entry (Intel 82371SB, "Physical Region Descriptor Table").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrdEntry {
    /// 0x00: physical address of the region; bit 0 must be zero.
    pub address: u32,
    /// 0x04: bytes in the region, even; 0 means 64 KiB.
    pub byte_count: u16,
    /// 0x06: bit 15 marks the last entry (end of table).
    pub flags: u16,
}
const _: () = assert!(size_of::<PrdEntry>() == 8);

/// `flags`: the last entry of the table.
pub const END_OF_TABLE: u16 = 0x8000;
/// Entries in one 4 KiB table page.
pub const ENTRIES_PER_TABLE: usize = 4096 / size_of::<PrdEntry>();
/// Bytes of the whole table.
pub const TABLE_BYTES: u64 = (ENTRIES_PER_TABLE * size_of::<PrdEntry>()) as u64;
/// A region never crosses a multiple of this, and is never longer.
pub const REGION_LIMIT: u64 = 64 * 1024;

/// How the DMA layer writes segments for the controller: the output format of
/// [`super::PIIX_SPECIFICATION`].
pub const RECORD_FORMAT: OutputFormat = OutputFormat::LITTLE32;

/// Whether an entry ends the table: the engine stops walking after the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEnd {
    /// More entries follow.
    More,
    /// The last entry of the table ([`END_OF_TABLE`]).
    Last,
}

impl FromSegment for PrdEntry {
    /// The length goes into 16 bits, so a 64 KiB region is written as 0, as the
    /// datasheet says. `MessageTooLarge` for a region the entry cannot hold
    /// (empty, longer than 64 KiB, above 4 GiB, odd): the controller would
    /// misread it. A region across a 64 KiB line is encodable; that the engine
    /// mishandles it is a rule of its DMA, which the specification's
    /// `boundary` keeps (and `experiment cross-64k` switches off, to show it).
    fn from_segment(segment: Segment, position: SegmentPosition, _: IoDirection) -> Result<PrdEntry, IoFailure> {
        let refuse = |rule| Err(IoFailure::new(IoReturn::MessageTooLarge, Cause::EntryFormat { format: "PRD", rule }));
        let start = segment.address.as_u64();
        let Ok(address) = u32::try_from(start) else {
            return refuse("the region starts above 4 GiB");
        };
        if segment.length == 0 || segment.length > REGION_LIMIT {
            return refuse("a region holds 1 to 65536 bytes");
        }
        if !start.is_multiple_of(2) || !segment.length.is_multiple_of(2) {
            return refuse("a region starts and ends on an even address");
        }
        let flags = if position.is_last() { END_OF_TABLE } else { 0 };
        // The low 16 bits: 65536 becomes 0, the datasheet's "64 KiB".
        Ok(PrdEntry { address, byte_count: segment.length as u16, flags })
    }
}

impl PrdEntry {
    /// Bytes the entry covers.
    pub fn length(&self) -> u64 {
        if self.byte_count == 0 { REGION_LIMIT } else { u64::from(self.byte_count) }
    }

    /// Whether the engine stops after this entry.
    pub fn table_end(&self) -> TableEnd {
        if self.flags & END_OF_TABLE != 0 { TableEnd::Last } else { TableEnd::More }
    }

    /// The region as a segment, as the device sees it.
    pub fn segment(&self) -> Segment {
        Segment { address: DmaAddr::new(u64::from(self.address)), length: self.length() }
    }

    /// Little-endian bytes, as the controller reads them.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[0..4].copy_from_slice(&self.address.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.byte_count.to_le_bytes());
        bytes[6..8].copy_from_slice(&self.flags.to_le_bytes());
        bytes
    }

    /// The entry in `bytes` (for fake controllers).
    pub fn from_bytes(bytes: [u8; 8]) -> PrdEntry {
        PrdEntry {
            address: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            byte_count: u16::from_le_bytes([bytes[4], bytes[5]]),
            flags: u16::from_le_bytes([bytes[6], bytes[7]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: u64, length: u64, position: SegmentPosition) -> Result<PrdEntry, IoFailure> {
        PrdEntry::from_segment(Segment { address: DmaAddr::new(address), length }, position, IoDirection::In)
    }

    #[test]
    fn a_64_kib_region_is_written_as_zero() {
        let whole = entry(0x1_0000, REGION_LIMIT, SegmentPosition::Only).unwrap();
        assert_eq!(whole.to_bytes(), [0, 0, 1, 0, 0, 0, 0, 0x80]);
        assert_eq!(PrdEntry::from_bytes(whole.to_bytes()).length(), REGION_LIMIT);
        assert_eq!(whole.table_end(), TableEnd::Last);
    }

    #[test]
    fn segments_become_entries_with_their_address_length_and_end() {
        let first = entry(0x12_3400, 0x200, SegmentPosition::First).unwrap();
        assert_eq!(first, PrdEntry { address: 0x12_3400, byte_count: 0x200, flags: 0 });
        assert_eq!(first.segment(), Segment { address: DmaAddr::new(0x12_3400), length: 0x200 });
        assert_eq!(first.table_end(), TableEnd::More);
        assert_eq!(entry(0x12_3400, 0x200, SegmentPosition::Last).unwrap().table_end(), TableEnd::Last);
    }

    #[test]
    fn regions_an_entry_cannot_hold_are_refused() {
        for (address, length) in [(0x1000, 0), (0x1000, REGION_LIMIT + 2), (1 << 32, 2), (0x1001, 2)] {
            let refused = entry(address, length, SegmentPosition::Only).unwrap_err();
            assert_eq!(refused.code(), IoReturn::MessageTooLarge, "{address:#x}+{length}");
            assert!(matches!(refused.cause(), Cause::EntryFormat { format: "PRD", .. }));
        }
    }
}
