//! The DMAR table ("DMA Remapping Reporting", Intel VT-d): which IOMMUs (remapping
//! units) the platform has, which PCI devices each one translates for, and which
//! memory the firmware needs devices to keep reaching (reserved regions).
//!
//! This parser is pure: it reads a byte slice (the whole table, header included) and
//! never touches the machine, so the host tests feed it tables they build byte by
//! byte. Reading PCI configuration space, which turning a multi-hop device scope into
//! a requester id needs, is left to a closure the caller passes in.
//!
//! Layout, from the VT-d specification's chapter "DMA Remapping Reporting Structure"
//! (all fields little-endian):
//!
//! ```text
//! DMAR   0  standard 36-byte ACPI header ("DMAR", length, revision, checksum, ...)
//!       36  host address width - 1      37  flags      38..48  reserved
//!       48  remapping structures, each: type u16, length u16, body
//! DRHD   type 0: flags u8 (bit 0 INCLUDE_PCI_ALL), size u8, segment u16,
//!                register base u64, then device scopes from byte 16
//! RMRR   type 1: reserved u16, segment u16, base u64, limit u64 (inclusive),
//!                then device scopes from byte 24
//! scope  type u8, length u8, flags u8, reserved u8, enumeration id u8, start bus u8,
//!        then (device u8, function u8) path entries from byte 6
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::bytes::{u16_at, u32_at, u64_at};

/// The table's signature.
pub const SIGNATURE: [u8; 4] = *b"DMAR";

/// The ACPI header (36 bytes) plus width, flags and 10 reserved bytes.
const HEADER_LENGTH: usize = 48;
/// A remapping structure's own header: type and length.
const STRUCTURE_HEADER_LENGTH: usize = 4;
/// A DRHD's fixed part, before its device scopes.
const DRHD_LENGTH: usize = 16;
/// An RMRR's fixed part, before its device scopes.
const RMRR_LENGTH: usize = 24;
/// A device scope's fixed part, before its path.
const SCOPE_HEADER_LENGTH: usize = 6;
/// A device scope needs at least one path entry to name anything.
const SCOPE_MIN_LENGTH: usize = SCOPE_HEADER_LENGTH + 2;
/// DRHD flag: this unit translates for every device of its segment that no other
/// unit lists explicitly.
const INCLUDE_PCI_ALL: u8 = 1 << 0;

/// A parsed DMAR table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmar {
    /// How many address bits the remapping hardware can translate (the table stores
    /// this minus one; this is the real width, e.g. 39 or 48).
    pub host_address_width: u8,
    /// The table's flags: [`Dmar::INTR_REMAP`], [`Dmar::X2APIC_OPT_OUT`],
    /// [`Dmar::DMA_CTRL_PLATFORM_OPT_IN`].
    pub flags: u8,
    /// The remapping units (DRHD structures), in table order.
    pub units: Vec<RemappingUnit>,
    /// The reserved memory regions (RMRR structures), in table order.
    pub reserved: Vec<ReservedRegion>,
    /// Structures recognised but not used by dmakit (ATSR, RHSA, ANDD, ...).
    pub skipped: Vec<SkippedStructure>,
}

/// One IOMMU: a DMA Remapping Hardware unit Definition (DRHD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemappingUnit {
    /// The PCI segment (domain) whose devices it serves.
    pub segment: u16,
    /// Physical address of its register page.
    pub register_base: u64,
    /// INCLUDE_PCI_ALL: it serves every device of its segment not listed by another unit.
    pub include_all: bool,
    /// The devices it serves explicitly (with INCLUDE_PCI_ALL: only I/O APICs and HPETs).
    pub scopes: Vec<DeviceScope>,
}

/// Memory that devices keep using across the hand-over from firmware (a Reserved
/// Memory Region Reporting structure, RMRR): it must stay mapped 1:1 for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// The PCI segment of the devices listed.
    pub segment: u16,
    /// First byte of the region.
    pub base: u64,
    /// Last byte of the region (inclusive).
    pub limit: u64,
    /// The devices that use it.
    pub scopes: Vec<DeviceScope>,
}

/// A structure the parser recognised and stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedStructure {
    /// What it is.
    pub kind: StructureKind,
    /// Its byte offset in the table.
    pub offset: usize,
    /// Its length in bytes.
    pub length: u16,
}

/// The type of a remapping structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureKind {
    /// Type 0: a remapping unit.
    Drhd,
    /// Type 1: a reserved memory region.
    Rmrr,
    /// Type 2: root ports that support Address Translation Services.
    Atsr,
    /// Type 3: which NUMA proximity domain a unit belongs to.
    Rhsa,
    /// Type 4: an ACPI namespace device that device scopes refer to.
    Andd,
    /// Type 5: SoC-integrated devices that support address translation caching.
    Satc,
    /// A type this parser does not know (later specifications add more).
    Reserved(u16),
}

impl StructureKind {
    fn from_type(value: u16) -> StructureKind {
        match value {
            0 => StructureKind::Drhd,
            1 => StructureKind::Rmrr,
            2 => StructureKind::Atsr,
            3 => StructureKind::Rhsa,
            4 => StructureKind::Andd,
            5 => StructureKind::Satc,
            other => StructureKind::Reserved(other),
        }
    }
}

impl fmt::Display for StructureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StructureKind::Drhd => f.write_str("DRHD (remapping unit)"),
            StructureKind::Rmrr => f.write_str("RMRR (reserved memory region)"),
            StructureKind::Atsr => f.write_str("ATSR (root ports with address translation services)"),
            StructureKind::Rhsa => f.write_str("RHSA (unit's NUMA proximity domain)"),
            StructureKind::Andd => f.write_str("ANDD (ACPI namespace device)"),
            StructureKind::Satc => f.write_str("SATC (SoC devices with translation caches)"),
            StructureKind::Reserved(value) => write!(f, "structure of reserved type {value}"),
        }
    }
}

/// What a device scope names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// Type 1: one PCI function.
    PciEndpoint,
    /// Type 2: a PCI-to-PCI bridge and every device behind it.
    PciSubHierarchy,
    /// Type 3: an I/O APIC (for interrupt remapping); the enumeration id is its APIC id.
    IoApic,
    /// Type 4: an MSI-capable HPET; the enumeration id is its HPET number.
    Hpet,
    /// Type 5: an ACPI namespace device; the enumeration id names an ANDD structure.
    AcpiNamespaceDevice,
    /// A type the specification reserves.
    Reserved(u8),
}

impl ScopeKind {
    fn from_type(value: u8) -> ScopeKind {
        match value {
            1 => ScopeKind::PciEndpoint,
            2 => ScopeKind::PciSubHierarchy,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::AcpiNamespaceDevice,
            other => ScopeKind::Reserved(other),
        }
    }
}

/// One device (or bridge, I/O APIC, ...) named by a DRHD or RMRR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceScope {
    /// What it names.
    pub kind: ScopeKind,
    /// For I/O APICs, HPETs and ACPI namespace devices: which one.
    pub enumeration_id: u8,
    /// The bus the path starts on.
    pub start_bus: u8,
    /// (device, function) hops from `start_bus`: every entry but the last is a
    /// PCI-to-PCI bridge, whose secondary bus the next entry is on.
    pub path: Vec<(u8, u8)>,
}

/// `bus:device.function` as the 16-bit requester id a device puts on its DMA.
fn requester(bus: u8, device: u8, function: u8) -> u16 {
    u16::from(bus) << 8 | u16::from(device & 0x1f) << 3 | u16::from(function & 0x07)
}

/// Writes a requester id as `bb:dd.f`.
struct Bdf(u16);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.0 >> 8, (self.0 >> 3) & 0x1f, self.0 & 0x07)
    }
}

impl DeviceScope {
    /// The requester id (`bus << 8 | device << 3 | function`) of the device this scope
    /// names. A path of one entry lies on `start_bus`; each earlier entry is a bridge
    /// whose secondary bus (PCI configuration offset 0x19) the following entry is on,
    /// which `secondary_bus(bus, device, function)` reads. A scope with an empty path
    /// (the parser rejects those) gives `start_bus:00.0`.
    pub fn requester_id(&self, secondary_bus: impl Fn(u8, u8, u8) -> u8) -> u16 {
        let Some((&(device, function), bridges)) = self.path.split_last() else {
            return requester(self.start_bus, 0, 0);
        };
        let bus = bridges.iter().fold(self.start_bus, |bus, &(device, function)| secondary_bus(bus, device, function));
        requester(bus, device, function)
    }

    /// Whether this scope covers the PCI function `requester_id`: an endpoint scope
    /// covers exactly its device; a sub-hierarchy scope covers the bridge itself and
    /// the devices on the bridge's secondary bus. Buses further down (behind a second
    /// bridge) are not followed, as that needs the subordinate bus number too.
    /// I/O APIC, HPET and ACPI namespace scopes name no PCI function and cover nothing.
    pub fn covers(&self, requester_id: u16, secondary_bus: impl Fn(u8, u8, u8) -> u8) -> bool {
        match self.kind {
            ScopeKind::PciEndpoint => self.requester_id(&secondary_bus) == requester_id,
            ScopeKind::PciSubHierarchy => {
                let bridge = self.requester_id(&secondary_bus);
                let below = secondary_bus((bridge >> 8) as u8, ((bridge >> 3) & 0x1f) as u8, (bridge & 0x07) as u8);
                bridge == requester_id || (requester_id >> 8) as u8 == below
            }
            _ => false,
        }
    }

    /// The scope's path written out without reading configuration space: `bb:dd.f`
    /// for one entry, then `/dd.f` for each hop behind a bridge.
    fn write_path(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.split_first() {
            None => write!(f, "{:02x}:(empty path)", self.start_bus),
            Some((&(device, function), rest)) => {
                write!(f, "{}", Bdf(requester(self.start_bus, device, function)))?;
                for &(device, function) in rest {
                    write!(f, "/{device:02x}.{function:x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for DeviceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ScopeKind::PciEndpoint => self.write_path(f),
            ScopeKind::PciSubHierarchy => {
                self.write_path(f)?;
                f.write_str(" and the devices behind it")
            }
            ScopeKind::IoApic => {
                write!(f, "I/O APIC {} as ", self.enumeration_id)?;
                self.write_path(f)
            }
            ScopeKind::Hpet => {
                write!(f, "HPET {} as ", self.enumeration_id)?;
                self.write_path(f)
            }
            ScopeKind::AcpiNamespaceDevice => {
                write!(f, "ACPI device {} as ", self.enumeration_id)?;
                self.write_path(f)
            }
            ScopeKind::Reserved(value) => {
                write!(f, "scope of reserved type {value} at ")?;
                self.write_path(f)
            }
        }
    }
}

/// Writes scopes separated by ", ".
fn write_scopes(f: &mut fmt::Formatter<'_>, scopes: &[DeviceScope]) -> fmt::Result {
    for (index, scope) in scopes.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{scope}")?;
    }
    Ok(())
}

impl fmt::Display for RemappingUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DRHD {:#x} segment {}, covers ", self.register_base, self.segment)?;
        if self.include_all {
            f.write_str("all devices no other unit lists (INCLUDE_PCI_ALL)")?;
            if !self.scopes.is_empty() {
                f.write_str("; also ")?;
            }
        }
        if self.scopes.is_empty() && !self.include_all {
            return f.write_str("no device");
        }
        write_scopes(f, &self.scopes)
    }
}

impl fmt::Display for ReservedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RMRR {:#x}..={:#x} segment {}, for ", self.base, self.limit, self.segment)?;
        if self.scopes.is_empty() {
            return f.write_str("no device");
        }
        write_scopes(f, &self.scopes)
    }
}

impl fmt::Display for SkippedStructure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {:#x}, {} bytes: skipped", self.kind, self.offset, self.length)
    }
}

impl fmt::Display for Dmar {
    /// Several lines: the header, then one line per unit, region and skipped structure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DMAR: host address width {} bits, flags {:#x}", self.host_address_width, self.flags)?;
        let names = [
            (Dmar::INTR_REMAP, "interrupt remapping"),
            (Dmar::X2APIC_OPT_OUT, "x2APIC opt-out"),
            (Dmar::DMA_CTRL_PLATFORM_OPT_IN, "DMA control opt-in"),
        ];
        let mut first = true;
        for (bit, name) in names {
            if self.flags & bit != 0 {
                f.write_str(if first { " (" } else { ", " })?;
                f.write_str(name)?;
                first = false;
            }
        }
        if !first {
            f.write_str(")")?;
        }
        for unit in &self.units {
            write!(f, "\n  {unit}")?;
        }
        for region in &self.reserved {
            write!(f, "\n  {region}")?;
        }
        for skipped in &self.skipped {
            write!(f, "\n  {skipped}")?;
        }
        Ok(())
    }
}

/// Why a DMAR table could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarProblem {
    /// Fewer bytes than the 48-byte DMAR header.
    TooShort {
        /// Bytes given.
        available: usize,
    },
    /// The signature is not "DMAR".
    WrongSignature([u8; 4]),
    /// The header's length is below the header's own size.
    LengthBelowHeader {
        /// The length the header declares.
        declared: u32,
    },
    /// The header's length runs past the bytes given.
    LengthPastEnd {
        /// The length the header declares.
        declared: u32,
        /// Bytes given.
        available: usize,
    },
    /// The bytes do not sum to 0 (mod 256).
    Checksum {
        /// What they sum to.
        sum: u8,
    },
    /// The host address width field is 255, which plus one does not fit a byte.
    HostAddressWidth,
    /// Fewer bytes remain than a structure's 4-byte header.
    StructureHeaderTruncated {
        /// Bytes left in the table.
        remaining: usize,
    },
    /// A structure's length is below the minimum for its type (0 included).
    StructureTooShort {
        /// Its type.
        kind: StructureKind,
        /// Its declared length.
        length: u16,
        /// The least a structure of this type can be.
        minimum: usize,
    },
    /// A structure's length runs past the end of the table.
    StructurePastEnd {
        /// Its type.
        kind: StructureKind,
        /// Its declared length.
        length: u16,
        /// Bytes left in the table.
        remaining: usize,
    },
    /// An RMRR's limit lies below its base.
    RegionInverted {
        /// The region's base.
        base: u64,
        /// The region's limit.
        limit: u64,
    },
    /// Fewer bytes remain in the structure than a device scope's 6-byte header.
    ScopeTruncated {
        /// Bytes left in the structure.
        remaining: usize,
    },
    /// A device scope's length is below 8 (header plus one path entry).
    ScopeTooShort {
        /// Its declared length.
        length: u8,
    },
    /// A device scope's length leaves half a path entry.
    ScopeOddLength {
        /// Its declared length.
        length: u8,
    },
    /// A device scope's length runs past the end of its structure.
    ScopePastEnd {
        /// Its declared length.
        length: u8,
        /// Bytes left in the structure.
        remaining: usize,
    },
    /// A path entry is not a PCI device (0..=31) and function (0..=7).
    PathEntry {
        /// The device byte.
        device: u8,
        /// The function byte.
        function: u8,
    },
}

impl fmt::Display for DmarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmarProblem::TooShort { available } => {
                write!(f, "only {available} bytes, fewer than the {HEADER_LENGTH}-byte DMAR header")
            }
            DmarProblem::WrongSignature(signature) => {
                write!(f, "signature \"{}\" is not \"DMAR\"", signature.escape_ascii())
            }
            DmarProblem::LengthBelowHeader { declared } => {
                write!(f, "the header's length {declared} is below the {HEADER_LENGTH}-byte DMAR header")
            }
            DmarProblem::LengthPastEnd { declared, available } => {
                write!(f, "the header's length {declared} runs past the {available} bytes there are")
            }
            DmarProblem::Checksum { sum } => write!(f, "the bytes sum to {sum:#04x}, not 0: the checksum is wrong"),
            DmarProblem::HostAddressWidth => f.write_str("host address width field 255 is out of range"),
            DmarProblem::StructureHeaderTruncated { remaining } => {
                write!(f, "{remaining} bytes left, too few for a structure's 4-byte type and length")
            }
            DmarProblem::StructureTooShort { kind, length, minimum } => {
                write!(f, "{kind} of length {length}: it must be at least {minimum} bytes")
            }
            DmarProblem::StructurePastEnd { kind, length, remaining } => {
                write!(f, "{kind} of length {length} runs past the table's end ({remaining} bytes left)")
            }
            DmarProblem::RegionInverted { base, limit } => {
                write!(f, "reserved region's limit {limit:#x} lies below its base {base:#x}")
            }
            DmarProblem::ScopeTruncated { remaining } => {
                write!(f, "{remaining} bytes left in the structure, too few for a 6-byte device scope header")
            }
            DmarProblem::ScopeTooShort { length } => {
                write!(f, "device scope of length {length}: it needs at least {SCOPE_MIN_LENGTH} (one path entry)")
            }
            DmarProblem::ScopeOddLength { length } => {
                write!(f, "device scope of length {length} ends in half a 2-byte path entry")
            }
            DmarProblem::ScopePastEnd { length, remaining } => {
                write!(f, "device scope of length {length} runs past its structure ({remaining} bytes left)")
            }
            DmarProblem::PathEntry { device, function } => {
                write!(f, "path entry {device:#x}.{function:#x} is no PCI device (0..=31) and function (0..=7)")
            }
        }
    }
}

/// A malformed DMAR table: the byte offset where parsing stopped, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmarError {
    /// Offset in the table of the field found wrong.
    pub offset: usize,
    /// What is wrong there.
    pub problem: DmarProblem,
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DMAR byte {:#x}: {}", self.offset, self.problem)
    }
}

fn fail<T>(offset: usize, problem: DmarProblem) -> Result<T, DmarError> {
    Err(DmarError { offset, problem })
}

impl Dmar {
    /// Flag: the platform supports interrupt remapping.
    pub const INTR_REMAP: u8 = 1 << 0;
    /// Flag: firmware asks the OS not to enable x2APIC mode.
    pub const X2APIC_OPT_OUT: u8 = 1 << 1;
    /// Flag: firmware kept DMA protection on for devices it set up (platform opt-in).
    pub const DMA_CTRL_PLATFORM_OPT_IN: u8 = 1 << 2;

    /// Parses a whole DMAR table (ACPI header included; bytes past the header's
    /// length are ignored). Every length is checked before it is trusted.
    pub fn parse(table: &[u8]) -> Result<Dmar, DmarError> {
        if table.len() < HEADER_LENGTH {
            return fail(0, DmarProblem::TooShort { available: table.len() });
        }
        let signature = [table[0], table[1], table[2], table[3]];
        if signature != SIGNATURE {
            return fail(0, DmarProblem::WrongSignature(signature));
        }
        let declared = u32_at(table, 4);
        let length = declared as usize;
        if length < HEADER_LENGTH {
            return fail(4, DmarProblem::LengthBelowHeader { declared });
        }
        if length > table.len() {
            return fail(4, DmarProblem::LengthPastEnd { declared, available: table.len() });
        }
        let table = &table[..length];
        let sum = table.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
        if sum != 0 {
            return fail(9, DmarProblem::Checksum { sum });
        }
        let host_address_width =
            table[36].checked_add(1).ok_or(DmarError { offset: 36, problem: DmarProblem::HostAddressWidth })?;
        let mut dmar =
            Dmar { host_address_width, flags: table[37], units: Vec::new(), reserved: Vec::new(), skipped: Vec::new() };

        let mut offset = HEADER_LENGTH;
        while offset < length {
            let remaining = length - offset;
            if remaining < STRUCTURE_HEADER_LENGTH {
                return fail(offset, DmarProblem::StructureHeaderTruncated { remaining });
            }
            let kind = StructureKind::from_type(u16_at(table, offset));
            let declared = u16_at(table, offset + 2);
            let minimum = match kind {
                StructureKind::Drhd => DRHD_LENGTH,
                StructureKind::Rmrr => RMRR_LENGTH,
                _ => STRUCTURE_HEADER_LENGTH,
            };
            if usize::from(declared) < minimum {
                return fail(offset + 2, DmarProblem::StructureTooShort { kind, length: declared, minimum });
            }
            if usize::from(declared) > remaining {
                return fail(offset + 2, DmarProblem::StructurePastEnd { kind, length: declared, remaining });
            }
            let body = &table[offset..offset + usize::from(declared)];
            match kind {
                StructureKind::Drhd => dmar.units.push(RemappingUnit {
                    include_all: body[4] & INCLUDE_PCI_ALL != 0,
                    segment: u16_at(body, 6),
                    register_base: u64_at(body, 8),
                    scopes: parse_scopes(body, DRHD_LENGTH, offset)?,
                }),
                StructureKind::Rmrr => {
                    let (base, limit) = (u64_at(body, 8), u64_at(body, 16));
                    if limit < base {
                        return fail(offset + 16, DmarProblem::RegionInverted { base, limit });
                    }
                    let scopes = parse_scopes(body, RMRR_LENGTH, offset)?;
                    dmar.reserved.push(ReservedRegion { segment: u16_at(body, 6), base, limit, scopes });
                }
                _ => dmar.skipped.push(SkippedStructure { kind, offset, length: declared }),
            }
            offset += usize::from(declared);
        }
        Ok(dmar)
    }

    /// Whether the platform supports interrupt remapping ([`Dmar::INTR_REMAP`]).
    pub fn interrupt_remapping(&self) -> bool {
        self.flags & Dmar::INTR_REMAP != 0
    }

    /// Which unit (an index into `units`) translates the DMA of the PCI function
    /// `requester_id` (`bus << 8 | device << 3 | function`) on segment 0, the only
    /// segment dmakit's PCI access reaches: the unit whose device scopes list it (see
    /// [`DeviceScope::covers`]), else the segment's INCLUDE_PCI_ALL unit, else none
    /// (its DMA is not translated). `secondary_bus(bus, device, function)` reads a
    /// bridge's secondary bus number, for scopes whose paths cross bridges.
    pub fn unit_for(&self, requester_id: u16, secondary_bus: impl Fn(u8, u8, u8) -> u8) -> Option<usize> {
        let listed = self.units.iter().position(|unit| {
            unit.segment == 0 && unit.scopes.iter().any(|scope| scope.covers(requester_id, &secondary_bus))
        });
        listed.or_else(|| self.units.iter().position(|unit| unit.segment == 0 && unit.include_all))
    }
}

/// The device scopes filling `structure` from byte `first` on; `base` is the
/// structure's offset in the table, for error offsets.
fn parse_scopes(structure: &[u8], first: usize, base: usize) -> Result<Vec<DeviceScope>, DmarError> {
    let mut scopes = Vec::new();
    let mut at = first;
    while at < structure.len() {
        let remaining = structure.len() - at;
        if remaining < SCOPE_HEADER_LENGTH {
            return fail(base + at, DmarProblem::ScopeTruncated { remaining });
        }
        let length = structure[at + 1];
        if usize::from(length) < SCOPE_MIN_LENGTH {
            return fail(base + at + 1, DmarProblem::ScopeTooShort { length });
        }
        if usize::from(length) % 2 != 0 {
            return fail(base + at + 1, DmarProblem::ScopeOddLength { length });
        }
        if usize::from(length) > remaining {
            return fail(base + at + 1, DmarProblem::ScopePastEnd { length, remaining });
        }
        let mut path = Vec::new();
        for entry in (at + SCOPE_HEADER_LENGTH..at + usize::from(length)).step_by(2) {
            let (device, function) = (structure[entry], structure[entry + 1]);
            if device > 31 || function > 7 {
                return fail(base + entry, DmarProblem::PathEntry { device, function });
            }
            path.push((device, function));
        }
        scopes.push(DeviceScope {
            kind: ScopeKind::from_type(structure[at]),
            enumeration_id: structure[at + 4],
            start_bus: structure[at + 5],
            path,
        });
        at += usize::from(length);
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;

    /// Builds DMAR tables byte by byte, as firmware would lay them out.
    struct Table(Vec<u8>);

    impl Table {
        /// The header, with host address width field `width - 1`.
        fn new(width: u8, flags: u8) -> Table {
            let mut bytes = vec![0u8; HEADER_LENGTH];
            bytes[..4].copy_from_slice(b"DMAR");
            bytes[8] = 1;
            bytes[10..16].copy_from_slice(b"DMAKIT");
            bytes[36] = width - 1;
            bytes[37] = flags;
            Table(bytes)
        }

        fn structure(mut self, kind: u16, body: &[u8]) -> Table {
            self.0.extend_from_slice(&kind.to_le_bytes());
            self.0.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
            self.0.extend_from_slice(body);
            self
        }

        fn drhd(self, flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Table {
            let mut body = vec![flags, 0];
            body.extend_from_slice(&segment.to_le_bytes());
            body.extend_from_slice(&base.to_le_bytes());
            scopes.iter().for_each(|scope| body.extend_from_slice(scope));
            self.structure(0, &body)
        }

        fn rmrr(self, segment: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Table {
            let mut body = vec![0, 0];
            body.extend_from_slice(&segment.to_le_bytes());
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&limit.to_le_bytes());
            scopes.iter().for_each(|scope| body.extend_from_slice(scope));
            self.structure(1, &body)
        }

        /// The finished table: length and checksum filled in.
        fn bytes(mut self) -> Vec<u8> {
            let length = self.0.len() as u32;
            self.0[4..8].copy_from_slice(&length.to_le_bytes());
            self.0[9] = 0;
            let sum = self.0.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
            self.0[9] = 0u8.wrapping_sub(sum);
            self.0
        }
    }

    fn scope(kind: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
        let mut bytes = vec![kind, (6 + 2 * path.len()) as u8, 0, 0, id, bus];
        path.iter().for_each(|&(device, function)| bytes.extend_from_slice(&[device, function]));
        bytes
    }

    /// A bridge at 00:1c.0 whose secondary bus is 3; a bridge at 03:00.0 leading to bus 4.
    fn bridges(bus: u8, device: u8, function: u8) -> u8 {
        match (bus, device, function) {
            (0, 0x1c, 0) => 3,
            (3, 0, 0) => 4,
            _ => 0xff,
        }
    }

    /// Shaped like QEMU's q35 table (one unit at 0xfed90000 listing devices
    /// explicitly, and the I/O APIC), with a bridge added.
    fn q35_like() -> Vec<u8> {
        Table::new(39, Dmar::INTR_REMAP)
            .drhd(
                0,
                0,
                0xfed9_0000,
                &[
                    scope(1, 0, 0, &[(1, 0)]),
                    scope(1, 0, 0, &[(2, 0)]),
                    scope(2, 0, 0, &[(0x1c, 0)]),
                    scope(3, 0, 0xff, &[(0, 0)]),
                ],
            )
            .bytes()
    }

    /// The DMAR QEMU 7.2 builds for `-machine q35 -device intel-iommu -m 2G` (read
    /// from the physical map on a real boot): INTR_REMAP, width 39, one unit at
    /// 0xfed90000 without INCLUDE_PCI_ALL, listing the I/O APIC and every device of
    /// the default machine (host bridge, VGA, e1000e, LPC, AHCI, SMBus).
    #[test]
    fn parses_the_table_qemu_q35_builds() {
        let hex = [
            "444d415278000000010d424f4348532042585043202020200100000042585043",
            "0100000026010000000000000000000000004800000000000000d9fe00000000",
            "0308000000ff0000010800000000000001080000000001000108000000000200",
            "0108000000001f000108000000001f020108000000001f03",
        ]
        .concat();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap()).collect();
        assert_eq!(bytes.len(), 120);
        let dmar = Dmar::parse(&bytes).unwrap();
        assert_eq!((dmar.host_address_width, dmar.flags), (39, Dmar::INTR_REMAP));
        assert_eq!(dmar.units.len(), 1);
        assert!(dmar.reserved.is_empty() && dmar.skipped.is_empty());
        assert_eq!(
            dmar.units[0].to_string(),
            "DRHD 0xfed90000 segment 0, covers I/O APIC 0 as ff:00.0, 00:00.0, 00:01.0, 00:02.0, 00:1f.0, 00:1f.2, 00:1f.3"
        );
        let ids: Vec<u16> = dmar.units[0].scopes.iter().map(|scope| scope.requester_id(bridges)).collect();
        assert_eq!(ids, [0xff00, 0x0000, 0x0008, 0x0010, 0x00f8, 0x00fa, 0x00fb]);
        assert_eq!(dmar.unit_for(0x00fa, bridges), Some(0));
        assert_eq!(dmar.unit_for(0x0018, bridges), None, "00:03.0 is not listed");
    }

    #[test]
    fn parses_header_units_and_scopes() {
        let dmar = Dmar::parse(&q35_like()).unwrap();
        assert_eq!(dmar.host_address_width, 39);
        assert!(dmar.interrupt_remapping());
        assert_eq!(dmar.units.len(), 1);
        let unit = &dmar.units[0];
        assert_eq!((unit.segment, unit.register_base, unit.include_all), (0, 0xfed9_0000, false));
        assert_eq!(unit.scopes.len(), 4);
        assert_eq!(
            unit.scopes[3],
            DeviceScope { kind: ScopeKind::IoApic, enumeration_id: 0, start_bus: 0xff, path: vec![(0, 0)] }
        );
        assert_eq!(unit.scopes[2].kind, ScopeKind::PciSubHierarchy);
        assert!(dmar.reserved.is_empty() && dmar.skipped.is_empty());
    }

    #[test]
    fn parses_flags_include_all_and_reserved_regions() {
        let bytes = Table::new(48, Dmar::INTR_REMAP | Dmar::X2APIC_OPT_OUT | Dmar::DMA_CTRL_PLATFORM_OPT_IN)
            .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_1000, &[scope(3, 2, 0xf0, &[(0x1f, 0)]), scope(4, 0, 0, &[(0x1f, 7)])])
            .rmrr(0, 0x7f00_0000, 0x7f0f_ffff, &[scope(1, 0, 0, &[(0x1d, 0)]), scope(1, 0, 0, &[(0x1d, 1)])])
            .bytes();
        let dmar = Dmar::parse(&bytes).unwrap();
        assert_eq!(dmar.host_address_width, 48);
        assert_eq!(dmar.flags, 7);
        assert!(dmar.units[0].include_all);
        assert_eq!(dmar.units[0].scopes[1].kind, ScopeKind::Hpet);
        assert_eq!(
            dmar.reserved,
            vec![ReservedRegion {
                segment: 0,
                base: 0x7f00_0000,
                limit: 0x7f0f_ffff,
                scopes: vec![
                    DeviceScope {
                        kind: ScopeKind::PciEndpoint,
                        enumeration_id: 0,
                        start_bus: 0,
                        path: vec![(0x1d, 0)]
                    },
                    DeviceScope {
                        kind: ScopeKind::PciEndpoint,
                        enumeration_id: 0,
                        start_bus: 0,
                        path: vec![(0x1d, 1)]
                    },
                ],
            }]
        );
    }

    #[test]
    fn skips_atsr_rhsa_andd_and_unknown_types_by_name() {
        let bytes = Table::new(39, 0)
            .structure(2, &[1, 0, 0, 0]) // ATSR: flags, reserved, segment
            .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_0000, &[])
            .structure(3, &[0; 16]) // RHSA: reserved, base, proximity domain
            .structure(4, &[0, 0, 0, 1, b'\\', b'A', 0]) // ANDD
            .structure(42, &[])
            .bytes();
        let dmar = Dmar::parse(&bytes).unwrap();
        assert_eq!(dmar.units.len(), 1);
        let kinds: Vec<_> = dmar.skipped.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StructureKind::Atsr, StructureKind::Rhsa, StructureKind::Andd, StructureKind::Reserved(42)]);
        assert_eq!(dmar.skipped[0], SkippedStructure { kind: StructureKind::Atsr, offset: 48, length: 8 });
        let text = dmar.to_string();
        assert!(text.contains("ATSR (root ports with address translation services) at byte 0x30, 8 bytes: skipped"));
        assert!(text.contains("structure of reserved type 42"));
    }

    #[test]
    fn requester_id_of_a_one_entry_path_is_start_bus_device_function() {
        let scope = DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 2, path: vec![(3, 1)] };
        assert_eq!(scope.requester_id(|_, _, _| panic!("one-entry paths read no bridge")), 0x0219);
    }

    #[test]
    fn requester_id_follows_bridges_through_their_secondary_bus() {
        let behind_one = DeviceScope {
            kind: ScopeKind::PciEndpoint,
            enumeration_id: 0,
            start_bus: 0,
            path: vec![(0x1c, 0), (0, 2)],
        };
        assert_eq!(behind_one.requester_id(bridges), 0x0302);
        let behind_two = DeviceScope {
            kind: ScopeKind::PciEndpoint,
            enumeration_id: 0,
            start_bus: 0,
            path: vec![(0x1c, 0), (0, 0), (5, 0)],
        };
        assert_eq!(behind_two.requester_id(bridges), 0x0428);
        let empty = DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 7, path: vec![] };
        assert_eq!(empty.requester_id(bridges), 0x0700);
    }

    #[test]
    fn unit_for_prefers_explicit_scopes_then_include_all_of_segment_0() {
        let bytes = Table::new(39, 0)
            .drhd(0, 1, 0xfed9_2000, &[scope(1, 0, 0, &[(4, 0)])]) // segment 1: never dmakit's
            .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])])
            .drhd(0, 0, 0xfed9_1000, &[scope(1, 0, 0, &[(2, 0)]), scope(2, 0, 0, &[(0x1c, 0)])])
            .bytes();
        let dmar = Dmar::parse(&bytes).unwrap();
        assert_eq!(dmar.unit_for(requester(0, 2, 0), bridges), Some(2), "listed endpoint");
        assert_eq!(dmar.unit_for(requester(0, 0x1c, 0), bridges), Some(2), "the bridge itself");
        assert_eq!(dmar.unit_for(requester(3, 0, 0), bridges), Some(2), "behind the bridge");
        assert_eq!(dmar.unit_for(requester(0, 4, 0), bridges), Some(1), "unlisted on segment 0: include-all");
        assert_eq!(dmar.unit_for(0xff00, bridges), Some(1), "an I/O APIC scope is no PCI function");
    }

    #[test]
    fn unit_for_without_include_all_leaves_unlisted_devices_untranslated() {
        let dmar = Dmar::parse(&q35_like()).unwrap();
        assert_eq!(dmar.unit_for(requester(0, 1, 0), bridges), Some(0));
        assert_eq!(dmar.unit_for(requester(0, 5, 0), bridges), None);
    }

    #[test]
    fn display_reads_as_a_sentence() {
        let dmar = Dmar::parse(&q35_like()).unwrap();
        assert_eq!(
            dmar.units[0].to_string(),
            "DRHD 0xfed90000 segment 0, covers 00:01.0, 00:02.0, 00:1c.0 and the devices behind it, I/O APIC 0 as ff:00.0"
        );
        assert!(
            dmar.to_string().starts_with("DMAR: host address width 39 bits, flags 0x1 (interrupt remapping)\n  DRHD")
        );
        let all = RemappingUnit { segment: 0, register_base: 0xfed9_0000, include_all: true, scopes: vec![] };
        assert_eq!(
            all.to_string(),
            "DRHD 0xfed90000 segment 0, covers all devices no other unit lists (INCLUDE_PCI_ALL)"
        );
        let deep = DeviceScope {
            kind: ScopeKind::PciEndpoint,
            enumeration_id: 0,
            start_bus: 0,
            path: vec![(0x1c, 0), (0, 2)],
        };
        assert_eq!(deep.to_string(), "00:1c.0/00.2");
        let region = ReservedRegion { segment: 0, base: 0x1000, limit: 0x1fff, scopes: vec![deep] };
        assert_eq!(region.to_string(), "RMRR 0x1000..=0x1fff segment 0, for 00:1c.0/00.2");
    }

    fn problem(bytes: &[u8]) -> DmarError {
        Dmar::parse(bytes).unwrap_err()
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(problem(&[0; 10]), DmarError { offset: 0, problem: DmarProblem::TooShort { available: 10 } });
        let mut bytes = q35_like();
        bytes[..4].copy_from_slice(b"DMAX");
        assert_eq!(problem(&bytes).problem, DmarProblem::WrongSignature(*b"DMAX"));

        let good = q35_like();
        let mut bytes = good.clone();
        bytes[4..8].copy_from_slice(&(good.len() as u32 + 1).to_le_bytes());
        let error = problem(&bytes);
        assert_eq!(error.offset, 4);
        assert!(matches!(error.problem, DmarProblem::LengthPastEnd { .. }));
        bytes[4..8].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(problem(&bytes).problem, DmarProblem::LengthBelowHeader { declared: 20 });

        let mut bytes = good.clone();
        bytes[60] ^= 0x10;
        assert_eq!(problem(&bytes), DmarError { offset: 9, problem: DmarProblem::Checksum { sum: 0x10 } });

        let mut table = Table::new(39, 0);
        table.0[36] = 255;
        assert_eq!(problem(&table.bytes()).problem, DmarProblem::HostAddressWidth);
    }

    #[test]
    fn rejects_bad_structures_naming_the_byte() {
        // A zero-length structure would make the walk loop for ever.
        let bytes = Table::new(39, 0).structure(2, &[]).bytes();
        let mut zero = bytes.clone();
        zero[50..52].copy_from_slice(&0u16.to_le_bytes());
        let zero = Table(zero).bytes();
        let error = problem(&zero);
        assert_eq!(
            error,
            DmarError {
                offset: 50,
                problem: DmarProblem::StructureTooShort { kind: StructureKind::Atsr, length: 0, minimum: 4 }
            }
        );
        assert_eq!(
            error.to_string(),
            "DMAR byte 0x32: ATSR (root ports with address translation services) of length 0: it must be at least 4 bytes"
        );

        // A DRHD shorter than its fixed part.
        let short = Table::new(39, 0).structure(0, &[0; 8]).bytes();
        assert!(matches!(
            problem(&short).problem,
            DmarProblem::StructureTooShort { kind: StructureKind::Drhd, length: 12, .. }
        ));

        // A structure whose length runs past the table.
        let mut past = Table::new(39, 0).drhd(0, 0, 0xfed9_0000, &[]).bytes();
        past[50..52].copy_from_slice(&40u16.to_le_bytes());
        let past = Table(past).bytes();
        assert_eq!(
            problem(&past),
            DmarError {
                offset: 50,
                problem: DmarProblem::StructurePastEnd { kind: StructureKind::Drhd, length: 40, remaining: 16 }
            }
        );

        // Two stray bytes after the last structure.
        let mut stray = Table::new(39, 0).drhd(0, 0, 0xfed9_0000, &[]).bytes();
        stray.extend_from_slice(&[0, 0]);
        let stray = Table(stray).bytes();
        assert_eq!(
            problem(&stray),
            DmarError { offset: 64, problem: DmarProblem::StructureHeaderTruncated { remaining: 2 } }
        );

        let inverted = Table::new(39, 0).rmrr(0, 0x2000, 0x1fff, &[]).bytes();
        assert_eq!(problem(&inverted).offset, 64);
    }

    #[test]
    fn rejects_bad_scopes_naming_the_byte() {
        // Scopes start at byte 48 + 16 = 64 in a first DRHD.
        let truncated = Table::new(39, 0).drhd(0, 0, 0, &[vec![1, 8, 0, 0]]).bytes();
        assert_eq!(
            problem(&truncated),
            DmarError { offset: 64, problem: DmarProblem::ScopeTruncated { remaining: 4 } }
        );

        let no_path = Table::new(39, 0).drhd(0, 0, 0, &[scope(1, 0, 0, &[])]).bytes();
        assert_eq!(problem(&no_path), DmarError { offset: 65, problem: DmarProblem::ScopeTooShort { length: 6 } });

        let mut odd = scope(1, 0, 0, &[(1, 0)]);
        odd[1] = 9;
        odd.push(0);
        let odd = Table::new(39, 0).drhd(0, 0, 0, &[odd]).bytes();
        assert_eq!(problem(&odd).problem, DmarProblem::ScopeOddLength { length: 9 });

        let mut long = scope(1, 0, 0, &[(1, 0)]);
        long[1] = 10;
        let long = Table::new(39, 0).drhd(0, 0, 0, &[long]).bytes();
        assert_eq!(
            problem(&long),
            DmarError { offset: 65, problem: DmarProblem::ScopePastEnd { length: 10, remaining: 8 } }
        );

        let bad_entry = Table::new(39, 0).drhd(0, 0, 0, &[scope(1, 0, 0, &[(1, 0), (32, 0)])]).bytes();
        let error = problem(&bad_entry);
        assert_eq!(error, DmarError { offset: 72, problem: DmarProblem::PathEntry { device: 32, function: 0 } });
        assert!(error.to_string().starts_with("DMAR byte 0x48: path entry 0x20.0x0"));
    }

    #[test]
    fn bytes_past_the_declared_length_are_ignored() {
        let mut bytes = q35_like();
        bytes.extend_from_slice(&[0xaa; 7]);
        assert_eq!(Dmar::parse(&bytes).unwrap(), Dmar::parse(&q35_like()).unwrap());
    }

    proptest::proptest! {
        /// Whatever the bytes, parsing returns; it never panics or loops.
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200), mutate in 0usize..400, value: u8) {
            let mut bytes = Table(Table::new(39, 0).0).bytes();
            bytes.extend_from_slice(&body);
            let mut bytes = Table(bytes).bytes();
            if let Some(byte) = bytes.get_mut(mutate) {
                *byte = value;
            }
            let _ = Dmar::parse(&bytes);
            // Also with a fixed-up checksum, so the structure walk runs.
            let _ = Dmar::parse(&Table(bytes).bytes());
        }
    }
}
