//! What the HBA reads from memory (AHCI 1.3.1, section 4.2): the command
//! header, the command table with its command FIS and its PRDT, and the
//! host-to-device register FIS. Each is a typed `#[repr(C)]` structure that is
//! serialized explicitly, little endian, into the shared memory.
//!
//! PRDT entries come from the DMA layer: each segment of a prepared transfer
//! becomes one [`PrdtEntry`] ([`FromSegment`]). [`RECORD_FORMAT`] (little-endian
//! `{address: u64, length: u64}`) is the specification's output format, what
//! IOKit's `writeSegments` writes for the same segments.

use dmakit::dma::{
    Cause, DmaAddr, FromSegment, IoDirection, IoFailure, IoReturn, OutputFormat, Segment, SegmentPosition,
};

/// Command headers in a command list: one per slot.
pub const COMMAND_SLOTS: usize = 32;
/// PRDT entries in each command table: bounds a request's segments (a
/// transfer that would need more is double-buffered by the DMA layer).
pub const PRDT_ENTRIES: usize = 64;
/// The most bytes one PRDT entry describes (DBC is 22 bits, count - 1).
pub const PRDT_ENTRY_LIMIT: u64 = 4 << 20;
/// Where the PRDT starts in a command table.
pub const PRDT_OFFSET: u64 = 0x80;
/// Bytes of the command list.
pub const COMMAND_LIST_BYTES: u64 = (COMMAND_SLOTS * size_of::<CommandHeader>()) as u64;
/// Bytes of the received-FIS area.
pub const RECEIVED_FIS_BYTES: u64 = 256;
/// Bytes of one command table (a multiple of its 128-byte alignment).
pub const COMMAND_TABLE_BYTES: u64 = size_of::<CommandTable>() as u64;
const _: () = assert!(COMMAND_TABLE_BYTES.is_multiple_of(128));

/// How the DMA layer writes segments for the HBA.
pub const RECORD_FORMAT: OutputFormat = OutputFormat::LITTLE64;

/// Command FIS length, in dwords, for a register FIS (CFL).
pub const HEADER_FIS_DWORDS: u16 = 5;
/// Header flag W: the device reads memory (a disk write).
pub const HEADER_WRITE: u16 = 1 << 6;

/// One entry of a command list (AHCI 1.3.1, 4.2.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandHeader {
    /// 0x00: CFL (bits 4:0), A, W, P, R, B, C, PMP (bits 15:12).
    pub flags: u16,
    /// 0x02: PRDTL, entries in the PRDT.
    pub prdt_length: u16,
    /// 0x04: PRDBC, bytes the HBA moved (it writes this).
    pub bytes_moved: u32,
    /// 0x08: CTBA, command table address (128-byte aligned), low half.
    pub table: u32,
    /// 0x0c: CTBAU, its high half.
    pub table_upper: u32,
    /// 0x10: reserved.
    pub reserved: [u32; 4],
}
const _: () = assert!(size_of::<CommandHeader>() == 32);

/// One PRDT entry (AHCI 1.3.1, 4.2.3.3).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrdtEntry {
    /// 0x00: DBA, data address (word aligned), low half.
    pub address: u32,
    /// 0x04: DBAU, its high half.
    pub address_upper: u32,
    /// 0x08: reserved.
    pub reserved: u32,
    /// 0x0c: DBC (bits 21:0, bytes minus one, odd: counts are even) and I (bit 31).
    pub count: u32,
}
const _: () = assert!(size_of::<PrdtEntry>() == 16);

/// A host-to-device register FIS (SATA 3.x, 10.5.5; AHCI calls it the command FIS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterFis {
    /// 0x27.
    pub fis_type: u8,
    /// Bit 7, C: the FIS carries a command.
    pub flags: u8,
    /// The ATA command.
    pub command: u8,
    /// Features 7:0 (NCQ: sector count 7:0).
    pub features: u8,
    /// LBA 7:0, 15:8, 23:16.
    pub lba_low: [u8; 3],
    /// Device: bit 6 is LBA mode.
    pub device: u8,
    /// LBA 31:24, 39:32, 47:40.
    pub lba_high: [u8; 3],
    /// Features 15:8 (NCQ: sector count 15:8).
    pub features_upper: u8,
    /// Count 7:0 (NCQ: the tag in bits 7:3).
    pub count: u8,
    /// Count 15:8.
    pub count_upper: u8,
    /// Isochronous command completion.
    pub icc: u8,
    /// Device control.
    pub control: u8,
    /// Reserved.
    pub reserved: [u8; 4],
}
const _: () = assert!(size_of::<RegisterFis>() == 20);

/// A command table (AHCI 1.3.1, 4.2.3) with room for [`PRDT_ENTRIES`] entries.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CommandTable {
    /// 0x00: the command FIS (a [`RegisterFis`] in the first 20 bytes).
    pub fis: [u8; 64],
    /// 0x40: the ATAPI command (unused: disks only).
    pub atapi: [u8; 16],
    /// 0x50: reserved.
    pub reserved: [u8; 48],
    /// 0x80: the PRDT.
    pub prdt: [PrdtEntry; PRDT_ENTRIES],
}
const _: () = assert!(size_of::<CommandTable>() == 0x80 + 16 * PRDT_ENTRIES);

/// FIS type of a host-to-device register FIS.
pub const FIS_TYPE_REGISTER_H2D: u8 = 0x27;
/// Register FIS flag C: this FIS updates the command register.
pub const FIS_COMMAND: u8 = 0x80;
/// Device register: LBA addressing.
pub const DEVICE_LBA: u8 = 0x40;

fn dword(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl CommandHeader {
    /// The header for a command table at `table` with `prdt_length` entries,
    /// a 5-dword register FIS, `HEADER_WRITE` in `flags` for disk writes.
    pub fn new(table: DmaAddr, prdt_length: u16, flags: u16) -> CommandHeader {
        let table = table.as_u64();
        CommandHeader {
            flags: HEADER_FIS_DWORDS | flags,
            prdt_length,
            bytes_moved: 0,
            table: table as u32,
            table_upper: (table >> 32) as u32,
            reserved: [0; 4],
        }
    }

    /// The command table's address.
    pub fn table_address(&self) -> u64 {
        u64::from(self.table_upper) << 32 | u64::from(self.table)
    }

    /// Little-endian bytes, as the HBA reads them.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut bytes = [0; 32];
        bytes[0..2].copy_from_slice(&self.flags.to_le_bytes());
        bytes[2..4].copy_from_slice(&self.prdt_length.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.bytes_moved.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.table.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.table_upper.to_le_bytes());
        bytes
    }

    /// The header in `bytes` (for fake HBAs).
    pub fn from_bytes(bytes: &[u8; 32]) -> CommandHeader {
        CommandHeader {
            flags: u16::from_le_bytes([bytes[0], bytes[1]]),
            prdt_length: u16::from_le_bytes([bytes[2], bytes[3]]),
            bytes_moved: dword(bytes, 4),
            table: dword(bytes, 8),
            table_upper: dword(bytes, 12),
            reserved: [0; 4],
        }
    }
}

impl FromSegment for PrdtEntry {
    /// `MessageTooLarge` for a region the entry cannot hold (empty, odd, at an
    /// odd address, or longer than 4 MiB): the specification the driver gives
    /// its commands never produces one.
    fn from_segment(segment: Segment, _: SegmentPosition, _: IoDirection) -> Result<PrdtEntry, IoFailure> {
        let (address, length) = (segment.address.as_u64(), segment.length);
        if length == 0 || length > PRDT_ENTRY_LIMIT || !length.is_multiple_of(2) || !address.is_multiple_of(2) {
            let cause = Cause::EntryFormat {
                format: "PRDT",
                rule: "an entry holds an even count of 2 bytes to 4 MiB at an even address",
            };
            return Err(IoFailure::new(IoReturn::MessageTooLarge, cause));
        }
        Ok(PrdtEntry {
            address: address as u32,
            address_upper: (address >> 32) as u32,
            reserved: 0,
            count: (length - 1) as u32,
        })
    }
}

impl PrdtEntry {
    /// The region as a segment, as the device sees it.
    pub fn segment(&self) -> Segment {
        let address = u64::from(self.address_upper) << 32 | u64::from(self.address);
        Segment { address: DmaAddr::new(address), length: u64::from(self.count & 0x3f_ffff) + 1 }
    }

    /// Little-endian bytes, as the HBA reads them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[0..4].copy_from_slice(&self.address.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.address_upper.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.reserved.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    /// The entry in `bytes` (for fake HBAs).
    pub fn from_bytes(bytes: &[u8; 16]) -> PrdtEntry {
        PrdtEntry {
            address: dword(bytes, 0),
            address_upper: dword(bytes, 4),
            reserved: dword(bytes, 8),
            count: dword(bytes, 12),
        }
    }
}

impl RegisterFis {
    /// A command FIS for `command` on `lba` with `count` in the count field
    /// and `features` in the features field (NCQ puts the sector count there).
    pub fn command(command: u8, lba: u64, count: u16, features: u16, device: u8) -> RegisterFis {
        let byte = |shift: u32| (lba >> shift) as u8;
        RegisterFis {
            fis_type: FIS_TYPE_REGISTER_H2D,
            flags: FIS_COMMAND,
            command,
            features: features as u8,
            lba_low: [byte(0), byte(8), byte(16)],
            device,
            lba_high: [byte(24), byte(32), byte(40)],
            features_upper: (features >> 8) as u8,
            count: count as u8,
            count_upper: (count >> 8) as u8,
            icc: 0,
            control: 0,
            reserved: [0; 4],
        }
    }

    /// The 48-bit LBA.
    pub fn lba(&self) -> u64 {
        let low = self.lba_low.iter().chain(&self.lba_high);
        low.enumerate().fold(0, |lba, (index, &byte)| lba | u64::from(byte) << (8 * index))
    }

    /// Little-endian bytes, as the HBA reads them.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut bytes = [0; 20];
        bytes[0] = self.fis_type;
        bytes[1] = self.flags;
        bytes[2] = self.command;
        bytes[3] = self.features;
        bytes[4..7].copy_from_slice(&self.lba_low);
        bytes[7] = self.device;
        bytes[8..11].copy_from_slice(&self.lba_high);
        bytes[11] = self.features_upper;
        bytes[12] = self.count;
        bytes[13] = self.count_upper;
        bytes[14] = self.icc;
        bytes[15] = self.control;
        bytes[16..20].copy_from_slice(&self.reserved);
        bytes
    }

    /// The FIS in `bytes` (for fake HBAs).
    pub fn from_bytes(bytes: &[u8; 20]) -> RegisterFis {
        RegisterFis {
            fis_type: bytes[0],
            flags: bytes[1],
            command: bytes[2],
            features: bytes[3],
            lba_low: [bytes[4], bytes[5], bytes[6]],
            device: bytes[7],
            lba_high: [bytes[8], bytes[9], bytes[10]],
            features_upper: bytes[11],
            count: bytes[12],
            count_upper: bytes[13],
            icc: bytes[14],
            control: bytes[15],
            reserved: [bytes[16], bytes[17], bytes[18], bytes[19]],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_round_trip_through_their_bytes() {
        let header = CommandHeader::new(DmaAddr::new(0x1_2345_6780), 3, HEADER_WRITE);
        assert_eq!(header.to_bytes()[0], 0x45, "CFL 5 and W");
        assert_eq!(CommandHeader::from_bytes(&header.to_bytes()), header);
        assert_eq!(header.table_address(), 0x1_2345_6780);
        let fis = RegisterFis::command(COMMAND_READ_FPDMA_QUEUED, 0x0102_0304_0506, 7 << 3, 16, DEVICE_LBA);
        assert_eq!(RegisterFis::from_bytes(&fis.to_bytes()), fis);
        assert_eq!(fis.lba(), 0x0102_0304_0506);
        assert_eq!(fis.to_bytes()[..4], [0x27, 0x80, 0x60, 16]);
    }

    const COMMAND_READ_FPDMA_QUEUED: u8 = super::super::registers::COMMAND_READ_FPDMA_QUEUED;

    #[test]
    fn prdt_entries_are_the_segments_with_a_count_minus_one() {
        let entry = |segment| PrdtEntry::from_segment(segment, SegmentPosition::Only, IoDirection::In);
        let segment = Segment { address: DmaAddr::new(0x1_0000_2000), length: 0x1000 };
        let made = entry(segment).unwrap();
        assert_eq!(made, PrdtEntry { address: 0x2000, address_upper: 1, reserved: 0, count: 0xfff });
        assert_eq!(made.segment(), segment);
        assert_eq!(PrdtEntry::from_bytes(&made.to_bytes()), made);
        for (address, length) in [(0x2000, 0), (0x2000, 3), (0x2000, PRDT_ENTRY_LIMIT + 2), (0x2001, 2)] {
            let refused = entry(Segment { address: DmaAddr::new(address), length }).unwrap_err();
            assert_eq!(refused.code(), IoReturn::MessageTooLarge, "{address:#x}+{length}");
        }
    }
}
