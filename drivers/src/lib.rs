//! dmakit's device drivers. Drivers use the kernel's safe abstractions for ports,
//! MMIO and DMA memory and never `unsafe` themselves. The PCI, virtio-blk and ATA
//! drivers arrive with the drivers issue.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
