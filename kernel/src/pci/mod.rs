//! PCI: configuration mechanism #1, enumeration, BARs, and handing a device's
//! resources to its driver.

#[cfg(target_os = "none")]
mod config;
mod device;
#[cfg(target_os = "none")]
mod dma;
#[cfg(target_os = "none")]
mod enumerate;

pub use device::{Bar, PciDevice};
#[cfg(target_os = "none")]
pub use enumerate::{enable, enumerate};
