//! The real tables: found through the RSDP address the boot info carries and read
//! through the kernel's map of all physical memory.
//!
//! The boot code (boot/src/handoff.rs) maps physical memory from 0 up to the end of
//! RAM or 4 GiB, whichever is higher. Firmware puts the RSDP in the BIOS area below
//! 1 MiB and the tables at the top of RAM below 4 GiB (on q35 with 2 GiB, near
//! 0x7ffe0000), and an RSDT can only name 32-bit addresses, so the map always covers
//! them; `read` still checks every range, because an XSDT could name any address.
//!
//! The `acpi` crate (5.2) finds the DMAR by signature and checks its checksum; the
//! survey in `tables` first checks that every table the crate will touch lies in
//! the map, since the crate maps whatever the root table names.

use alloc::vec::Vec;
use core::ptr::NonNull;

use ::acpi::{AcpiError, AcpiHandler, AcpiTables, PhysicalMapping};
use bootloader_api::info::MemoryRegionKind;
use x86_64::PhysAddr;

use super::dmar::{self, Dmar};
use super::dmar_header::DmarHeader;
use super::tables::{self, AcpiFailure, Survey, TableInfo};
use crate::boot_info;
use crate::memory::physical;

/// The physical memory map as an `AcpiHandler`: every "mapping" is the address at
/// which the boot code already mapped that memory, so unmapping does nothing.
#[derive(Clone, Copy, Debug)]
struct PhysicalMap;

impl AcpiHandler for PhysicalMap {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virtual_start = physical::to_virtual(PhysAddr::new(physical_address as u64)).as_mut_ptr::<T>();
        // `open` refuses to run with a zero map offset, so a mapped address is never null.
        let virtual_start = NonNull::new(virtual_start).expect("the physical map lies above address 0");
        // SAFETY: the caller (the acpi crate, on addresses `open`'s survey checked)
        // vouches that the range holds a `T`; it is mapped for the kernel's lifetime.
        unsafe { PhysicalMapping::new(physical_address, virtual_start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Where the physical map ends: the end of RAM or 4 GiB, whichever is higher, as
/// boot/src/handoff.rs decides (RAM is what the memory map reports usable or
/// taken by the boot code).
fn map_end() -> u64 {
    let ram_end = boot_info::get()
        .and_then(|info| {
            info.memory_regions
                .iter()
                .filter(|region| matches!(region.kind, MemoryRegionKind::Usable | MemoryRegionKind::Bootloader))
                .map(|region| region.end)
                .max()
        })
        .unwrap_or(0);
    ram_end.max(1 << 32)
}

/// The `length` bytes at physical `address`, if the physical map covers them.
fn read(address: u64, length: usize) -> Option<&'static [u8]> {
    let end = address.checked_add(length as u64)?;
    if end > map_end() || physical::offset().as_u64() == 0 {
        return None;
    }
    let start = physical::to_virtual(PhysAddr::new(address)).as_ptr::<u8>();
    // SAFETY: [address, end) lies inside the physical map (checked above), which the
    // boot code made and nothing unmaps; firmware tables lie in memory the firmware
    // reserved, which the frame allocator never hands out, so nothing writes these
    // bytes while they are borrowed, and any byte is a valid u8.
    Some(unsafe { core::slice::from_raw_parts(start, length) })
}

/// Surveys the tables, checking that all of them lie in the physical map.
fn open() -> Result<(u64, Survey), AcpiFailure> {
    let info = boot_info::get().ok_or(AcpiFailure::NotBooted)?;
    let rsdp = info.rsdp_addr.into_option().ok_or(AcpiFailure::NoRsdp)?;
    if physical::offset().as_u64() == 0 {
        return Err(AcpiFailure::NotBooted);
    }
    Ok((rsdp, tables::survey(rsdp, read)?))
}

/// Every ACPI table: the root table (RSDT or XSDT) first, then those it lists, in
/// its order, with where each lies and whether its checksum holds.
pub fn tables() -> Result<Vec<TableInfo>, AcpiFailure> {
    let (_, survey) = open()?;
    let mut all = Vec::with_capacity(survey.tables.len() + 1);
    all.push(survey.root);
    all.extend(survey.tables);
    Ok(all)
}

/// The parsed DMAR table, or `None` if the machine has none (no IOMMU, as on
/// `-machine pc` or q35 without `-device intel-iommu`).
pub fn dmar() -> Result<Option<Dmar>, AcpiFailure> {
    let (rsdp, survey) = open()?;
    // SAFETY: the survey read the RSDP, the root table and every table it lists
    // (whole lengths) through the physical map, so every range the crate maps is
    // mapped and holds what the firmware put there.
    let acpi = unsafe { AcpiTables::from_rsdp(PhysicalMap, rsdp as usize) }.map_err(AcpiFailure::Crate)?;
    match acpi.find_table::<DmarHeader>() {
        Ok(mapping) => {
            let address = mapping.physical_start() as u64;
            let bytes = read(address, mapping.region_length()).ok_or(AcpiFailure::OutsideMap {
                place: tables::Place::Dmar,
                address,
                length: mapping.region_length() as u64,
            })?;
            Dmar::parse(bytes).map(Some).map_err(|error| AcpiFailure::Dmar { address, error })
        }
        // The crate skips a DMAR whose checksum is wrong: say so rather than "no IOMMU".
        Err(AcpiError::TableMissing(_)) => {
            match survey.tables.iter().find(|table| table.signature == dmar::SIGNATURE) {
                None => Ok(None),
                Some(&table) => Err(AcpiFailure::Rejected { table }),
            }
        }
        Err(error) => Err(AcpiFailure::Crate(error)),
    }
}

/// The secondary bus of the PCI-to-PCI bridge at `bus:device.function` (segment 0),
/// read from its configuration space: the closure that
/// [`DeviceScope::requester_id`](super::DeviceScope::requester_id) and
/// [`Dmar::unit_for`] need on the real machine.
pub fn secondary_bus(bus: u8, device: u8, function: u8) -> u8 {
    crate::pci::secondary_bus(bus, device, function)
}
