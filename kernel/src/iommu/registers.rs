//! The VT-d remapping unit's registers: where each one lies in its 4 KiB page,
//! what its bits mean, and readable decoders for the two capability registers.
//!
//! Every offset and bit below is from the Intel VT-d specification, chapter
//! "Register Descriptions" (and matches what QEMU's `intel-iommu` implements).
//! A unit is driven only through these registers and the tables in memory they
//! point to; nothing here touches the machine.

use core::fmt;

/// Version register (32-bit): major version in bits 7:4, minor in bits 3:0.
pub const VERSION: u16 = 0x00;
/// Capability register (64-bit, read-only): see [`Capability`].
pub const CAPABILITY: u16 = 0x08;
/// Extended capability register (64-bit, read-only): see [`ExtendedCapability`].
pub const EXTENDED_CAPABILITY: u16 = 0x10;
/// Global command register (32-bit, write-only): one bit per command.
pub const GLOBAL_COMMAND: u16 = 0x18;
/// Global status register (32-bit, read-only): the state each command left.
pub const GLOBAL_STATUS: u16 = 0x1c;
/// Root table address register (64-bit): the root table's physical address.
pub const ROOT_TABLE_ADDRESS: u16 = 0x20;
/// Context command register (64-bit): context-cache invalidation.
pub const CONTEXT_COMMAND: u16 = 0x28;
/// Fault status register (32-bit).
pub const FAULT_STATUS: u16 = 0x34;
/// Fault event control register (32-bit): the fault interrupt's mask.
pub const FAULT_EVENT_CONTROL: u16 = 0x38;

/// Global command/status bit 31: translation enable (TE) / enabled (TES).
pub const TRANSLATION_ENABLE: u32 = 1 << 31;
/// Global command bit 30: set root table pointer (SRTP); status bit 30 (RTPS)
/// says the unit latched the address in RTADDR.
pub const SET_ROOT_TABLE_POINTER: u32 = 1 << 30;
/// Global command bit 27: write buffer flush (WBF); status bit 27 (WBFS) stays
/// set while the flush runs.
pub const WRITE_BUFFER_FLUSH: u32 = 1 << 27;
/// Global status bit 26: queued invalidation is enabled (QIES).
pub const QUEUED_INVALIDATION_ENABLED: u32 = 1 << 26;
/// The command bits that act once when written as 1 (SRTP 30, SFL 29, WBF 27,
/// SIRTP 24). A write to the global command register must repeat every other
/// bit as the status register shows it, or it turns those features off: the
/// specification's recipe is "status & !one-shot bits | the new command".
pub const ONE_SHOT_COMMANDS: u32 = (1 << 30) | (1 << 29) | (1 << 27) | (1 << 24);

/// Context command bit 63: invalidate context cache (ICC); hardware clears it
/// when the invalidation is done.
pub const INVALIDATE_CONTEXT_CACHE: u64 = 1 << 63;
/// Context command: the requested granularity (CIRG) is in bits 62:61.
pub const CONTEXT_REQUEST_SHIFT: u32 = 61;
/// Context command: the granularity the hardware really used (CAIG), bits 60:59;
/// 0 means the request was refused.
pub const CONTEXT_ACTUAL_SHIFT: u32 = 59;
/// Context command: source id (SID) of a device-selective invalidation, bits 31:16.
pub const CONTEXT_SOURCE_SHIFT: u32 = 16;
/// Context command: function mask (FM), bits 33:32 (0: only the function named).
pub const CONTEXT_FUNCTION_MASK_SHIFT: u32 = 32;

/// IOTLB invalidate register (at the IOTLB offset + 8) bit 63: invalidate
/// (IVT); hardware clears it when the invalidation is done.
pub const INVALIDATE_IOTLB: u64 = 1 << 63;
/// IOTLB invalidate: the requested granularity (IIRG) is in bits 61:60.
pub const IOTLB_REQUEST_SHIFT: u32 = 60;
/// IOTLB invalidate: the granularity the hardware really used (IAIG), bits 58:57;
/// 0 means the request was refused.
pub const IOTLB_ACTUAL_SHIFT: u32 = 57;
/// IOTLB invalidate bit 49: drain reads (DR) before reporting completion.
pub const DRAIN_READS: u64 = 1 << 49;
/// IOTLB invalidate bit 48: drain writes (DW) before reporting completion.
pub const DRAIN_WRITES: u64 = 1 << 48;
/// IOTLB invalidate: domain id (DID) of a domain- or page-selective
/// invalidation, bits 47:32.
pub const IOTLB_DOMAIN_SHIFT: u32 = 32;
/// Invalidate address register (at the IOTLB offset): address mask (AM) in bits
/// 5:0, the page address in bits 63:12 (bit 6, the invalidation hint, stays 0 so
/// cached non-leaf entries go too).
pub const ADDRESS_MASK_BITS: u64 = 0x3f;

/// Fault status bit 0: primary fault overflow (PFO, write 1 to clear): a fault
/// came while every fault record was full, and was lost.
pub const PRIMARY_FAULT_OVERFLOW: u32 = 1 << 0;
/// Fault status bit 1: primary pending fault (PPF, read-only): some fault record
/// has its F bit set.
pub const PRIMARY_PENDING_FAULT: u32 = 1 << 1;
/// Fault event control bit 31: interrupt mask (IM). dmakit keeps it set and
/// polls the fault records instead.
pub const FAULT_INTERRUPT_MASK: u32 = 1 << 31;

/// Bytes per fault recording register.
pub const FAULT_RECORD_SIZE: u16 = 16;

/// The invalidation granularities of the context command and IOTLB registers
/// (the same encoding in CIRG/CAIG and IIRG/IAIG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Everything the unit caches.
    Global = 1,
    /// Context cache: one domain; IOTLB: one domain.
    Domain = 2,
    /// Context cache: one device (source id); IOTLB: pages of one domain.
    Selective = 3,
}

/// The capability register (CAP), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability(pub u64);

impl Capability {
    fn bits(self, low: u32, count: u32) -> u64 {
        (self.0 >> low) & ((1 << count) - 1)
    }

    /// ND, bits 2:0: domain ids have `4 + 2 * ND` bits.
    pub fn domain_id_bits(self) -> u32 {
        4 + 2 * self.bits(0, 3) as u32
    }

    /// RWBF, bit 4: the unit needs a write buffer flush after the tables change.
    pub fn needs_write_buffer_flush(self) -> bool {
        self.bits(4, 1) == 1
    }

    /// CM, bit 7: caching mode: the unit may cache not-present entries, so a
    /// new mapping needs an invalidation too (virtual IOMMUs set it).
    pub fn caching_mode(self) -> bool {
        self.bits(7, 1) == 1
    }

    /// SAGAW, bits 12:8: which page-table depths the unit walks. Bit 1 of the
    /// field: 39-bit, 3 levels; bit 2: 48-bit, 4 levels; bit 3: 57-bit, 5 levels.
    pub fn supported_widths(self) -> u8 {
        self.bits(8, 5) as u8
    }

    /// Whether the unit walks second-level tables of `levels` levels (2..=6).
    pub fn supports_levels(self, levels: u8) -> bool {
        (2..=6).contains(&levels) && self.supported_widths() & (1 << (levels - 2)) != 0
    }

    /// MGAW, bits 21:16 (stored minus one): the widest input address it translates.
    pub fn maximum_guest_address_width(self) -> u32 {
        self.bits(16, 6) as u32 + 1
    }

    /// FRO, bits 33:24: where the first fault recording register lies (in 16-byte units).
    pub fn fault_record_offset(self) -> u16 {
        (self.bits(24, 10) * 16) as u16
    }

    /// SLLPS, bits 37:34: second-level large pages (bit 0: 2 MiB, bit 1: 1 GiB).
    pub fn large_pages(self) -> u8 {
        self.bits(34, 4) as u8
    }

    /// PSI, bit 39: page-selective IOTLB invalidation is supported.
    pub fn page_selective_invalidation(self) -> bool {
        self.bits(39, 1) == 1
    }

    /// NFR, bits 47:40 (stored minus one): how many fault recording registers.
    pub fn fault_records(self) -> u16 {
        self.bits(40, 8) as u16 + 1
    }

    /// MAMV, bits 53:48: the largest address mask a page-selective invalidation
    /// takes (it covers `2^MAMV` pages).
    pub fn maximum_address_mask(self) -> u8 {
        self.bits(48, 6) as u8
    }

    /// DWD, bit 54: the unit can drain writes at an IOTLB invalidation.
    pub fn drains_writes(self) -> bool {
        self.bits(54, 1) == 1
    }

    /// DRD, bit 55: the unit can drain reads at an IOTLB invalidation.
    pub fn drains_reads(self) -> bool {
        self.bits(55, 1) == 1
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP {:#018x}: tables", self.0)?;
        let mut any = false;
        for (levels, bits) in [(2, 30), (3, 39), (4, 48), (5, 57)] {
            if self.supports_levels(levels) {
                write!(f, "{} {bits}-bit/{levels}-level", if any { "," } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str(" none")?;
        }
        write!(
            f,
            "; addresses up to {} bits; {} fault record(s) at {:#x}; {}-bit domain ids; ",
            self.maximum_guest_address_width(),
            self.fault_records(),
            self.fault_record_offset(),
            self.domain_id_bits()
        )?;
        if self.page_selective_invalidation() {
            write!(f, "page-selective invalidation (up to 2^{} pages)", self.maximum_address_mask())?;
        } else {
            f.write_str("no page-selective invalidation")?;
        }
        let large = self.large_pages();
        match (large & 1 != 0, large & 2 != 0) {
            (true, true) => f.write_str("; large pages 2M and 1G")?,
            (true, false) => f.write_str("; large pages 2M")?,
            (false, true) => f.write_str("; large pages 1G")?,
            (false, false) => f.write_str("; no large pages")?,
        }
        if self.caching_mode() {
            f.write_str("; caching mode (new mappings are invalidated too)")?;
        }
        if self.needs_write_buffer_flush() {
            f.write_str("; needs write buffer flushes")?;
        }
        Ok(())
    }
}

/// The extended capability register (ECAP), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability(pub u64);

impl ExtendedCapability {
    fn bit(self, index: u32) -> bool {
        (self.0 >> index) & 1 == 1
    }

    /// C, bit 0: the unit's table walks snoop the CPU caches (coherent). When
    /// clear, every table write must be flushed from the cache before the unit
    /// may read it.
    pub fn coherent(self) -> bool {
        self.bit(0)
    }

    /// QI, bit 1: queued invalidation is supported (dmakit does not use it).
    pub fn queued_invalidation(self) -> bool {
        self.bit(1)
    }

    /// DT, bit 2: device-TLBs (ATS) are supported.
    pub fn device_tlb(self) -> bool {
        self.bit(2)
    }

    /// IR, bit 3: interrupt remapping is supported.
    pub fn interrupt_remapping(self) -> bool {
        self.bit(3)
    }

    /// PT, bit 6: context entries may pass DMA through untranslated.
    pub fn pass_through(self) -> bool {
        self.bit(6)
    }

    /// SC, bit 7: snoop control.
    pub fn snoop_control(self) -> bool {
        self.bit(7)
    }

    /// MTS, bit 25: the unit has memory-type range registers, whose variable
    /// ranges reach up to offset 0x21f of its register page.
    pub fn memory_type_support(self) -> bool {
        self.bit(25)
    }

    /// IRO, bits 17:8: where the IOTLB registers lie (in 16-byte units): the
    /// invalidate address register there, the IOTLB invalidate register 8 bytes on.
    pub fn iotlb_offset(self) -> u16 {
        (((self.0 >> 8) & 0x3ff) * 16) as u16
    }
}

impl fmt::Display for ExtendedCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        write!(
            f,
            "ECAP {:#018x}: IOTLB registers at {:#x}; coherent table walks: {}{}; pass-through: {}; \
             queued invalidation: {} (unused); interrupt remapping: {}; device-TLBs: {}; snoop control: {}",
            self.0,
            self.iotlb_offset(),
            yes_no(self.coherent()),
            if self.coherent() { "" } else { " (table writes are flushed with clflush)" },
            yes_no(self.pass_through()),
            yes_no(self.queued_invalidation()),
            yes_no(self.interrupt_remapping()),
            yes_no(self.device_tlb()),
            yes_no(self.snoop_control()),
        )
    }
}

/// One fault recording register (128 bits), as read: the low and high halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Bits 63:0: FI, the faulting page address, in bits 63:12.
    pub low: u64,
    /// Bits 127:64.
    pub high: u64,
}

impl FaultRecord {
    /// F, bit 127: the record holds a fault (write 1 to clear).
    pub fn holds_fault(self) -> bool {
        self.high >> 63 == 1
    }

    /// T, bit 126: the faulting request's type: 1 a read, 0 a write.
    pub fn was_read(self) -> bool {
        (self.high >> 62) & 1 == 1
    }

    /// FR, bits 103:96: the fault reason code.
    pub fn reason(self) -> u8 {
        (self.high >> 32) as u8
    }

    /// SID, bits 79:64: the requester id of the faulting device.
    pub fn source(self) -> u16 {
        self.high as u16
    }

    /// FI, bits 63:12: the page address the device used.
    pub fn address(self) -> u64 {
        self.low & !0xfff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_fields_sit_where_the_specification_says() {
        // Built field by field: ND 2, CM 0, SAGAW 39-bit, MGAW 39, FRO 0x220,
        // SLLPS 2M+1G, PSI, NFR 1, MAMV 18, DWD, DRD.
        let cap = Capability(
            2 | (0b00010 << 8)
                | (38 << 16)
                | (0x22 << 24)
                | (0b11 << 34)
                | (1 << 39)
                | (18 << 48)
                | (1 << 54)
                | (1 << 55),
        );
        assert_eq!(cap.domain_id_bits(), 8);
        assert!(cap.supports_levels(3) && !cap.supports_levels(4));
        assert_eq!(cap.maximum_guest_address_width(), 39);
        assert_eq!(cap.fault_record_offset(), 0x220);
        assert_eq!(cap.fault_records(), 1);
        assert!(cap.page_selective_invalidation());
        assert_eq!(cap.maximum_address_mask(), 18);
        assert_eq!(cap.large_pages(), 3);
        assert!(cap.drains_reads() && cap.drains_writes());
        assert!(!cap.caching_mode() && !cap.needs_write_buffer_flush());
        let text = cap.to_string();
        assert!(text.contains("39-bit/3-level") && text.contains("0x220"), "{text}");
    }

    #[test]
    fn extended_capability_fields_sit_where_the_specification_says() {
        // IRO 0xf0 (stored as 0xf in bits 17:8), QI, PT, C clear.
        let ecap = ExtendedCapability((0xf << 8) | (1 << 1) | (1 << 6));
        assert_eq!(ecap.iotlb_offset(), 0xf0);
        assert!(ecap.queued_invalidation() && ecap.pass_through());
        assert!(!ecap.coherent());
        assert!(ecap.to_string().contains("clflush"));
    }

    #[test]
    fn a_fault_record_decodes_bit_by_bit() {
        let record = FaultRecord { low: 0x1234_5000 | 0xabc, high: (1 << 63) | (1 << 62) | (0x06 << 32) | 0x0020 };
        assert!(record.holds_fault() && record.was_read());
        assert_eq!((record.reason(), record.source(), record.address()), (0x06, 0x0020, 0x1234_5000));
    }
}
