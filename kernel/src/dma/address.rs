//! Device-visible addresses and segments, and how segments are written out in a
//! device's record format.

use core::fmt;

use super::IoReturn;

/// An address as a device on the bus sees it. Without an IOMMU (as here) it equals
/// the physical address, but it is a different type: a `DmaAddr` is only ever
/// handed to a device, never dereferenced by the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct DmaAddr(u64);

impl DmaAddr {
    /// Wraps a bus address.
    pub const fn new(address: u64) -> DmaAddr {
        DmaAddr(address)
    }

    /// The raw value, to write into a device register or descriptor.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl core::ops::Add<u64> for DmaAddr {
    type Output = DmaAddr;
    fn add(self, offset: u64) -> DmaAddr {
        DmaAddr(self.0 + offset)
    }
}

/// One device-visible piece of a transfer (`IODMACommand::Segment64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where the device reads or writes.
    pub address: DmaAddr,
    /// How many bytes.
    pub length: u64,
}

impl Segment {
    /// One past the last byte's address.
    pub const fn end(&self) -> u64 {
        self.address.0 + self.length
    }
}

/// Byte order of a segment record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// The CPU's own order (little-endian on x86_64).
    Host,
    /// Big-endian.
    Big,
    /// Little-endian.
    Little,
}

/// The segment record a device reads: `{address, length}` as two 32-bit or two
/// 64-bit fields in some byte order (IOKit's `OutputHost32`, `OutputBig64`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputFormat {
    /// 32 or 64.
    pub bits: u8,
    /// Byte order of both fields.
    pub endian: Endian,
}

impl OutputFormat {
    /// `OutputHost32`.
    pub const HOST32: OutputFormat = OutputFormat { bits: 32, endian: Endian::Host };
    /// `OutputBig32`.
    pub const BIG32: OutputFormat = OutputFormat { bits: 32, endian: Endian::Big };
    /// `OutputLittle32`.
    pub const LITTLE32: OutputFormat = OutputFormat { bits: 32, endian: Endian::Little };
    /// `OutputHost64`.
    pub const HOST64: OutputFormat = OutputFormat { bits: 64, endian: Endian::Host };
    /// `OutputBig64`.
    pub const BIG64: OutputFormat = OutputFormat { bits: 64, endian: Endian::Big };
    /// `OutputLittle64`.
    pub const LITTLE64: OutputFormat = OutputFormat { bits: 64, endian: Endian::Little };

    /// Bytes per record: 8 for 32-bit formats, 16 for 64-bit ones.
    pub const fn record_size(self) -> usize {
        if self.bits == 32 { 8 } else { 16 }
    }

    /// Writes `segment` as one record at the start of `output`.
    pub fn encode(self, segment: Segment, output: &mut [u8]) -> Result<(), IoReturn> {
        let record = output.get_mut(..self.record_size()).ok_or(IoReturn::NoSpace)?;
        let width = self.record_size() / 2;
        let fits = |value: u64| width == 8 || u32::try_from(value).is_ok();
        if !fits(segment.address.0) || !fits(segment.length) {
            return Err(IoReturn::MessageTooLarge);
        }
        let big = match self.endian {
            Endian::Big => true,
            Endian::Little => false,
            Endian::Host => cfg!(target_endian = "big"),
        };
        for (field, value) in record.chunks_mut(width).zip([segment.address.0, segment.length]) {
            // The low `width` bytes of the value, in the record's byte order.
            if big {
                field.copy_from_slice(&value.to_be_bytes()[8 - width..]);
            } else {
                field.copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_32_bit_records_are_big_endian_in_memory() {
        let segment = Segment { address: DmaAddr::new(0x1234_5678), length: 0x200 };
        let mut record = [0u8; 8];
        OutputFormat::BIG32.encode(segment, &mut record).unwrap();
        assert_eq!(record, [0x12, 0x34, 0x56, 0x78, 0, 0, 0x02, 0x00]);
        OutputFormat::LITTLE32.encode(segment, &mut record).unwrap();
        assert_eq!(record, [0x78, 0x56, 0x34, 0x12, 0x00, 0x02, 0, 0]);
        let mut wide = [0u8; 16];
        OutputFormat::BIG64.encode(segment, &mut wide).unwrap();
        assert_eq!(&wide[..8], &0x1234_5678u64.to_be_bytes());
        assert_eq!(&wide[8..], &0x200u64.to_be_bytes());
        assert_eq!(OutputFormat::HOST32.encode(segment, &mut [0; 4]), Err(IoReturn::NoSpace));
        let high = Segment { address: DmaAddr::new(1 << 33), length: 1 };
        assert_eq!(OutputFormat::HOST32.encode(high, &mut record), Err(IoReturn::MessageTooLarge));
    }
}
