//! The DMA platform a PCI function's driver is given: the bare machine, or the
//! machine seen through the function's IOMMU domain when one covers it.

use alloc::collections::BTreeMap;

use spin::Mutex;

use crate::dma::kernel_platform::platform;
use crate::dma::{DmaPlatform, MappedPlatform};

use super::PciDevice;

/// One platform per device behind an IOMMU, made on first use and kept: its
/// commands hold a `'static` reference to it.
static MAPPED: Mutex<BTreeMap<u16, &'static MappedPlatform>> = Mutex::new(BTreeMap::new());

impl PciDevice {
    /// The platform this function's DMA commands and coherent memory must use:
    /// with an IOMMU, commands map through the function's domain; without, they
    /// give the device physical addresses.
    pub fn dma_platform(&self) -> &'static dyn DmaPlatform {
        let id = self.requester_id();
        let mut mapped = MAPPED.lock();
        if let Some(&platform) = mapped.get(&id) {
            return platform;
        }
        match crate::iommu::mapper_for(id) {
            Some(mapper) => {
                let device_platform = MappedPlatform::leak(platform(), mapper);
                mapped.insert(id, device_platform);
                device_platform
            }
            None => platform(),
        }
    }

    /// The function's PCI requester ID: `bus << 8 | device << 3 | function`, the
    /// number IOMMUs use to tell devices apart.
    pub fn requester_id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
}
