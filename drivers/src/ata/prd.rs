//! The Physical Region Descriptor table the PIIX bus-master engine walks.
//!
//! The DMA layer writes a transfer's segments as records in the controller's
//! output format, [`RECORD_FORMAT`] (little-endian `{address: u32, length: u32}`,
//! IOKit's `OutputLittle32`). Each record becomes one [`PrdEntry`]: the same
//! address, the length in 16 bits (where 0 means 64 KiB), and the end-of-table
//! mark on the last one. Nothing here re-encodes a segment by hand.

use dmakit::dma::{Cause, DmaAddr, IoFailure, IoReturn, OutputFormat, Segment};

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
/// Bytes of one record in [`RECORD_FORMAT`].
pub const RECORD_SIZE: usize = 8;
const _: () = assert!(RECORD_FORMAT.record_size() == RECORD_SIZE);

/// Whether an entry ends the table: the engine stops walking after the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEnd {
    /// More entries follow.
    More,
    /// The last entry of the table ([`END_OF_TABLE`]).
    Last,
}

impl PrdEntry {
    /// The entry for one record the DMA layer wrote in [`RECORD_FORMAT`]. The
    /// record's length goes into 16 bits, so a 64 KiB region is written as 0, as
    /// the datasheet says. `MessageTooLarge` for a region the entry cannot hold
    /// (empty, or longer than 64 KiB): the controller would read it as 64 KiB.
    pub fn from_record(record: &[u8; RECORD_SIZE], end: TableEnd) -> Result<PrdEntry, IoFailure> {
        let (fields, _) = record.as_chunks::<4>();
        let address = u32::from_le_bytes(fields[0]);
        let length = u32::from_le_bytes(fields[1]);
        if length == 0 || u64::from(length) > REGION_LIMIT {
            let cause = Cause::Other("a PRD region holds 1 to 65536 bytes");
            return Err(IoFailure::new(IoReturn::MessageTooLarge, cause));
        }
        let flags = match end {
            TableEnd::More => 0,
            TableEnd::Last => END_OF_TABLE,
        };
        // The low 16 bits: 65536 becomes 0, the datasheet's "64 KiB".
        Ok(PrdEntry { address, byte_count: length as u16, flags })
    }

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

    /// The record the DMA layer writes for `segment`.
    fn record(address: u64, length: u64) -> [u8; RECORD_SIZE] {
        let mut record = [0; RECORD_SIZE];
        RECORD_FORMAT.encode(Segment { address: DmaAddr::new(address), length }, &mut record).unwrap();
        record
    }

    #[test]
    fn a_64_kib_region_is_written_as_zero() {
        let entry = PrdEntry::from_record(&record(0x1_0000, REGION_LIMIT), TableEnd::Last).unwrap();
        assert_eq!(entry.to_bytes(), [0, 0, 1, 0, 0, 0, 0, 0x80]);
        assert_eq!(PrdEntry::from_bytes(entry.to_bytes()).length(), REGION_LIMIT);
        assert_eq!(entry.table_end(), TableEnd::Last);
    }

    #[test]
    fn records_become_entries_with_their_address_length_and_end() {
        let entry = PrdEntry::from_record(&record(0x12_3400, 0x200), TableEnd::More).unwrap();
        assert_eq!(entry, PrdEntry { address: 0x12_3400, byte_count: 0x200, flags: 0 });
        assert_eq!(entry.segment(), Segment { address: DmaAddr::new(0x12_3400), length: 0x200 });
        assert_eq!(entry.table_end(), TableEnd::More);
    }

    #[test]
    fn regions_an_entry_cannot_hold_are_refused() {
        for length in [0, REGION_LIMIT + 2] {
            let refused = PrdEntry::from_record(&record(0x1000, length), TableEnd::Last).unwrap_err();
            assert_eq!(refused.code(), IoReturn::MessageTooLarge, "{length} bytes");
        }
    }
}
