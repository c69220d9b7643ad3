//! What the controller reads from and writes to memory (NVMe base specification
//! 2.0, 4.2 to 4.3): the 64-byte submission queue entry, the 16-byte completion
//! queue entry, and the 16-byte SGL descriptor. Each is a typed `#[repr(C)]`
//! structure, serialized explicitly, little endian, into the shared memory.
//!
//! The data pointer is built from the transfer's typed segment entries: a
//! [`PrpEntry`] or an [`SglDescriptor`] per segment ([`FromSegment`]), each
//! checking its format's rules where the segment sits in the list.

use dmakit::dma::{
    Cause, FromSegment, IoDirection, IoFailure, IoReturn, NvmeCause, OutputFormat, PrpRule, Segment, SegmentPosition,
};

use super::registers::PAGE_SIZE;

/// Admin opcode: Delete I/O Submission Queue.
pub const ADMIN_DELETE_SQ: u8 = 0x00;
/// Admin opcode: Create I/O Submission Queue.
pub const ADMIN_CREATE_SQ: u8 = 0x01;
/// Admin opcode: Delete I/O Completion Queue.
pub const ADMIN_DELETE_CQ: u8 = 0x04;
/// Admin opcode: Create I/O Completion Queue.
pub const ADMIN_CREATE_CQ: u8 = 0x05;
/// Admin opcode: Identify.
pub const ADMIN_IDENTIFY: u8 = 0x06;
/// NVM opcode: Flush.
pub const IO_FLUSH: u8 = 0x00;
/// NVM opcode: Write.
pub const IO_WRITE: u8 = 0x01;
/// NVM opcode: Read.
pub const IO_READ: u8 = 0x02;

/// Identify CNS: the namespace data structure.
pub const IDENTIFY_NAMESPACE: u32 = 0x00;
/// Identify CNS: the controller data structure.
pub const IDENTIFY_CONTROLLER: u32 = 0x01;

/// PSDT (flags bits 7:6) = 00b: the data pointer holds PRP1 and PRP2.
pub const PSDT_PRP: u8 = 0 << 6;
/// PSDT = 01b: the data pointer holds the first SGL descriptor.
pub const PSDT_SGL: u8 = 1 << 6;
/// Where PSDT sits in the flags byte.
pub const PSDT_MASK: u8 = 3 << 6;

/// SGL descriptor type (byte 15, bits 7:4): Data Block.
pub const SGL_DATA_BLOCK: u8 = 0x0 << 4;
/// SGL descriptor type: Segment (points at more descriptors, more may follow).
pub const SGL_SEGMENT: u8 = 0x2 << 4;
/// SGL descriptor type: Last Segment (the descriptors it points at end the list).
pub const SGL_LAST_SEGMENT: u8 = 0x3 << 4;

/// How the DMA layer writes segments for this driver (`write_segments`).
pub const RECORD_FORMAT: OutputFormat = OutputFormat::LITTLE64;

/// A submission queue entry (4.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmissionEntry {
    /// CDW0 bits 7:0.
    pub opcode: u8,
    /// CDW0 bits 15:8: FUSE (1:0), PSDT (7:6).
    pub flags: u8,
    /// CDW0 bits 31:16: the command id, echoed in the completion.
    pub command_id: u16,
    /// The namespace.
    pub namespace: u32,
    /// CDW2, CDW3.
    pub reserved: [u32; 2],
    /// The metadata pointer.
    pub metadata: u64,
    /// The data pointer: PRP1 and PRP2, or one SGL descriptor.
    pub data: [u64; 2],
    /// CDW10 to CDW15, the command's own dwords.
    pub command: [u32; 6],
}
const _: () = assert!(size_of::<SubmissionEntry>() == 64);

/// A completion queue entry (4.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompletionEntry {
    /// DW0: command specific.
    pub result: u32,
    /// DW1.
    pub reserved: u32,
    /// The submission queue's head as the controller saw it.
    pub submission_head: u16,
    /// The submission queue the command came from.
    pub submission_queue: u16,
    /// The command id.
    pub command_id: u16,
    /// Phase tag (bit 0) and status (bits 15:1).
    pub status: u16,
}
const _: () = assert!(size_of::<CompletionEntry>() == 16);

/// An SGL descriptor (4.1.2): an address, a length, and its type.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SglDescriptor {
    /// Where the data (or the next segment) is.
    pub address: u64,
    /// Bytes.
    pub length: u32,
    /// Reserved.
    pub reserved: [u8; 3],
    /// Type (7:4) and subtype (3:0).
    pub kind: u8,
}
const _: () = assert!(size_of::<SglDescriptor>() == 16);

/// One PRP entry's worth of a segment: the segment itself, checked against
/// where it sits (the driver splits it into pages when it builds the list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrpEntry {
    /// The segment.
    pub segment: Segment,
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}
fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}
fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

impl SubmissionEntry {
    /// Little-endian bytes, as the controller reads them.
    pub fn to_bytes(self) -> [u8; 64] {
        let mut bytes = [0; 64];
        bytes[0] = self.opcode;
        bytes[1] = self.flags;
        bytes[2..4].copy_from_slice(&self.command_id.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.namespace.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.reserved[0].to_le_bytes());
        bytes[12..16].copy_from_slice(&self.reserved[1].to_le_bytes());
        bytes[16..24].copy_from_slice(&self.metadata.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.data[0].to_le_bytes());
        bytes[32..40].copy_from_slice(&self.data[1].to_le_bytes());
        for (index, dword) in self.command.iter().enumerate() {
            bytes[40 + 4 * index..44 + 4 * index].copy_from_slice(&dword.to_le_bytes());
        }
        bytes
    }

    /// The entry in `bytes` (for the fake controller).
    pub fn from_bytes(bytes: &[u8; 64]) -> SubmissionEntry {
        SubmissionEntry {
            opcode: bytes[0],
            flags: bytes[1],
            command_id: le16(bytes, 2),
            namespace: le32(bytes, 4),
            reserved: [le32(bytes, 8), le32(bytes, 12)],
            metadata: le64(bytes, 16),
            data: [le64(bytes, 24), le64(bytes, 32)],
            command: core::array::from_fn(|index| le32(bytes, 40 + 4 * index)),
        }
    }

    /// The data pointer's 16 bytes as an SGL descriptor.
    pub fn sgl(&self) -> SglDescriptor {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.data[0].to_le_bytes());
        bytes[8..].copy_from_slice(&self.data[1].to_le_bytes());
        SglDescriptor::from_bytes(&bytes)
    }

    /// Puts `descriptor` in the data pointer.
    pub fn set_sgl(&mut self, descriptor: SglDescriptor) {
        let bytes = descriptor.to_bytes();
        self.data = [le64(&bytes, 0), le64(&bytes, 8)];
    }
}

impl CompletionEntry {
    /// The phase tag.
    pub fn phase(&self) -> bool {
        self.status & 1 == 1
    }

    /// Little-endian bytes, as the controller writes them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[0..4].copy_from_slice(&self.result.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.reserved.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.submission_head.to_le_bytes());
        bytes[10..12].copy_from_slice(&self.submission_queue.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.command_id.to_le_bytes());
        bytes[14..16].copy_from_slice(&self.status.to_le_bytes());
        bytes
    }

    /// The entry in `bytes`, as the driver reads it.
    pub fn from_bytes(bytes: &[u8; 16]) -> CompletionEntry {
        CompletionEntry {
            result: le32(bytes, 0),
            reserved: le32(bytes, 4),
            submission_head: le16(bytes, 8),
            submission_queue: le16(bytes, 10),
            command_id: le16(bytes, 12),
            status: le16(bytes, 14),
        }
    }
}

impl SglDescriptor {
    /// A descriptor of type `kind` for `length` bytes at `address`.
    pub const fn new(address: u64, length: u32, kind: u8) -> SglDescriptor {
        SglDescriptor { address, length, reserved: [0; 3], kind }
    }

    /// Little-endian bytes, as the controller reads them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[0..8].copy_from_slice(&self.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.length.to_le_bytes());
        bytes[12..15].copy_from_slice(&self.reserved);
        bytes[15] = self.kind;
        bytes
    }

    /// The descriptor in `bytes`.
    pub fn from_bytes(bytes: &[u8; 16]) -> SglDescriptor {
        SglDescriptor {
            address: le64(bytes, 0),
            length: le32(bytes, 8),
            reserved: [bytes[12], bytes[13], bytes[14]],
            kind: bytes[15],
        }
    }

    /// The type (bits 7:4 of the last byte, kept in place).
    pub fn descriptor_type(&self) -> u8 {
        self.kind & 0xf0
    }
}

fn prp_refused(rule: PrpRule) -> IoFailure {
    // The index is filled in by the caller, which knows it.
    IoFailure::new(IoReturn::NotAligned, Cause::Nvme(NvmeCause::PrpRuleBroken { index: 0, rule }))
}

impl FromSegment for PrpEntry {
    /// `NotAligned` for a segment that breaks a PRP rule where it sits: only
    /// the first may start inside a page, all start on a dword, all but the
    /// last end on a page. A driver that built PRPs from it anyway would give
    /// the controller a list it reads differently (QEMU answers PRP Offset
    /// Invalid), so it is refused; the DMA layer bounces such buffers.
    fn from_segment(segment: Segment, position: SegmentPosition, _: IoDirection) -> Result<PrpEntry, IoFailure> {
        let address = segment.address.as_u64();
        if segment.length == 0 || !address.is_multiple_of(4) {
            return Err(prp_refused(PrpRule::DwordAligned));
        }
        if !position.is_first() && !address.is_multiple_of(PAGE_SIZE) {
            return Err(prp_refused(PrpRule::InnerStartsOnPage));
        }
        let ends_on_page = segment.checked_end().is_some_and(|end| end.is_multiple_of(PAGE_SIZE));
        if !position.is_last() && !ends_on_page {
            return Err(prp_refused(PrpRule::EndsOnPage));
        }
        Ok(PrpEntry { segment })
    }
}

impl FromSegment for SglDescriptor {
    /// A Data Block descriptor; `MessageTooLarge` for an empty segment or one
    /// longer than the 32-bit length holds.
    fn from_segment(segment: Segment, _: SegmentPosition, _: IoDirection) -> Result<SglDescriptor, IoFailure> {
        let length = u32::try_from(segment.length).ok().filter(|&length| length != 0).ok_or_else(|| {
            let rule = "a Data Block descriptor holds 1 byte to 4 GiB - 1";
            IoFailure::new(IoReturn::MessageTooLarge, Cause::EntryFormat { format: "SGL", rule })
        })?;
        Ok(SglDescriptor::new(segment.address.as_u64(), length, SGL_DATA_BLOCK))
    }
}

impl PrpEntry {
    /// The page-sized pieces of the segment, as PRP entries: its start, then
    /// each page boundary inside it.
    pub fn pages(&self) -> impl Iterator<Item = u64> {
        let start = self.segment.address.as_u64();
        let end = self.segment.end();
        let first_boundary = (start / PAGE_SIZE + 1) * PAGE_SIZE;
        core::iter::once(start).chain((first_boundary..end).step_by(PAGE_SIZE as usize))
    }
}

#[cfg(test)]
/// A segment at `address` of `length` bytes (tests).
pub(crate) fn segment(address: u64, length: u64) -> Segment {
    Segment { address: dmakit::dma::DmaAddr::new(address), length }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_bytes() {
        let entry = SubmissionEntry {
            opcode: IO_READ,
            flags: PSDT_SGL,
            command_id: 0x1234,
            namespace: 1,
            reserved: [0, 0],
            metadata: 0,
            data: [0x1_0000_2000, 0x3000],
            command: [1, 2, 3, 4, 5, 6],
        };
        let bytes = entry.to_bytes();
        assert_eq!(bytes[..4], [0x02, 0x40, 0x34, 0x12]);
        assert_eq!(SubmissionEntry::from_bytes(&bytes), entry);
        let completion = CompletionEntry {
            result: 7,
            reserved: 0,
            submission_head: 3,
            submission_queue: 1,
            command_id: 9,
            status: 1,
        };
        assert_eq!(CompletionEntry::from_bytes(&completion.to_bytes()), completion);
        assert!(completion.phase());
        let descriptor = SglDescriptor::new(0x5000, 512, SGL_LAST_SEGMENT);
        assert_eq!(SglDescriptor::from_bytes(&descriptor.to_bytes()), descriptor);
        let mut with_sgl = entry;
        with_sgl.set_sgl(descriptor);
        assert_eq!(with_sgl.sgl(), descriptor);
    }

    #[test]
    fn prp_entries_keep_the_rules_where_the_segment_sits() {
        let entry = |address, length, position| {
            PrpEntry::from_segment(segment(address, length), position, IoDirection::In)
                .map_err(|failure| failure.cause())
        };
        let broken = |rule| Err(Cause::Nvme(NvmeCause::PrpRuleBroken { index: 0, rule }));
        assert!(entry(0x1204, 0x100, SegmentPosition::Only).is_ok(), "one segment may start and end anywhere");
        assert!(entry(0x1200, 0xe00, SegmentPosition::First).is_ok());
        assert_eq!(entry(0x1200, 0x100, SegmentPosition::First), broken(PrpRule::EndsOnPage));
        assert_eq!(entry(0x1202, 0x100, SegmentPosition::Only), broken(PrpRule::DwordAligned));
        assert_eq!(entry(0x2200, 0x100, SegmentPosition::Last), broken(PrpRule::InnerStartsOnPage));
        assert!(entry(0x2000, 0x100, SegmentPosition::Last).is_ok());
        assert_eq!(entry(0x2000, 0x100, SegmentPosition::Middle), broken(PrpRule::EndsOnPage));
        let pages: alloc::vec::Vec<u64> = PrpEntry { segment: segment(0x1200, 0x2e00) }.pages().collect();
        assert_eq!(pages, [0x1200, 0x2000, 0x3000]);
    }
}
