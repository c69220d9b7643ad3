//! The DMA platform a PCI function's driver is given: the bare machine, or the
//! machine seen through the function's IOMMU domain when one covers it.

use crate::dma::DmaPlatform;
use crate::dma::kernel_platform::platform;

use super::PciDevice;

impl PciDevice {
    /// The platform this function's DMA commands and coherent memory must use:
    /// with an IOMMU, commands map through the function's domain; without, they
    /// give the device physical addresses.
    pub fn dma_platform(&self) -> &'static dyn DmaPlatform {
        platform()
    }

    /// The function's PCI requester ID: `bus << 8 | device << 3 | function`, the
    /// number IOMMUs use to tell devices apart.
    pub fn requester_id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
}
