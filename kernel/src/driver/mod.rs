//! The IOKit-style driver layer: drivers say what they match and how well, the
//! kernel matches them to PCI devices, starts the best, and records everything in
//! a registry tree (`ioreg`).

#[cfg(target_os = "none")]
mod attach;
#[cfg(target_os = "none")]
mod iommu_setup;
mod registry;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::dma::IoFailure;
use crate::pci::PciDevice;

#[cfg(target_os = "none")]
pub use attach::attach;
pub use registry::{Node, block_devices, disks_of_function, find_block_device, print_registry, registry_lines};

/// What a driver matches (IOKit's "personality").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// A vendor and device ID pair.
    Device {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// A class and subclass.
    Class {
        /// Base class.
        class: u8,
        /// Subclass.
        subclass: u8,
    },
}

impl Match {
    /// Whether `device` fits this match.
    pub fn fits(&self, device: &PciDevice) -> bool {
        match *self {
            Match::Device { vendor, device: id } => device.vendor_id == vendor && device.device_id == id,
            Match::Class { class, subclass } => device.class == class && device.subclass == subclass,
        }
    }
}

/// What a started driver publishes.
pub struct DriverInstance {
    /// Disks, in the driver's order (by channel, by queue...).
    pub disks: Vec<Arc<dyn BlockDevice>>,
    /// Facts for the registry (negotiated features, IRQ, ...).
    pub properties: Vec<(String, String)>,
}

/// A driver for PCI devices.
pub trait Driver: Sync {
    /// The driver's class name in the registry, e.g. "VirtioBlock".
    fn name(&self) -> &'static str;
    /// Prefix of its disks' names: "vd" gives vda, vdb, ...
    fn disk_prefix(&self) -> &'static str;
    /// The name of its disk number `index` (from 0, counted per prefix):
    /// the prefix and a letter, unless the driver has a convention of its own.
    fn disk_name(&self, index: u8) -> String {
        alloc::format!("{}{}", self.disk_prefix(), char::from(b'a' + index))
    }
    /// What it matches.
    fn matches(&self) -> &'static [Match];
    /// How well it fits a matching device (0 declines; higher wins).
    fn probe(&self, device: &PciDevice) -> u32;
    /// Takes the device over; a failure says its cause, which the registry
    /// shows as the driver's `start-error`.
    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure>;
}
