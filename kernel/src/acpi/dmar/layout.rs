//! The DMAR table's fixed layout: lengths, flags and the types of its
//! remapping structures (see `dmar.rs` for the picture).

use core::fmt;

/// The table's signature.
pub const SIGNATURE: [u8; 4] = *b"DMAR";

/// The ACPI header (36 bytes) plus width, flags and 10 reserved bytes.
pub(super) const HEADER_LENGTH: usize = 48;
/// A remapping structure's own header: type and length.
pub(super) const STRUCTURE_HEADER_LENGTH: usize = 4;
/// A DRHD's fixed part, before its device scopes.
pub(super) const DRHD_LENGTH: usize = 16;
/// An RMRR's fixed part, before its device scopes.
pub(super) const RMRR_LENGTH: usize = 24;
/// A device scope's fixed part, before its path.
pub(super) const SCOPE_HEADER_LENGTH: usize = 6;
/// A device scope needs at least one path entry to name anything.
pub(super) const SCOPE_MIN_LENGTH: usize = SCOPE_HEADER_LENGTH + 2;
/// DRHD flag: this unit translates for every device of its segment that no other
/// unit lists explicitly.
pub(super) const INCLUDE_PCI_ALL: u8 = 1 << 0;

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
    pub(super) fn from_type(value: u16) -> StructureKind {
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
