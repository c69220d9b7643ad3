//! ACPI: finding the firmware's tables, and the DMAR table that describes the
//! IOMMU (Intel VT-d) and which devices it translates for.
//!
//! `dmar` and `tables` are pure and tested on the host; `platform` reads the real
//! tables through the physical memory map.

mod bytes;
pub mod dmar;
#[cfg(any(test, target_os = "none"))]
mod dmar_header;
#[cfg(target_os = "none")]
mod platform;
pub mod tables;

pub use dmar::{
    DeviceScope, Dmar, DmarError, DmarProblem, RemappingUnit, ReservedRegion, ScopeKind, SkippedStructure,
    StructureKind,
};
#[cfg(target_os = "none")]
pub use platform::{dmar, secondary_bus, tables};
pub use tables::{AcpiFailure, Place, Survey, TableInfo};
