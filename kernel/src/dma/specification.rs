//! What a device can reach (`IODMACommand::SegmentOptions` plus FreeBSD busdma's
//! boundary and segment count, and Linux's virtual boundary), checked once when
//! a command is made.

use super::IoReturn;
use super::address::{OutputFormat, Segment};

/// A device's DMA limits, as a driver writes them down. Zero means "no limit" (or
/// the default) wherever the contract says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specification {
    /// How segments are written for the device.
    pub output: OutputFormat,
    /// Highest address bit the device can drive: 0 means 64; else 12..=64.
    pub num_address_bits: u8,
    /// Bytes per segment; 0 = unlimited. Rounded down to a multiple of
    /// `alignment_length` (every segment's length is one); where a run is cut
    /// at this limit, the cut is rounded down further, to a multiple of the
    /// internal alignment and the virtual boundary too, so that the next
    /// segment starts aligned ([`Rules::max_cut`]).
    pub max_segment_size: u64,
    /// Bytes per prepare; 0 = unlimited.
    pub max_transfer_size: u64,
    /// Alignment of the first segment's start (power of two; 0 = 1).
    pub alignment: u64,
    /// Alignment of every segment's length (power of two; 0 = 1).
    pub alignment_length: u64,
    /// Alignment of later segments' starts (power of two; 0 = `alignment`).
    pub alignment_internal_segments: u64,
    /// No segment crosses a multiple of this (power of two, not smaller than
    /// `alignment_length`, the internal alignment or the virtual boundary; 0 = none).
    pub boundary: u64,
    /// Most segments per transfer; 0 = unlimited.
    pub max_segments: usize,
    /// The virtual boundary (power of two; 0 = none): every segment but the
    /// first starts on a multiple of it, every segment but the last ends on one
    /// (NVMe's PRP rule; Linux's `virt_boundary_mask` + 1). Buffers that cannot
    /// be given in place that way are bounced.
    pub virtual_boundary: u64,
}

impl Specification {
    /// A device that reaches all 64 bits of memory with no limits.
    pub const UNLIMITED_64: Specification = Specification {
        output: OutputFormat::HOST64,
        num_address_bits: 64,
        max_segment_size: 0,
        max_transfer_size: 0,
        alignment: 0,
        alignment_length: 0,
        alignment_internal_segments: 0,
        boundary: 0,
        max_segments: 0,
        virtual_boundary: 0,
    };

    /// A 32-bit device with no other limits.
    pub const UNLIMITED_32: Specification =
        Specification { output: OutputFormat::HOST32, num_address_bits: 32, ..Self::UNLIMITED_64 };

    /// This specification tightened by `other`: the smaller reach, sizes and
    /// counts, the larger alignments and virtual boundary, the smaller boundary
    /// (0 means "no limit" on either side). The output format stays this one's:
    /// it is the device's.
    ///
    /// Each limit is compared as resolved, so a default on one side never
    /// loosens an explicit value on the other, and `a.restricted_by(&b)` is as
    /// strict as `b.restricted_by(&a)` (apart from the output format).
    pub fn restricted_by(&self, other: &Specification) -> Specification {
        // 0 means "unlimited" for sizes, counts and the boundary, so it loses to
        // any real limit.
        let smaller = |a: u64, b: u64| match (a, b) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        let bits = |bits: u8| if bits == 0 { 64 } else { bits };
        // An unset internal alignment means "the same as the first segment's":
        // comparing the raw zero would let the other side's smaller value win.
        let internal = |specification: &Specification| match specification.alignment_internal_segments {
            0 => specification.alignment,
            value => value,
        };
        Specification {
            output: self.output,
            num_address_bits: bits(self.num_address_bits).min(bits(other.num_address_bits)),
            max_segment_size: smaller(self.max_segment_size, other.max_segment_size),
            max_transfer_size: smaller(self.max_transfer_size, other.max_transfer_size),
            // 0 means 1 for these two, so the plain maximum is the resolved one.
            alignment: self.alignment.max(other.alignment),
            alignment_length: self.alignment_length.max(other.alignment_length),
            alignment_internal_segments: internal(self).max(internal(other)),
            boundary: smaller(self.boundary, other.boundary),
            max_segments: smaller(self.max_segments as u64, other.max_segments as u64) as usize,
            // Segments that start and end on multiples of the larger also do
            // on the smaller (both powers of two), and 0 ("none") loses.
            virtual_boundary: self.virtual_boundary.max(other.virtual_boundary),
        }
    }

    /// Checks the specification and turns it into [`Rules`] with every default
    /// resolved. Errors are `BadArgument`.
    pub fn rules(&self) -> Result<Rules, IoReturn> {
        let power_or_zero = |value: u64| value == 0 || value.is_power_of_two();
        let valid_bits = self.num_address_bits == 0 || (12..=64).contains(&self.num_address_bits);
        let valid_format = matches!(self.output.bits, 32 | 64);
        if !valid_bits
            || !valid_format
            || !power_or_zero(self.alignment)
            || !power_or_zero(self.alignment_length)
            || !power_or_zero(self.alignment_internal_segments)
            || !power_or_zero(self.boundary)
            || !power_or_zero(self.virtual_boundary)
        {
            return Err(IoReturn::BadArgument);
        }
        let mut bits = if self.num_address_bits == 0 { 64 } else { self.num_address_bits };
        if self.output.bits == 32 {
            bits = bits.min(32);
        }
        let alignment = self.alignment.max(1);
        let alignment_length = self.alignment_length.max(1);
        let alignment_internal = match self.alignment_internal_segments {
            0 => alignment,
            value => value,
        };
        // A 32-bit record cannot hold a longer length.
        let record_limit = if self.output.bits == 32 { u64::from(u32::MAX) } else { u64::MAX };
        let max_segment = match self.max_segment_size {
            0 => record_limit,
            value => value.min(record_limit),
        };
        // Every segment's length is a whole number of length units, so no
        // segment is longer than the limit rounded down to one.
        let max_segment = max_segment / alignment_length * alignment_length;
        // A cut at the segment limit must also put the next segment's start on
        // the internal alignment and the virtual boundary (where the segment
        // before it must end). All are powers of two, so the largest is a
        // multiple of the others. Only a cut needs this: a run that fits in
        // one segment of `max_segment` is not cut, and not shortened.
        let cut_unit = alignment_length.max(alignment_internal).max(self.virtual_boundary);
        let max_cut = max_segment / cut_unit * cut_unit;
        // A cut at a boundary lands on a multiple of it, which must be a whole
        // unit too; a smaller boundary would leave no valid cut at all.
        if max_cut == 0 || (self.boundary != 0 && self.boundary < cut_unit) {
            return Err(IoReturn::BadArgument);
        }
        Ok(Rules {
            highest_address: if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 },
            address_bits: bits,
            max_segment,
            max_cut,
            max_transfer: if self.max_transfer_size == 0 { u64::MAX } else { self.max_transfer_size },
            alignment,
            alignment_length,
            alignment_internal,
            boundary: self.boundary,
            max_segments: if self.max_segments == 0 { usize::MAX } else { self.max_segments },
            virtual_boundary: self.virtual_boundary,
        })
    }
}

/// A checked [`Specification`] with every default resolved.
///
/// Only [`Specification::rules`] makes one, so every `Rules` has passed its
/// checks; the fields are read through the methods of the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The highest address a segment may touch.
    pub(crate) highest_address: u64,
    /// Address bits the device drives (after the output format's limit).
    pub(crate) address_bits: u8,
    /// Bytes per segment (a multiple of `alignment_length`).
    pub(crate) max_segment: u64,
    /// Bytes before a cut at the segment limit (`max_segment` rounded down to
    /// a multiple of `alignment_internal` and the virtual boundary too).
    pub(crate) max_cut: u64,
    /// Bytes per prepare.
    pub(crate) max_transfer: u64,
    /// Alignment of the first segment's start.
    pub(crate) alignment: u64,
    /// Alignment of every segment's length.
    pub(crate) alignment_length: u64,
    /// Alignment of later segments' starts.
    pub(crate) alignment_internal: u64,
    /// Boundary no segment crosses, or 0.
    pub(crate) boundary: u64,
    /// Most segments per transfer.
    pub(crate) max_segments: usize,
    /// The virtual boundary, or 0: a multiple of it is the only place a segment
    /// may end (but the last) or start (but the first).
    pub(crate) virtual_boundary: u64,
}

impl Rules {
    /// The highest address a segment may touch.
    pub fn highest_address(&self) -> u64 {
        self.highest_address
    }

    /// Address bits the device drives (after the output format's limit).
    pub fn address_bits(&self) -> u8 {
        self.address_bits
    }

    /// Bytes per segment: a multiple of the length alignment.
    pub fn max_segment(&self) -> u64 {
        self.max_segment
    }

    /// Bytes before a cut, where a run longer than [`Rules::max_segment`] is
    /// cut: the segment limit rounded down to a multiple of the length and
    /// internal alignments and of the virtual boundary, so that the segment
    /// after the cut starts aligned. Never 0.
    pub fn max_cut(&self) -> u64 {
        self.max_cut
    }

    /// Bytes per prepare.
    pub fn max_transfer(&self) -> u64 {
        self.max_transfer
    }

    /// Alignment of the first segment's start.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Alignment of every segment's length.
    pub fn alignment_length(&self) -> u64 {
        self.alignment_length
    }

    /// Alignment of later segments' starts.
    pub fn alignment_internal(&self) -> u64 {
        self.alignment_internal
    }

    /// Boundary no segment crosses, or 0 for none.
    pub fn boundary(&self) -> u64 {
        self.boundary
    }

    /// Most segments per transfer.
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// The virtual boundary, or 0 for none.
    pub fn virtual_boundary(&self) -> u64 {
        self.virtual_boundary
    }

    /// The fewest segments `length` bytes take under these rules wherever they
    /// lie: a segment holds at most `max_segment` bytes, and at most a
    /// `boundary`'s worth. More than `max_segments` by this count, and no plan,
    /// bounce buffer or IOMMU mapping can ever fit the transfer.
    pub(crate) fn fewest_segments(&self, length: u64) -> u64 {
        let widest = match self.boundary {
            0 => self.max_segment,
            boundary => self.max_segment.min(boundary),
        };
        length.div_ceil(widest)
    }

    /// Whether `[address, address + length)` is reachable by the device.
    pub fn reachable(&self, address: u64, length: u64) -> bool {
        length == 0 || address.checked_add(length - 1).is_some_and(|last| last <= self.highest_address)
    }

    /// Whether a segment at `address` of `length`, the `index`-th of its transfer,
    /// obeys every rule (reach, start and length alignment, size, boundary). An
    /// empty segment, or one whose end does not fit in 64 bits, never does.
    pub fn segment_ok(&self, index: usize, address: u64, length: u64) -> bool {
        // The end must be representable: `Segment::end` of a segment that runs to
        // the top of the address space would wrap.
        if length == 0 || address.checked_add(length).is_none() {
            return false;
        }
        let last = address + (length - 1);
        let alignment = if index == 0 { self.alignment } else { self.alignment_internal };
        let within_boundary = self.boundary == 0 || address / self.boundary == last / self.boundary;
        self.reachable(address, length)
            && address.is_multiple_of(alignment)
            && length.is_multiple_of(self.alignment_length)
            && length <= self.max_segment
            && within_boundary
    }

    /// Whether `segments`, a whole transfer in order, obey every rule: each
    /// segment's ([`Rules::segment_ok`]), the segment count, and the virtual
    /// boundary, which is about neighbours: where one segment ends and the next
    /// starts, both must be on it. That holds even where the two touch: a device
    /// that reads a list of pages cannot tell touching segments from a gap.
    pub fn segments_ok(&self, segments: &[Segment]) -> bool {
        let on_boundary = |address: u64| self.virtual_boundary == 0 || address.is_multiple_of(self.virtual_boundary);
        segments.len() <= self.max_segments
            && segments
                .iter()
                .enumerate()
                .all(|(index, segment)| self.segment_ok(index, segment.address.as_u64(), segment.length))
            && segments.windows(2).all(|pair| on_boundary(pair[0].end()) && on_boundary(pair[1].address.as_u64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaAddr;

    #[test]
    fn the_fewest_segments_count_the_narrower_of_size_and_boundary() {
        let lined = Specification { boundary: 4096, max_segment_size: 0x10000, ..Specification::UNLIMITED_64 };
        assert_eq!(lined.rules().unwrap().fewest_segments(64 * 1024), 16);
        let short = Specification { boundary: 0x10000, max_segment_size: 1024, ..Specification::UNLIMITED_64 };
        assert_eq!(short.rules().unwrap().fewest_segments(4097), 5);
        assert_eq!(Specification::UNLIMITED_64.rules().unwrap().fewest_segments(u64::MAX), 1);
    }

    #[test]
    fn defaults_resolve_and_bad_values_are_refused() {
        let rules = Specification::UNLIMITED_64.rules().unwrap();
        assert_eq!(rules.highest_address, u64::MAX);
        assert_eq!((rules.alignment, rules.alignment_length, rules.alignment_internal), (1, 1, 1));
        let zero_bits = Specification { num_address_bits: 0, ..Specification::UNLIMITED_64 };
        assert_eq!(zero_bits.rules().unwrap().address_bits, 64);
        let forced = Specification { num_address_bits: 40, ..Specification::UNLIMITED_32 };
        assert_eq!(forced.rules().unwrap().highest_address, u64::from(u32::MAX), "32-bit formats force 32 bits");
        for bits in [1, 11, 65] {
            let spec = Specification { num_address_bits: bits, ..Specification::UNLIMITED_64 };
            assert_eq!(spec.rules(), Err(IoReturn::BadArgument), "{bits} bits");
        }
        let internal = Specification { alignment: 512, ..Specification::UNLIMITED_64 };
        assert_eq!(internal.rules().unwrap().alignment_internal, 512, "0 -> alignment");
        for spec in [
            Specification { alignment: 3, ..Specification::UNLIMITED_64 },
            Specification { alignment_length: 6, ..Specification::UNLIMITED_64 },
            Specification { alignment_internal_segments: 12, ..Specification::UNLIMITED_64 },
            Specification { boundary: 65535, ..Specification::UNLIMITED_64 },
            Specification { alignment_length: 512, max_segment_size: 100, ..Specification::UNLIMITED_64 },
            Specification { alignment_length: 512, boundary: 256, ..Specification::UNLIMITED_64 },
        ] {
            assert_eq!(spec.rules(), Err(IoReturn::BadArgument), "{spec:?}");
        }
    }

    #[test]
    fn restricting_takes_the_stricter_of_each_limit() {
        let device = Specification { boundary: 0x10000, max_segments: 512, ..Specification::UNLIMITED_32 };
        let learner = Specification {
            num_address_bits: 24,
            boundary: 0x1000,
            max_segment_size: 512,
            alignment: 8,
            ..Specification::UNLIMITED_64
        };
        let both = device.restricted_by(&learner);
        assert_eq!(both.num_address_bits, 24);
        assert_eq!((both.boundary, both.max_segment_size, both.max_segments, both.alignment), (0x1000, 512, 512, 8));
        assert_eq!(both.output, device.output);
        let wider = Specification::UNLIMITED_64.restricted_by(&Specification::UNLIMITED_64);
        assert_eq!(wider.num_address_bits, 64);
    }

    #[test]
    fn a_virtual_boundary_is_checked_resolved_and_tightened() {
        let prp = Specification { virtual_boundary: 4096, ..Specification::UNLIMITED_64 };
        assert_eq!(prp.rules().unwrap().virtual_boundary(), 4096);
        let limited = Specification { max_segment_size: 0x3800, ..prp };
        assert_eq!(limited.rules().unwrap().max_segment(), 0x3800, "a segment that is not cut may be that long");
        assert_eq!(limited.rules().unwrap().max_cut(), 0x3000, "cuts fall on the virtual boundary");
        for spec in [
            Specification { virtual_boundary: 0x1800, ..prp },
            Specification { max_segment_size: 0x800, ..prp },
            Specification { boundary: 0x800, ..prp },
        ] {
            assert_eq!(spec.rules(), Err(IoReturn::BadArgument), "{spec:?}");
        }
        let none = Specification::UNLIMITED_32;
        assert_eq!(none.restricted_by(&prp).virtual_boundary, 4096, "a rule beats none");
        assert_eq!(prp.restricted_by(&none).virtual_boundary, 4096);
        let wider = Specification { virtual_boundary: 0x10000, ..prp };
        assert_eq!(prp.restricted_by(&wider).virtual_boundary, 0x10000, "a larger boundary is the stricter");
    }

    #[test]
    fn a_transfer_meets_the_virtual_boundary_only_with_page_edged_gaps() {
        let rules = Specification { virtual_boundary: 0x1000, ..Specification::UNLIMITED_64 }.rules().unwrap();
        let segment = |address: u64, length: u64| Segment { address: DmaAddr::new(address), length };
        assert!(rules.segments_ok(&[segment(0x1234, 0xdcc), segment(0x8000, 0x2000), segment(0x3000, 0x10)]));
        assert!(rules.segments_ok(&[segment(0x1234, 0x10)]), "one segment may start and end anywhere");
        assert!(!rules.segments_ok(&[segment(0x1000, 0x800), segment(0x8000, 0x1000)]), "ends inside a page");
        assert!(!rules.segments_ok(&[segment(0x1000, 0x1000), segment(0x8200, 0xe00)]), "starts inside a page");
        assert!(
            !rules.segments_ok(&[segment(0x1000, 0x800), segment(0x1800, 0x800)]),
            "a cut inside a page is a gap to the device even where the two touch"
        );
    }

    #[test]
    fn segment_rules_check_each_limit() {
        let spec = Specification {
            alignment: 4,
            alignment_length: 2,
            alignment_internal_segments: 8,
            boundary: 0x10000,
            max_segment_size: 0x10000,
            ..Specification::UNLIMITED_32
        };
        let rules = spec.rules().unwrap();
        assert!(rules.segment_ok(0, 0x1004, 0x200));
        assert!(!rules.segment_ok(1, 0x1004, 0x200), "later segments need 8-byte alignment");
        assert!(!rules.segment_ok(0, 0x1004, 0x201), "odd length");
        assert!(!rules.segment_ok(0, 0xfff0, 0x20), "crosses 64 KiB");
        assert!(!rules.segment_ok(0, 0xffff_fff0, 0x20), "beyond 4 GiB");
        assert!(rules.segment_ok(0, 0xffff_ffe0, 0x20), "ends exactly at 4 GiB");
    }
}
