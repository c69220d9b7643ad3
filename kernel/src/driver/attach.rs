//! Matching drivers to the PCI devices found, starting them, and filling the registry.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use super::registry::{BLOCK_DEVICES, REGISTRY};
use super::{Driver, Node};
use crate::pci::{self, PciDevice};

/// Enumerates PCI, starts the best-scoring driver for each device and records
/// the result. A device without a driver stays listed; a driver that fails to
/// start is reported in the registry and in the log, and boot goes on.
pub fn attach(drivers: &[&'static dyn Driver]) {
    let mut bus = Node::new("pci0", "PciBus");
    let mut counters: Vec<(&'static str, u8)> = Vec::new();
    let devices = pci::enumerate();
    super::iommu_setup::bring_up(&devices);
    for device in devices {
        let mut node = device_node(&device);
        let best = drivers
            .iter()
            .filter(|driver| driver.matches().iter().any(|m| m.fits(&device)))
            .map(|driver| (driver.probe(&device), *driver))
            .filter(|(score, _)| *score > 0)
            .max_by_key(|(score, _)| *score);
        if let Some((score, driver)) = best {
            pci::enable(&device);
            let mut driver_node = Node::new(driver.name(), "Driver");
            driver_node.properties.push(("probe-score".to_string(), score.to_string()));
            match driver.start(&device) {
                Ok(instance) => {
                    driver_node.properties.extend(instance.properties);
                    for disk in instance.disks {
                        let name = driver.disk_name(next_index(&mut counters, driver.disk_prefix()));
                        let mut disk_node = Node::new(name.clone(), "BlockDevice");
                        let bytes = disk.block_count() * u64::from(disk.block_size());
                        disk_node.properties.push(("size".to_string(), format!("{} KiB", bytes / 1024)));
                        disk_node.properties.push(("block-size".to_string(), disk.block_size().to_string()));
                        disk_node.properties.push(("model".to_string(), disk.description()));
                        driver_node.children.push(disk_node);
                        BLOCK_DEVICES.lock().push((name, disk));
                    }
                }
                Err(error) => {
                    log::warn!("{} failed to start on {}: {error}", driver.name(), device.location());
                    driver_node.properties.push(("start-error".to_string(), error.to_string()));
                }
            }
            node.children.push(driver_node);
        }
        bus.children.push(node);
    }
    let mut root = Node::new("dmakit", "Root");
    root.children.push(bus);
    *REGISTRY.lock() = Some(root);
}

/// The next disk number of `prefix` (from 0).
fn next_index(counters: &mut Vec<(&'static str, u8)>, prefix: &'static str) -> u8 {
    match counters.iter_mut().find(|(p, _)| *p == prefix) {
        Some((_, count)) => {
            *count += 1;
            *count - 1
        }
        None => {
            counters.push((prefix, 1));
            0
        }
    }
}

fn device_node(device: &PciDevice) -> Node {
    let name = format!("{} {:04x}:{:04x}", device.location(), device.vendor_id, device.device_id);
    let mut node = Node::new(name, "PciDevice");
    node.properties.push(("kind".to_string(), device.class_name().to_string()));
    node.properties
        .push(("class".to_string(), format!("{:02x}{:02x}{:02x}", device.class, device.subclass, device.interface)));
    for (slot, bar) in device.bars.iter().enumerate() {
        if let Some(bar) = bar {
            node.properties.push((format!("bar{slot}"), bar.to_string()));
        }
    }
    if let Some(unit) = super::iommu_setup::coverage(device) {
        node.properties.push(("iommu".to_string(), unit));
    }
    if let Some(line) = device.interrupt_line {
        node.properties.push(("irq".to_string(), line.to_string()));
    }
    node
}
