//! The `acpi` crate on memory the survey accepted, as `platform::dmar` runs
//! it: `AcpiTables::from_rsdp`, then `find_table` for the DMAR, whose bytes go
//! to `Dmar::parse`. The kernel's handler maps whatever the crate asks for,
//! trusting the survey to have read every such range first (the SAFETY
//! argument in `platform.rs`); this handler checks that trust instead, and
//! fails the test on a mapping outside every range the survey read.
//!
//! What the handler cannot see: the crate also reads past a mapping, from
//! its pointer, in two places: the RSDP's extended checksum over the RSDP's
//! own length field, and a table's checksum over its length field. The survey
//! reads the RSDP over that length and every table over its length, so both
//! stay in memory it read; the memory here starts at the mapping and runs to
//! the end of the generated memory, so an over-read stays in bounds too.

use core::ptr::NonNull;

use ::acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use proptest::prelude::*;

use crate::acpi::Dmar;
use crate::acpi::dmar_header::DmarHeader;

/// Generated memory, mapped where the survey read it.
#[derive(Clone, Copy, Debug)]
struct Surveyed<'a> {
    memory: &'a [u8],
    /// The ranges the survey read (address, length).
    read: &'a [(u64, usize)],
}

impl AcpiHandler for Surveyed<'_> {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let (start, end) = (physical_address as u64, (physical_address as u64).saturating_add(size as u64));
        let surveyed = self.read.iter().any(|&(address, length)| address <= start && end <= address + length as u64);
        assert!(surveyed, "the acpi crate mapped {size} bytes at {physical_address:#x}, which the survey never read");
        let from_there = NonNull::from(&self.memory[physical_address..]).cast::<T>();
        // SAFETY: the `size` bytes at `physical_address` lie in `memory` (the
        // survey read them from it, checked above), which outlives the
        // mapping; the pointer carries the rest of `memory` too, for the
        // crate's reads past the mapping (see the module's comment). The
        // crate's types here are packed ACPI structures, aligned to 1.
        unsafe { PhysicalMapping::new(physical_address, from_there, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Runs the crate's walk to the DMAR over `memory` from `rsdp`, the survey
/// having read the ranges `read`; the DMAR found is parsed.
pub(super) fn find_dmar(memory: &[u8], rsdp: u64, read: &[(u64, usize)]) -> Result<(), TestCaseError> {
    let handler = Surveyed { memory, read };
    // SAFETY: the handler maps only ranges of `memory` the survey read, and
    // fails the test (before making a pointer) on any other.
    let Ok(tables) = (unsafe { AcpiTables::from_rsdp(handler, rsdp as usize) }) else {
        return Ok(());
    };
    if let Ok(mapping) = tables.find_table::<DmarHeader>() {
        let start = mapping.physical_start();
        let bytes = &memory[start..start + mapping.region_length()];
        if let Err(error) = Dmar::parse(bytes) {
            prop_assert!(error.offset <= bytes.len());
        }
    }
    Ok(())
}
