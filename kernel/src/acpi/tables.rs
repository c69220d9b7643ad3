//! Surveying the ACPI tables: the RSDP, the root table (RSDT or XSDT) it points to,
//! and the header of every table the root lists, each checked to lie where memory
//! can be read before anything trusts it.
//!
//! The `acpi` crate also walks these (the kernel asks it for the DMAR), but it
//! neither says where each table lies nor checks that an address is readable before
//! mapping it; this survey does both, reading memory only through the `read`
//! closure its caller passes in: the kernel's reads the physical memory map, the
//! host tests' read byte arrays they lay out.
//!
//! Layouts (ACPI specification, "ACPI Software Programming Model"), little-endian:
//!
//! ```text
//! RSDP  0 "RSD PTR "  8 checksum (bytes 0..20)  9 OEM id  15 revision  16 RSDT address u32
//!       revision >= 2: 20 length u32  24 XSDT address u64  32 extended checksum (all bytes)
//! table 0 signature  4 length u32  8 revision  9 checksum (all bytes)  10 OEM id ... (36 bytes)
//! RSDT  after the header: u32 physical addresses;  XSDT: u64 physical addresses
//! ```

use alloc::vec::Vec;

use super::bytes::{u32_at, u64_at};
use core::fmt;

use super::dmar::DmarError;

/// Every system description table starts with this 36-byte header.
pub const HEADER_LENGTH: usize = 36;
/// The RSDP's size as ACPI 2.0 defines it (ACPI 1.0's is the first 20 bytes).
pub const RSDP_LENGTH: usize = 36;
const RSDP_V1_LENGTH: usize = 20;

/// One table, as the survey found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Its four-letter signature ("FACP", "APIC", "DMAR", ...).
    pub signature: [u8; 4],
    /// Its physical address.
    pub address: u64,
    /// Its length in bytes, header included.
    pub length: u32,
    /// Its revision.
    pub revision: u8,
    /// Who made it.
    pub oem_id: [u8; 6],
    /// Whether its bytes sum to 0 (mod 256), as they must.
    pub checksum_ok: bool,
}

impl fmt::Display for TableInfo {
    /// One line: `DMAR at 0x7ffe2345, 80 bytes, revision 1, OEM "BOCHS ", checksum ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {:#x}, {} bytes, revision {}, OEM \"{}\", checksum {}",
            self.signature.escape_ascii(),
            self.address,
            self.length,
            self.revision,
            self.oem_id.escape_ascii(),
            if self.checksum_ok { "ok" } else { "WRONG" }
        )
    }
}

/// What the survey found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survey {
    /// The RSDP's revision: 0 for ACPI 1.0 (RSDT, 32-bit entries), 2 or more for
    /// ACPI 2.0+ (XSDT, 64-bit entries).
    pub rsdp_revision: u8,
    /// The root table (RSDT or XSDT).
    pub root: TableInfo,
    /// The tables the root lists, in its order.
    pub tables: Vec<TableInfo>,
}

/// Which structure a failure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The RSDP.
    Rsdp,
    /// The root table (RSDT or XSDT).
    Root,
    /// Entry `n` (from 0) of the root table.
    Entry(usize),
    /// The DMAR table.
    Dmar,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Rsdp => f.write_str("the RSDP"),
            Place::Root => f.write_str("the root table"),
            Place::Entry(index) => write!(f, "the table in root entry {index}"),
            Place::Dmar => f.write_str("the DMAR"),
        }
    }
}

/// Why the ACPI tables (or the DMAR among them) could not be read.
#[derive(Debug)]
pub enum AcpiFailure {
    /// The kernel has not been initialised, so there is no boot info yet.
    NotBooted,
    /// The boot info has no RSDP address: the machine reported no ACPI tables.
    NoRsdp,
    /// A structure lies (partly) outside the memory the kernel can read.
    OutsideMap {
        /// Which structure.
        place: Place,
        /// Its physical address.
        address: u64,
        /// How many bytes were to be read.
        length: u64,
    },
    /// The RSDP's signature is not "RSD PTR ".
    RsdpSignature {
        /// Where the boot info said the RSDP was.
        address: u64,
    },
    /// An RSDP checksum is wrong.
    RsdpChecksum {
        /// The RSDP's address.
        address: u64,
        /// Whether it is the ACPI 2.0 extended checksum (over all bytes) or the
        /// first one (over the first 20).
        extended: bool,
        /// What the bytes sum to.
        sum: u8,
    },
    /// The root table's signature is not the one the RSDP's revision calls for.
    RootSignature {
        /// The root table's address.
        address: u64,
        /// "RSDT" or "XSDT".
        expected: [u8; 4],
        /// What is there.
        found: [u8; 4],
    },
    /// The root table's length is not a header plus whole entries.
    RootLength {
        /// The root table's address.
        address: u64,
        /// Its declared length.
        length: u32,
    },
    /// The root table's bytes do not sum to 0.
    RootChecksum {
        /// The root table's address.
        address: u64,
        /// What they sum to.
        sum: u8,
    },
    /// The `acpi` crate refused the tables.
    Crate(::acpi::AcpiError),
    /// The survey lists a table that the `acpi` crate would not accept (for the
    /// DMAR: its checksum is wrong).
    Rejected {
        /// The table.
        table: TableInfo,
    },
    /// The DMAR table is malformed.
    Dmar {
        /// The DMAR's physical address.
        address: u64,
        /// What is wrong and where.
        error: DmarError,
    },
}

impl fmt::Display for AcpiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiFailure::NotBooted => f.write_str("the kernel has no boot info yet (dmakit::init first)"),
            AcpiFailure::NoRsdp => f.write_str("the boot info has no RSDP: the machine reported no ACPI tables"),
            AcpiFailure::OutsideMap { place, address, length } => {
                write!(f, "{place} at {address:#x} ({length} bytes) lies outside the physical memory the kernel maps")
            }
            AcpiFailure::RsdpSignature { address } => write!(f, "no \"RSD PTR \" signature at {address:#x}"),
            AcpiFailure::RsdpChecksum { address, extended, sum } => write!(
                f,
                "the RSDP at {address:#x}: its {} bytes sum to {sum:#04x}, not 0",
                if *extended { "extended (ACPI 2.0)" } else { "first 20" }
            ),
            AcpiFailure::RootSignature { address, expected, found } => write!(
                f,
                "the root table at {address:#x} is \"{}\", not the \"{}\" the RSDP's revision calls for",
                found.escape_ascii(),
                expected.escape_ascii()
            ),
            AcpiFailure::RootLength { address, length } => {
                write!(f, "the root table at {address:#x} is {length} bytes: not a 36-byte header plus whole entries")
            }
            AcpiFailure::RootChecksum { address, sum } => {
                write!(f, "the root table at {address:#x}: its bytes sum to {sum:#04x}, not 0")
            }
            AcpiFailure::Crate(error) => write!(f, "the acpi crate refused the tables: {error:?}"),
            AcpiFailure::Rejected { table } => write!(f, "the acpi crate refused {table}"),
            AcpiFailure::Dmar { address, error } => write!(f, "the DMAR at {address:#x}: {error}"),
        }
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

/// Reads `length` bytes at `address` or says which structure lies outside readable memory.
fn fetch<'a>(
    read: &impl Fn(u64, usize) -> Option<&'a [u8]>,
    place: Place,
    address: u64,
    length: usize,
) -> Result<&'a [u8], AcpiFailure> {
    match read(address, length) {
        Some(bytes) if bytes.len() == length => Ok(bytes),
        _ => Err(AcpiFailure::OutsideMap { place, address, length: length as u64 }),
    }
}

/// A table's header, its whole length read to check the checksum.
fn table_at<'a>(
    read: &impl Fn(u64, usize) -> Option<&'a [u8]>,
    place: Place,
    address: u64,
) -> Result<(TableInfo, &'a [u8]), AcpiFailure> {
    let header = fetch(read, place, address, HEADER_LENGTH)?;
    let length = u32_at(header, 4);
    // A length below the header's own is wrong, but the header is still listed.
    let bytes = fetch(read, place, address, (length as usize).max(HEADER_LENGTH))?;
    let mut oem_id = [0; 6];
    oem_id.copy_from_slice(&header[10..16]);
    let info = TableInfo {
        signature: [header[0], header[1], header[2], header[3]],
        address,
        length,
        revision: header[8],
        oem_id,
        checksum_ok: length as usize >= HEADER_LENGTH && sum(&bytes[..length as usize]) == 0,
    };
    Ok((info, bytes))
}

/// Walks RSDP -> RSDT/XSDT -> every table header. `read(address, length)` gives the
/// bytes at a physical address, or `None` if they cannot be read. Fails on the
/// first structure that is unreadable or malformed enough that the walk cannot go
/// on; a listed table with a wrong checksum is reported in its `TableInfo` instead.
pub fn survey<'a>(rsdp: u64, read: impl Fn(u64, usize) -> Option<&'a [u8]>) -> Result<Survey, AcpiFailure> {
    // The acpi crate reads the ACPI 2.0 size whatever the revision, so this does too.
    let bytes = fetch(&read, Place::Rsdp, rsdp, RSDP_LENGTH)?;
    if &bytes[..8] != b"RSD PTR " {
        return Err(AcpiFailure::RsdpSignature { address: rsdp });
    }
    let first = sum(&bytes[..RSDP_V1_LENGTH]);
    if first != 0 {
        return Err(AcpiFailure::RsdpChecksum { address: rsdp, extended: false, sum: first });
    }
    let rsdp_revision = bytes[15];
    // As in the acpi crate: revision 0 is ACPI 1.0 with an RSDT, anything else has an XSDT.
    let (root_address, entry_size, expected) = if rsdp_revision == 0 {
        (u64::from(u32_at(bytes, 16)), 4, *b"RSDT")
    } else {
        let length = (u32_at(bytes, 20) as usize).max(RSDP_LENGTH);
        let extended = sum(fetch(&read, Place::Rsdp, rsdp, length)?);
        if extended != 0 {
            return Err(AcpiFailure::RsdpChecksum { address: rsdp, extended: true, sum: extended });
        }
        (u64_at(bytes, 24), 8, *b"XSDT")
    };

    let (root, root_bytes) = table_at(&read, Place::Root, root_address)?;
    if root.signature != expected {
        return Err(AcpiFailure::RootSignature { address: root_address, expected, found: root.signature });
    }
    let length = root.length as usize;
    if length < HEADER_LENGTH || !(length - HEADER_LENGTH).is_multiple_of(entry_size) {
        return Err(AcpiFailure::RootLength { address: root_address, length: root.length });
    }
    if !root.checksum_ok {
        return Err(AcpiFailure::RootChecksum { address: root_address, sum: sum(&root_bytes[..length]) });
    }

    let mut tables = Vec::new();
    for (index, entry) in root_bytes[HEADER_LENGTH..length].chunks_exact(entry_size).enumerate() {
        let address = if entry_size == 4 { u64::from(u32_at(entry, 0)) } else { u64_at(entry, 0) };
        tables.push(table_at(&read, Place::Entry(index), address)?.0);
    }
    Ok(Survey { rsdp_revision, root, tables })
}

#[cfg(test)]
mod generated;

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;

    /// Physical memory from 0 to `len`, as the tests lay it out.
    struct Memory(Vec<u8>);

    impl Memory {
        fn new() -> Memory {
            Memory(vec![0; 0x2000])
        }

        fn put(&mut self, address: usize, bytes: &[u8]) {
            self.0[address..address + bytes.len()].copy_from_slice(bytes);
        }

        fn read<'a>(&'a self) -> impl Fn(u64, usize) -> Option<&'a [u8]> + 'a {
            |address, length| self.0.get(address as usize..(address as usize).checked_add(length)?)
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        bytes[at] = 0u8.wrapping_sub(sum(bytes));
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0; HEADER_LENGTH];
        bytes[..4].copy_from_slice(signature);
        bytes[4..8].copy_from_slice(&((HEADER_LENGTH + body.len()) as u32).to_le_bytes());
        bytes[8] = 1;
        bytes[10..16].copy_from_slice(b"BOCHS ");
        bytes.extend_from_slice(body);
        fix_checksum(&mut bytes, 9);
        bytes
    }

    fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut bytes = vec![0; RSDP_LENGTH];
        bytes[..8].copy_from_slice(b"RSD PTR ");
        bytes[9..15].copy_from_slice(b"BOCHS ");
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut bytes[..RSDP_V1_LENGTH], 8);
        bytes
    }

    fn rsdp_v2(xsdt: u64) -> Vec<u8> {
        let mut bytes = rsdp_v1(0);
        bytes[15] = 2;
        bytes[20..24].copy_from_slice(&(RSDP_LENGTH as u32).to_le_bytes());
        bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut bytes[..RSDP_V1_LENGTH], 8);
        fix_checksum(&mut bytes, 32);
        bytes
    }

    /// An ACPI 1.0 machine like QEMU's q35: RSDP at 0x100, RSDT at 0x200, FACP and DMAR.
    fn q35_like() -> Memory {
        let mut memory = Memory::new();
        memory.put(0x100, &rsdp_v1(0x200));
        let mut entries = Vec::new();
        entries.extend_from_slice(&0x400u32.to_le_bytes());
        entries.extend_from_slice(&0x600u32.to_le_bytes());
        memory.put(0x200, &table(b"RSDT", &entries));
        memory.put(0x400, &table(b"FACP", &[0; 80]));
        memory.put(0x600, &table(b"DMAR", &[0; 12]));
        memory
    }

    #[test]
    fn walks_an_rsdt() {
        let memory = q35_like();
        let survey = survey(0x100, memory.read()).unwrap();
        assert_eq!(survey.rsdp_revision, 0);
        assert_eq!(survey.root.signature, *b"RSDT");
        let found: Vec<_> = survey.tables.iter().map(|t| (t.signature, t.address, t.length, t.checksum_ok)).collect();
        assert_eq!(found, [(*b"FACP", 0x400, 116, true), (*b"DMAR", 0x600, 48, true)]);
        assert_eq!(survey.tables[1].to_string(), "DMAR at 0x600, 48 bytes, revision 1, OEM \"BOCHS \", checksum ok");
    }

    #[test]
    fn walks_an_xsdt_with_64_bit_entries() {
        let mut memory = Memory::new();
        memory.put(0x100, &rsdp_v2(0x300));
        memory.put(0x300, &table(b"XSDT", &0x800u64.to_le_bytes()));
        memory.put(0x800, &table(b"APIC", &[1, 2, 3]));
        let survey = survey(0x100, memory.read()).unwrap();
        assert_eq!(survey.rsdp_revision, 2);
        assert_eq!(survey.tables.len(), 1);
        assert_eq!((survey.tables[0].signature, survey.tables[0].address), (*b"APIC", 0x800));
    }

    #[test]
    fn a_listed_table_with_a_wrong_checksum_is_listed_as_such() {
        let mut memory = q35_like();
        memory.0[0x600 + 40] ^= 1;
        let survey = survey(0x100, memory.read()).unwrap();
        assert!(!survey.tables[1].checksum_ok);
        assert!(survey.tables[1].to_string().ends_with("checksum WRONG"));
    }

    #[test]
    fn rejects_bad_rsdps() {
        let memory = q35_like();
        assert!(matches!(survey(0x104, memory.read()), Err(AcpiFailure::RsdpSignature { address: 0x104 })));
        assert!(matches!(
            survey(0x1ff0, memory.read()),
            Err(AcpiFailure::OutsideMap { place: Place::Rsdp, address: 0x1ff0, length: 36 })
        ));
        let mut memory = q35_like();
        memory.0[0x100 + 18] ^= 4; // a zero byte of the RSDT address
        let error = survey(0x100, memory.read()).unwrap_err();
        assert!(matches!(error, AcpiFailure::RsdpChecksum { extended: false, sum: 4, .. }));
        assert_eq!(error.to_string(), "the RSDP at 0x100: its first 20 bytes sum to 0x04, not 0");

        let mut memory = Memory::new();
        let mut rsdp = rsdp_v2(0x300);
        rsdp[33] = 1; // reserved byte: only the extended checksum covers it
        memory.put(0x100, &rsdp);
        assert!(matches!(survey(0x100, memory.read()), Err(AcpiFailure::RsdpChecksum { extended: true, sum: 1, .. })));
    }

    #[test]
    fn rejects_bad_root_tables() {
        let mut memory = q35_like();
        memory.put(0x100, &rsdp_v1(0x400)); // points at the FACP
        let error = survey(0x100, memory.read()).unwrap_err();
        assert!(matches!(error, AcpiFailure::RootSignature { expected: [b'R', b'S', b'D', b'T'], .. }));
        assert_eq!(
            error.to_string(),
            "the root table at 0x400 is \"FACP\", not the \"RSDT\" the RSDP's revision calls for"
        );

        let mut memory = q35_like();
        memory.put(0x200, &table(b"RSDT", &[0, 4, 0, 0, 0, 0]));
        assert!(matches!(survey(0x100, memory.read()), Err(AcpiFailure::RootLength { length: 42, .. })));

        let mut memory = q35_like();
        memory.0[0x200 + 36] ^= 0x20;
        assert!(matches!(survey(0x100, memory.read()), Err(AcpiFailure::RootChecksum { sum: 0x20, .. })));

        let mut memory = q35_like();
        memory.put(0x200, &table(b"RSDT", &0x1ff0u32.to_le_bytes()));
        let error = survey(0x100, memory.read()).unwrap_err();
        assert!(matches!(error, AcpiFailure::OutsideMap { place: Place::Entry(0), address: 0x1ff0, .. }));
        assert_eq!(
            error.to_string(),
            "the table in root entry 0 at 0x1ff0 (36 bytes) lies outside the physical memory the kernel maps"
        );
    }

    #[test]
    fn a_table_whose_length_runs_out_of_memory_is_outside_the_map() {
        let mut memory = q35_like();
        memory.put(0x600 + 4, &0x10_0000u32.to_le_bytes());
        assert!(matches!(
            survey(0x100, memory.read()),
            Err(AcpiFailure::OutsideMap { place: Place::Entry(1), address: 0x600, length: 0x10_0000 })
        ));
    }
}
