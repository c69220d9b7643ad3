//! The kernel's VT-d units and the devices' domains: brought up from the DMAR
//! table at boot ([`init`]), a domain made for each device on first use
//! ([`mapper_for`]), and the report the shell's `iommu` command prints.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::domain::{DomainMode, VtdDomain};
use super::experiment::Experiment;
use super::scope::{UnitDescription, covering_unit};
use super::unit::Unit;
use crate::dma::kernel_platform::platform;
use crate::dma::{Cause, IoFailure, IoMapper, IoReturn, IommuCause};
use crate::io::MmioRange;

struct Registry {
    /// The units that are on, with their descriptions (same order).
    units: Vec<Arc<Unit<MmioRange>>>,
    descriptions: Vec<UnitDescription>,
    /// Requester id -> its domain.
    domains: BTreeMap<u16, Arc<VtdDomain<MmioRange>>>,
    initialized: bool,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { units: Vec::new(), descriptions: Vec::new(), domains: BTreeMap::new(), initialized: false });

/// Brings every unit up and turns translation on; returns how many are on.
/// A unit that fails is logged and left off (its devices are not
/// translated); the call fails only if units were described and none came
/// on, or if it was made before.
///
/// After this, a device behind a unit that has no domain yet faults on every
/// DMA: call [`mapper_for`] for each before its driver starts.
pub fn init(units: &[UnitDescription]) -> Result<usize, IoFailure> {
    let mut registry = REGISTRY.lock();
    if registry.initialized {
        return Err(IoFailure::new(IoReturn::Busy, Cause::Iommu(IommuCause::AlreadyInitialized)));
    }
    registry.initialized = true;
    let mut first_failure = None;
    for (number, description) in units.iter().enumerate() {
        // SAFETY: the DMAR table names this page as a remapping unit's
        // registers, which only this driver touches.
        let started = unsafe { crate::io::map_mmio(description.register_base, 0x1000) }
            .map_err(|code| {
                IoFailure::new(code, Cause::RegistersNotMapped { physical: description.register_base, size: 0x1000 })
            })
            .and_then(|registers| Unit::start(number, description.register_base, registers, platform()));
        match started {
            Ok(unit) => {
                log::info!("{}", unit.summary());
                log::info!("  {}", unit.capability());
                log::info!("  {}", unit.extended_capability());
                registry.units.push(unit);
                registry.descriptions.push(description.clone());
            }
            Err(failure) => {
                log::error!("VT-d unit {number} at {:#x}: not on: {failure}", description.register_base);
                first_failure.get_or_insert(failure);
            }
        }
    }
    match first_failure {
        Some(failure) if registry.units.is_empty() => Err(failure),
        _ => Ok(registry.units.len()),
    }
}

fn domain(registry: &mut Registry, requester_id: u16) -> Option<Arc<VtdDomain<MmioRange>>> {
    if let Some(domain) = registry.domains.get(&requester_id) {
        return Some(Arc::clone(domain));
    }
    let unit = &registry.units[covering_unit(&registry.descriptions, requester_id)?];
    match unit.attach(requester_id) {
        Ok(domain) => {
            registry.domains.insert(requester_id, Arc::clone(&domain));
            Some(domain)
        }
        Err(failure) => {
            log::error!("VT-d: no domain for device {requester_id:#06x}: {failure}");
            None
        }
    }
}

/// The domain of device `requester_id`, made on the first call; `None` if no
/// unit that is on covers the device (or its domain could not be made).
pub fn mapper_for(requester_id: u16) -> Option<Arc<dyn IoMapper>> {
    let domain = domain(&mut REGISTRY.lock(), requester_id)?;
    Some(domain)
}

fn not_covered() -> IoFailure {
    IoFailure::new(IoReturn::NotReady, Cause::Iommu(IommuCause::DeviceNotCovered))
}

/// Switches the device's domain to pass-through (context entry TT = 10,
/// needs ECAP.PT) or back to translation. The domain must have no pages mapped.
pub fn set_passthrough(requester_id: u16, on: bool) -> Result<(), IoFailure> {
    let domain = domain(&mut REGISTRY.lock(), requester_id).ok_or_else(not_covered)?;
    domain.set_passthrough(on)
}

/// Arms `experiment` for the device's next transfer.
pub fn set_experiment(requester_id: u16, experiment: Experiment) -> Result<(), IoFailure> {
    let domain = domain(&mut REGISTRY.lock(), requester_id).ok_or_else(not_covered)?;
    domain.set_experiment(experiment);
    Ok(())
}

/// The device's domain, if one exists already (none is made for asking).
fn existing(requester_id: u16) -> Result<Arc<VtdDomain<MmioRange>>, IoFailure> {
    REGISTRY.lock().domains.get(&requester_id).cloned().ok_or_else(not_covered)
}

/// Disarms the device's skipped invalidation if no unmap reached it; returns
/// whether it was still armed.
pub fn disarm_skip_invalidation(requester_id: u16) -> Result<bool, IoFailure> {
    Ok(existing(requester_id)?.disarm_skip_invalidation())
}

/// IOVA pages of the device an experiment unmapped without invalidation.
pub fn stale_pages(requester_id: u16) -> Result<u64, IoFailure> {
    Ok(existing(requester_id)?.stale_pages())
}

/// Invalidates for real what an experiment left stale in the device's domain
/// ([`VtdDomain::invalidate_stale`]); returns how many pages.
pub fn invalidate_stale(requester_id: u16) -> Result<u64, IoFailure> {
    existing(requester_id)?.invalidate_stale()
}

/// Pages mapped now, over every domain (tests check that transfers leave none).
pub fn live_mappings() -> usize {
    REGISTRY.lock().domains.values().map(|domain| domain.mapped_pages()).sum()
}

/// Lines for the shell's `iommu` command: each unit with its capabilities,
/// its domains and its faults.
pub fn report() -> Vec<String> {
    let registry = REGISTRY.lock();
    let mut lines = Vec::new();
    if registry.units.is_empty() {
        lines.push(String::from("no VT-d unit is on (no DMAR table, or not q35 with -device intel-iommu)"));
    }
    for (unit, description) in registry.units.iter().zip(&registry.descriptions) {
        lines.push(unit.summary());
        lines.push(format!("  {}", unit.capability()));
        lines.push(format!("  {}", unit.extended_capability()));
        lines.push(format!(
            "  scope: {}{} device(s) listed",
            if description.include_all { "every device no other unit lists, and " } else { "" },
            description.devices.len()
        ));
        for domain in registry.domains.values().filter(|domain| Arc::ptr_eq(domain.unit(), unit)) {
            let source = domain.source();
            lines.push(format!(
                "  domain {}: device {:02x}:{:02x}.{}, {}-level, {}, {} page(s) mapped, {} IOVA pages free, {} quarantined, {} table page(s)",
                domain.id(),
                source >> 8,
                (source >> 3) & 0x1f,
                source & 7,
                domain.levels(),
                match domain.mode() {
                    DomainMode::Translated => "translated",
                    DomainMode::PassThrough => "pass-through",
                },
                domain.mapped_pages(),
                domain.free_iova_pages(),
                domain.quarantined_pages(),
                domain.table_pages(),
            ));
            for (iova, pages, physical, identity) in domain.live_ranges() {
                let target = match physical {
                    Some(physical) => format!("-> physical {:#x}", physical.as_u64()),
                    None => String::from("-> nothing (unmapped early by an experiment)"),
                };
                let what = if identity { " (coherent memory, IOVA = physical)" } else { "" };
                lines.push(format!("    IOVA {iova:#x} + {pages} page(s) {target}{what}"));
            }
        }
        lines.extend(unit.fault_report().into_iter().map(|line| format!("  {line}")));
    }
    lines
}
