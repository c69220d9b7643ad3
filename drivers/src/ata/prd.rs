//! The Physical Region Descriptor table the PIIX bus-master engine walks.

use dmakit::dma::Segment;

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
/// A region never crosses a multiple of this, and is never longer.
pub const REGION_LIMIT: u64 = 64 * 1024;

impl PrdEntry {
    /// The entry for `segment` (which must be below 4 GiB, even, at most 64 KiB).
    pub fn new(segment: Segment, last: bool) -> PrdEntry {
        PrdEntry {
            address: segment.address.as_u64() as u32,
            byte_count: if segment.length == REGION_LIMIT { 0 } else { segment.length as u16 },
            flags: if last { END_OF_TABLE } else { 0 },
        }
    }

    /// Bytes the entry covers.
    pub fn length(&self) -> u64 {
        if self.byte_count == 0 { REGION_LIMIT } else { u64::from(self.byte_count) }
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
    use dmakit::dma::DmaAddr;

    #[test]
    fn a_64_kib_region_is_written_as_zero() {
        let entry = PrdEntry::new(Segment { address: DmaAddr::new(0x1_0000), length: REGION_LIMIT }, true);
        assert_eq!(entry.to_bytes(), [0, 0, 1, 0, 0, 0, 0, 0x80]);
        assert_eq!(PrdEntry::from_bytes(entry.to_bytes()).length(), REGION_LIMIT);
    }
}
