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

mod layout;
mod problem;

use layout::*;
pub use layout::{SIGNATURE, StructureKind};
use problem::fail;
pub use problem::{DmarError, DmarProblem};

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
mod generated;
#[cfg(test)]
mod tests;
