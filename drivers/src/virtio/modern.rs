//! The modern (virtio 1.0) PCI transport: four register structures that vendor
//! capabilities place in memory BARs (virtio 1.0 section 4.1.4), each reached
//! through its own `RegisterIo` window.
//!
//! ```text
//! common configuration   features (64 bits, through select registers), device
//!                        status, queue select/size/enable, 64-bit queue addresses
//! notify                 queue q is notified at queue_notify_off(q) * notify_off_multiplier
//! ISR                    one byte; reading it acknowledges the interrupt
//! device configuration   virtio-blk: capacity, seg_max, ...
//! ```
//!
//! Only a modern device can be told to do its DMA through the IOMMU: QEMU
//! routes a virtio device's accesses through the IOMMU only with
//! `iommu_platform=on`, which it allows only with `disable-legacy=on`, and the
//! driver must accept `VIRTIO_F_ACCESS_PLATFORM` (feature bit 33, beyond what
//! the legacy interface's 32 feature bits can say).

use core::mem::{offset_of, size_of};

use alloc::vec::Vec;
use dmakit::dma::{Cause, IoFailure, IoReturn, VirtioCause};
use dmakit::io::RegisterIo;
use spin::Mutex;

use super::transport::{Interface, QueueAreas, Transport, config_out_of_range, confirm_reset};

/// `struct virtio_pci_common_cfg` (virtio 1.0 section 4.1.4.3). The driver
/// never reads it as memory: the struct gives the register offsets, so they
/// cannot drift from the layout the specification draws.
#[repr(C)]
pub struct CommonConfiguration {
    /// Which half of the device features `device_feature` shows (0 or 1).
    pub device_feature_select: u32,
    /// 32 bits of the device's features.
    pub device_feature: u32,
    /// Which half of the driver features `driver_feature` takes.
    pub driver_feature_select: u32,
    /// 32 bits of the driver's features.
    pub driver_feature: u32,
    /// MSI-X vector for configuration changes (unused: INTx).
    pub msix_config: u16,
    /// Queues the device has.
    pub num_queues: u16,
    /// The device status byte; 0 resets.
    pub device_status: u8,
    /// Changes whenever the device configuration changes.
    pub config_generation: u8,
    /// The queue the fields below refer to.
    pub queue_select: u16,
    /// Its size: the maximum on reading after reset; the driver may lower it.
    pub queue_size: u16,
    /// Its MSI-X vector (unused).
    pub queue_msix_vector: u16,
    /// 1 once the driver has set it up.
    pub queue_enable: u16,
    /// Its notify offset, in units of `notify_off_multiplier`.
    pub queue_notify_off: u16,
    /// Descriptor table address.
    pub queue_desc: u64,
    /// Driver area (available ring) address.
    pub queue_driver: u64,
    /// Device area (used ring) address.
    pub queue_device: u64,
}
const _: () = assert!(size_of::<CommonConfiguration>() == 0x38);
const _: () = assert!(offset_of!(CommonConfiguration, queue_desc) == 0x20);

/// The register offset of a common-configuration field.
macro_rules! common {
    ($field:ident) => {
        offset_of!(CommonConfiguration, $field) as u16
    };
}

/// Bytes of the common configuration the driver uses.
pub const COMMON_BYTES: u32 = size_of::<CommonConfiguration>() as u32;
/// How often the device configuration is re-read when its generation changes
/// during a multi-word read before the driver gives up.
const GENERATION_RETRIES: usize = 8;

/// One register structure: its registers and its length in bytes (from the
/// capability, cut to what was mapped).
pub struct Structure<R: RegisterIo> {
    /// The structure's registers, offset 0 at its start.
    pub registers: R,
    /// Its bytes.
    pub length: u32,
}

/// The four structures a modern device has, as its capabilities locate them.
pub struct ModernRegisters<R: RegisterIo> {
    /// Common configuration.
    pub common: Structure<R>,
    /// The notify area.
    pub notify: Structure<R>,
    /// The notify capability's `notify_off_multiplier`.
    pub notify_off_multiplier: u32,
    /// The ISR byte.
    pub isr: Structure<R>,
    /// The device-specific configuration.
    pub device: Structure<R>,
}

/// The byte offset in the notify structure where queue `queue_notify_off`
/// is notified: `queue_notify_off * notify_off_multiplier`, which must leave
/// room for the 16-bit write inside the `notify_length` bytes of the structure.
pub fn notify_offset(queue_notify_off: u16, multiplier: u32, notify_length: u32) -> Result<u16, IoFailure> {
    let offset = u64::from(queue_notify_off) * u64::from(multiplier);
    if offset + 2 > u64::from(notify_length) {
        let cause = Cause::OutOfRange { offset, length: 2, size: u64::from(notify_length) };
        return Err(IoFailure::new(IoReturn::IoError, cause));
    }
    // The structure's registers are reached with 16-bit offsets, so a
    // structure (and any offset inside it) is at most 64 KiB.
    u16::try_from(offset).map_err(|_| {
        IoFailure::new(IoReturn::IoError, Cause::OutOfRange { offset, length: 2, size: u64::from(u16::MAX) + 1 })
    })
}

/// A modern virtio-PCI device through its four structures.
pub struct ModernTransport<R: RegisterIo> {
    registers: ModernRegisters<R>,
    /// `(queue, byte offset in the notify structure)` of every queue set up.
    notify_offsets: Mutex<Vec<(u16, u16)>>,
}

fn too_short(what: &'static str) -> IoFailure {
    IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::StructureTooShort(what)))
}

impl<R: RegisterIo> ModernTransport<R> {
    /// The transport over `registers`, once each structure is long enough for
    /// what the driver reads there (`IoError` naming the one that is not).
    pub fn new(registers: ModernRegisters<R>) -> Result<ModernTransport<R>, IoFailure> {
        if registers.common.length < COMMON_BYTES {
            return Err(too_short("common configuration (0x38 bytes)"));
        }
        if registers.isr.length < 1 {
            return Err(too_short("ISR"));
        }
        if registers.notify.length < 2 {
            return Err(too_short("notify"));
        }
        Ok(ModernTransport { registers, notify_offsets: Mutex::new(Vec::new()) })
    }

    fn common(&self) -> &R {
        &self.registers.common.registers
    }

    /// A 64-bit common-configuration field as two 32-bit writes, low half
    /// first: virtio 1.0 (4.1.3.1) lets the driver access the halves
    /// separately, and not every device takes one 64-bit access.
    fn write_common64(&self, offset: u16, value: u64) {
        self.common().write32(offset, value as u32);
        self.common().write32(offset + 4, (value >> 32) as u32);
    }
}

impl<R: RegisterIo> Transport for ModernTransport<R> {
    fn interface(&self) -> Interface {
        Interface::Modern
    }

    /// Writes 0, then reads the status back until it is 0: a modern device
    /// may take time to reset, and has finished only when it reads 0.
    fn reset(&self) -> Result<(), IoFailure> {
        self.common().write8(common!(device_status), 0);
        confirm_reset(|| self.common().read8(common!(device_status)))
    }

    fn status(&self) -> u8 {
        self.common().read8(common!(device_status))
    }

    fn set_status(&self, status: u8) {
        self.common().write8(common!(device_status), status);
    }

    fn device_features(&self) -> u64 {
        let half = |select: u32| {
            self.common().write32(common!(device_feature_select), select);
            u64::from(self.common().read32(common!(device_feature)))
        };
        half(0) | half(1) << 32
    }

    fn set_driver_features(&self, features: u64) {
        for (select, half) in [(0, features as u32), (1, (features >> 32) as u32)] {
            self.common().write32(common!(driver_feature_select), select);
            self.common().write32(common!(driver_feature), half);
        }
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        self.common().write16(common!(queue_select), queue);
        self.common().read16(common!(queue_size))
    }

    /// Writes the size (which may be below the maximum), the three addresses
    /// and the notify offset's check, then enables the queue: the device uses
    /// nothing before `queue_enable` is 1.
    fn set_up_queue(&self, queue: u16, size: u16, areas: QueueAreas) -> Result<(), IoFailure> {
        let max = self.max_queue_size(queue);
        if size == 0 || size > max || !size.is_power_of_two() {
            return Err(IoFailure::new(
                IoReturn::BadArgument,
                Cause::Virtio(VirtioCause::QueueSizeInvalid { size, max }),
            ));
        }
        let notify = notify_offset(
            self.common().read16(common!(queue_notify_off)),
            self.registers.notify_off_multiplier,
            self.registers.notify.length,
        )?;
        self.common().write16(common!(queue_size), size);
        self.write_common64(common!(queue_desc), areas.descriptors.as_u64());
        self.write_common64(common!(queue_driver), areas.driver.as_u64());
        self.write_common64(common!(queue_device), areas.device.as_u64());
        {
            let mut offsets = self.notify_offsets.lock();
            offsets.retain(|&(known, _)| known != queue);
            offsets.push((queue, notify));
        }
        self.common().write16(common!(queue_enable), 1);
        Ok(())
    }

    fn notify(&self, queue: u16) -> Result<(), IoFailure> {
        let offsets = self.notify_offsets.lock();
        let Some(&(_, offset)) = offsets.iter().find(|&&(known, _)| known == queue) else {
            let cause = Cause::Virtio(VirtioCause::QueueNotSetUp { queue });
            return Err(IoFailure::new(IoReturn::NotReady, cause));
        };
        self.registers.notify.registers.write16(offset, queue);
        Ok(())
    }

    fn acknowledge_interrupt(&self) -> u8 {
        self.registers.isr.registers.read8(0)
    }

    fn config_read32(&self, offset: u16) -> Result<u32, IoFailure> {
        let length = self.registers.device.length;
        if u32::from(offset) + 4 > length {
            return Err(config_out_of_range(offset, 4, u64::from(length)));
        }
        Ok(self.registers.device.registers.read32(offset))
    }

    /// The two halves, read again while `config_generation` changed between
    /// them (the device updated the field mid-read).
    fn config_read64(&self, offset: u16) -> Result<u64, IoFailure> {
        for _ in 0..GENERATION_RETRIES {
            let before = self.common().read8(common!(config_generation));
            let low = self.config_read32(offset)?;
            let high_offset = offset.checked_add(4).ok_or_else(|| config_out_of_range(offset, 8, 1 << 16))?;
            let high = self.config_read32(high_offset)?;
            if self.common().read8(common!(config_generation)) == before {
                return Ok(u64::from(low) | u64::from(high) << 32);
            }
        }
        let cause = Cause::Virtio(VirtioCause::ConfigurationUnstable);
        Err(IoFailure::new(IoReturn::IoError, cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notify_offset_is_queue_notify_off_times_the_multiplier() {
        assert_eq!(notify_offset(0, 4, 0x1000).unwrap(), 0);
        assert_eq!(notify_offset(3, 4, 0x1000).unwrap(), 12);
        assert_eq!(notify_offset(7, 0, 2).unwrap(), 0, "multiplier 0: every queue shares one address");
        assert_eq!(notify_offset(0x3ff, 4, 0x1000).unwrap(), 0xffc, "the last place a 16-bit write fits");
        let outside = notify_offset(0x400, 4, 0x1000).unwrap_err();
        assert_eq!(
            outside,
            IoFailure::new(IoReturn::IoError, Cause::OutOfRange { offset: 0x1000, length: 2, size: 0x1000 })
        );
        let huge = notify_offset(u16::MAX, u32::MAX, u32::MAX).unwrap_err();
        assert_eq!(huge.code(), IoReturn::IoError, "no overflow, and past what 16-bit offsets reach");
    }
}
