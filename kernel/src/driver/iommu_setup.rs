//! Turning on the IOMMUs that ACPI's DMAR table describes, before any driver
//! starts: from then on a device behind a unit reaches only what its domain maps.

use alloc::string::String;
use alloc::vec::Vec;

use spin::Once;

use crate::acpi::{self, Dmar};
use crate::iommu::{self, UnitDescription};
use crate::pci::PciDevice;

/// The DMAR table read at bring-up, if the machine has one.
static DMAR: Once<Option<Dmar>> = Once::new();

/// Reads DMAR and brings its units up (once per boot). A machine without a
/// DMAR table (`-machine pc`) has no IOMMU: nothing happens.
pub(super) fn bring_up(devices: &[PciDevice]) {
    let dmar = DMAR.call_once(|| match acpi::dmar() {
        Ok(dmar) => dmar,
        Err(failure) => {
            log::warn!("ACPI: no IOMMU, the DMAR table could not be read: {failure}");
            None
        }
    });
    let Some(dmar) = dmar else {
        return;
    };
    // Each unit's scope, resolved to the requester IDs of the devices present.
    let units: Vec<UnitDescription> = dmar
        .units
        .iter()
        .enumerate()
        .map(|(index, unit)| UnitDescription {
            register_base: unit.register_base,
            include_all: unit.include_all,
            devices: devices
                .iter()
                .map(PciDevice::requester_id)
                .filter(|&id| dmar.unit_for(id, acpi::secondary_bus) == Some(index))
                .collect(),
        })
        .collect();
    match iommu::init(&units) {
        Ok(on) => log::info!("IOMMU: {on} VT-d unit(s) translating DMA"),
        Err(failure) if failure.code() == crate::dma::IoReturn::Busy => {}
        Err(failure) => log::error!("IOMMU: not on: {failure}"),
    }
}

/// Which IOMMU unit covers `device`, for the registry: `None` without one.
pub(super) fn coverage(device: &PciDevice) -> Option<String> {
    let dmar = DMAR.get()?.as_ref()?;
    let index = dmar.unit_for(device.requester_id(), acpi::secondary_bus)?;
    Some(alloc::format!("VT-d unit {index} at {:#x}", dmar.units[index].register_base))
}
