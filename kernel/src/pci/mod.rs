//! PCI: configuration mechanism #1, enumeration, BARs, and handing a device's
//! resources to its driver.

mod capability;
#[cfg(target_os = "none")]
mod config;
mod device;
#[cfg(target_os = "none")]
mod dma;
#[cfg(target_os = "none")]
mod enumerate;
mod memory_bar;

pub use capability::{
    CAPABILITY_POINTER, Capability, VENDOR_SPECIFIC, VIRTIO_CAPABILITY_BYTES, VirtioCapability, VirtioStructure,
};
#[cfg(target_os = "none")]
pub(crate) use config::secondary_bus;
pub use device::{Bar, PciDevice};
#[cfg(target_os = "none")]
pub use enumerate::{enable, enumerate};
