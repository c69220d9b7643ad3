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

    /// The address `offset` bytes further on, or `None` if that would wrap past
    /// the top of the address space.
    pub const fn checked_add(self, offset: u64) -> Option<DmaAddr> {
        match self.0.checked_add(offset) {
            Some(address) => Some(DmaAddr(address)),
            None => None,
        }
    }
}

impl fmt::Display for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Panics if the sum wraps, in every build profile: a wrapped address would send
/// the device to the bottom of memory, so it is always a kernel bug. Use
/// [`DmaAddr::checked_add`] where a wrap is possible.
impl core::ops::Add<u64> for DmaAddr {
    type Output = DmaAddr;
    #[track_caller]
    fn add(self, offset: u64) -> DmaAddr {
        self.checked_add(offset).expect("DmaAddr + offset wraps past the top of the address space")
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
    /// One past the last byte's address. Panics, in every build profile, if that
    /// does not fit in 64 bits (a segment running to the very top of the address
    /// space); use [`Segment::checked_end`] where that is possible.
    #[track_caller]
    pub const fn end(&self) -> u64 {
        self.checked_end().expect("Segment::end wraps past the top of the address space")
    }

    /// One past the last byte's address, or `None` if that does not fit in 64 bits.
    pub const fn checked_end(&self) -> Option<u64> {
        self.address.0.checked_add(self.length)
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

    #[test]
    fn checked_arithmetic_reports_a_wrap() {
        let top = DmaAddr::new(u64::MAX - 0xf);
        assert_eq!(top.checked_add(0xf), Some(DmaAddr::new(u64::MAX)));
        assert_eq!(top.checked_add(0x10), None);
        assert_eq!(top + 0xf, DmaAddr::new(u64::MAX));
        let below_top = Segment { address: top, length: 0xf };
        assert_eq!(below_top.checked_end(), Some(u64::MAX));
        assert_eq!(below_top.end(), u64::MAX);
        let to_top = Segment { address: top, length: 0x10 };
        assert_eq!(to_top.checked_end(), None, "the end would be 2^64");
        assert_eq!(Segment { address: DmaAddr::new(u64::MAX), length: u64::MAX }.checked_end(), None);
    }

    #[test]
    #[should_panic(expected = "wraps past the top of the address space")]
    fn adding_past_the_top_panics() {
        let _ = DmaAddr::new(u64::MAX - 0xf) + 0x10;
    }

    #[test]
    #[should_panic(expected = "wraps past the top of the address space")]
    fn the_end_of_a_segment_at_the_top_panics() {
        let _ = Segment { address: DmaAddr::new(u64::MAX - 0xf), length: 0x10 }.end();
    }
}
