//! The two tables between a requester id and its page tables: the root table
//! (one entry per PCI bus) and a context table per bus (one entry per
//! device/function), in VT-d's legacy format (128-bit entries).
//!
//! ```text
//! requester id  = bus << 8 | device << 3 | function
//! RTADDR -> root table[bus]  -> context table[device << 3 | function]
//!                               -> domain id, address width, page table (or pass-through)
//! ```

use x86_64::PhysAddr;

/// Bytes per root or context entry.
pub const ENTRY_SIZE: u64 = 16;

/// Present, bit 0 of both entries.
const PRESENT: u64 = 1 << 0;
/// Bits 63:12 of the low half: a 4 KiB-aligned physical address.
const ADDRESS_MASK: u64 = !0xfff;

/// One root table entry: whether bus `n` has a context table, and where.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RootEntry {
    /// Bit 0 present, bits 63:12 the context-table pointer (CTP).
    pub low: u64,
    /// Reserved (zero) in legacy mode.
    pub high: u64,
}

const _: () = assert!(size_of::<RootEntry>() == ENTRY_SIZE as usize);

impl RootEntry {
    /// A bus without devices to translate: its DMA faults (reason 0x01).
    pub const NOT_PRESENT: RootEntry = RootEntry { low: 0, high: 0 };

    /// A bus whose context table lies at `context_table` (4 KiB-aligned).
    pub fn present(context_table: PhysAddr) -> RootEntry {
        RootEntry { low: (context_table.as_u64() & ADDRESS_MASK) | PRESENT, high: 0 }
    }

    /// The context table, if present.
    pub fn context_table(self) -> Option<PhysAddr> {
        (self.low & PRESENT != 0).then(|| PhysAddr::new(self.low & ADDRESS_MASK))
    }
}

/// How a context entry treats its device's DMA (the TT field, bits 3:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslationType {
    /// 00: untranslated requests go through the second-level page tables.
    Translated = 0b00,
    /// 10: untranslated requests use their address as the physical address
    /// (needs ECAP.PT); the page-table pointer is ignored.
    PassThrough = 0b10,
}

/// The address width (AW, bits 66:64) of a context entry: how deep its page
/// table is and how wide an IOVA may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressWidth {
    /// AW 1: 39-bit IOVAs, 3-level tables (SAGAW bit 1).
    ThreeLevel39 = 1,
    /// AW 2: 48-bit IOVAs, 4-level tables (SAGAW bit 2).
    FourLevel48 = 2,
}

impl AddressWidth {
    /// Page-table levels.
    pub const fn levels(self) -> u8 {
        match self {
            AddressWidth::ThreeLevel39 => 3,
            AddressWidth::FourLevel48 => 4,
        }
    }

    /// IOVA bits: 12 for the page offset plus 9 per level.
    pub const fn bits(self) -> u32 {
        12 + 9 * self.levels() as u32
    }

    /// The width with `levels` levels, if dmakit builds such tables.
    pub const fn with_levels(levels: u8) -> Option<AddressWidth> {
        match levels {
            3 => Some(AddressWidth::ThreeLevel39),
            4 => Some(AddressWidth::FourLevel48),
            _ => None,
        }
    }
}

/// One context entry: which domain a device belongs to and how its DMA is handled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextEntry {
    /// Bit 0 present (P), bit 1 fault processing disable (FPD), bits 3:2
    /// translation type (TT), bits 63:12 the second-level page-table pointer (SLPTPTR).
    pub low: u64,
    /// Bits 2:0 address width (AW), bits 23:8 domain id (DID).
    pub high: u64,
}

const _: () = assert!(size_of::<ContextEntry>() == ENTRY_SIZE as usize);

impl ContextEntry {
    /// A device the unit does not translate for: its DMA faults (reason 0x02).
    pub const NOT_PRESENT: ContextEntry = ContextEntry { low: 0, high: 0 };

    /// A present entry. Fault processing disable (FPD, bit 1) stays 0: the
    /// unit records this device's faults, which is how a learner sees them.
    fn present(translation: TranslationType, page_table: PhysAddr, width: AddressWidth, domain: u16) -> ContextEntry {
        ContextEntry {
            low: (page_table.as_u64() & ADDRESS_MASK) | ((translation as u64) << 2) | PRESENT,
            high: (u64::from(domain) << 8) | width as u64,
        }
    }

    /// A device in domain `domain` whose DMA is translated through the
    /// second-level table at `page_table`, `width` deep.
    pub fn translated(page_table: PhysAddr, width: AddressWidth, domain: u16) -> ContextEntry {
        ContextEntry::present(TranslationType::Translated, page_table, width, domain)
    }

    /// A device in domain `domain` whose DMA passes through untranslated. The
    /// specification asks for the widest AW the unit supports here (`widest`);
    /// the page-table pointer is ignored and left zero.
    pub fn pass_through(widest: AddressWidth, domain: u16) -> ContextEntry {
        ContextEntry::present(TranslationType::PassThrough, PhysAddr::zero(), widest, domain)
    }

    /// Whether the entry is present.
    pub fn is_present(self) -> bool {
        self.low & PRESENT != 0
    }

    /// The translation type, if it is one dmakit writes.
    pub fn translation(self) -> Option<TranslationType> {
        match (self.low >> 2) & 0b11 {
            0b00 => Some(TranslationType::Translated),
            0b10 => Some(TranslationType::PassThrough),
            _ => None,
        }
    }

    /// The second-level page-table pointer.
    pub fn page_table(self) -> PhysAddr {
        PhysAddr::new(self.low & ADDRESS_MASK)
    }

    /// The domain id.
    pub fn domain(self) -> u16 {
        (self.high >> 8) as u16
    }

    /// The address width field (raw).
    pub fn address_width(self) -> u8 {
        (self.high & 0b111) as u8
    }
}

/// The entry for `requester_id` in its bus's context table: its index.
pub fn context_index(requester_id: u16) -> u8 {
    requester_id as u8
}

/// The bus of `requester_id`: its index in the root table.
pub fn bus(requester_id: u16) -> u8 {
    (requester_id >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_entries_hold_a_present_bit_and_a_pointer() {
        let entry = RootEntry::present(PhysAddr::new(0x12_3000));
        assert_eq!((entry.low, entry.high), (0x12_3001, 0));
        assert_eq!(entry.context_table(), Some(PhysAddr::new(0x12_3000)));
        assert_eq!(RootEntry::NOT_PRESENT.context_table(), None);
    }

    #[test]
    fn context_entries_place_every_field() {
        let entry = ContextEntry::translated(PhysAddr::new(0x45_6000), AddressWidth::ThreeLevel39, 7);
        assert_eq!(entry.low, 0x45_6001, "present, FPD 0, TT 00, the table pointer");
        assert_eq!(entry.high, (7 << 8) | 1, "domain 7, AW 1");
        assert!(entry.is_present());
        assert_eq!(entry.translation(), Some(TranslationType::Translated));
        assert_eq!((entry.page_table().as_u64(), entry.domain(), entry.address_width()), (0x45_6000, 7, 1));

        let through = ContextEntry::pass_through(AddressWidth::FourLevel48, 3);
        assert_eq!(through.low, 0b1001, "present, TT 10");
        assert_eq!(through.high, (3 << 8) | 2);
        assert_eq!(through.translation(), Some(TranslationType::PassThrough));
    }

    #[test]
    fn a_requester_id_splits_into_bus_and_device_function() {
        let id = (1 << 8) | (4 << 3) | 2;
        assert_eq!((bus(id), context_index(id)), (1, (4 << 3) | 2));
        assert_eq!(AddressWidth::ThreeLevel39.bits(), 39);
        assert_eq!(AddressWidth::FourLevel48.bits(), 48);
    }
}
