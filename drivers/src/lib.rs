//! dmakit's device drivers: virtio-blk, PIIX ATA bus-master DMA, AHCI with NCQ,
//! NVMe and virtio-net.
//!
//! Drivers use the kernel's safe abstractions (register access, DMA commands,
//! waiting) and never `unsafe`. Each driver core is generic over its registers,
//! so the host tests run it against a fake device that moves data only through
//! the DMA segments it is given.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ahci;
pub mod ata;
pub mod nvme;
#[cfg(test)]
mod test_support;
pub mod virtio;
pub mod window;

/// Every driver dmakit has, for the kernel's matching.
#[cfg(target_os = "none")]
pub fn all() -> [&'static dyn dmakit::driver::Driver; 5] {
    [&virtio::VirtioBlockDriver, &ata::PiixAtaDriver, &ahci::AhciDriver, &nvme::NvmeDriver, &virtio::VirtioNetDriver]
}
