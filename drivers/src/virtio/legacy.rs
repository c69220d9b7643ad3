//! The legacy (virtio 0.9.5) transport: one register block in I/O BAR 0
//! (`registers.rs`), what QEMU's transitional virtio-blk-pci (1af4:1001) offers.
//!
//! It differs from the modern transport in three ways the driver sees: 32
//! feature bits and no `FEATURES_OK`; a queue whose size the device fixes; and
//! one queue address, a 32-bit page number, from which the device derives the
//! rings with the legacy layout (so the areas handed in must follow it).

use dmakit::dma::{Cause, IoFailure, IoReturn, VirtioCause};
use dmakit::io::RegisterIo;

use super::queue::QueueLayout;
use super::registers::*;
use super::transport::{Interface, QueueAreas, Transport, config_out_of_range, confirm_reset};

/// Bytes of device-specific configuration in the legacy block.
const DEVICE_CONFIG_BYTES: u16 = REGISTER_BLOCK_SIZE - LEGACY_DEVICE_CONFIG;

/// The legacy register block, through `R` (I/O ports on the machine, a fake
/// device on the host).
pub struct LegacyTransport<R: RegisterIo> {
    registers: R,
}

impl<R: RegisterIo> LegacyTransport<R> {
    /// The transport over the register block `registers`.
    pub fn new(registers: R) -> LegacyTransport<R> {
        LegacyTransport { registers }
    }
}

/// The largest queue the legacy interface allows.
const LEGACY_QUEUE_SIZE_LIMIT: u16 = 32768;

fn refused(cause: VirtioCause) -> IoFailure {
    IoFailure::new(IoReturn::BadArgument, Cause::Virtio(cause))
}

impl<R: RegisterIo> Transport for LegacyTransport<R> {
    fn interface(&self) -> Interface {
        Interface::Legacy
    }

    /// Writes 0, then reads the status back until it is 0, as the modern
    /// transport does: the port write reaching the device says nothing about
    /// whether it stopped (a device, or an emulator, that ignores the write
    /// still holds the queue's address and may keep using the ring and the
    /// buffers). Unconfirmed, the caller treats it as still running.
    fn reset(&self) -> Result<(), IoFailure> {
        self.registers.write8(DEVICE_STATUS, 0);
        confirm_reset(|| self.registers.read8(DEVICE_STATUS))
    }

    fn status(&self) -> u8 {
        self.registers.read8(DEVICE_STATUS)
    }

    fn set_status(&self, status: u8) {
        self.registers.write8(DEVICE_STATUS, status);
    }

    fn device_features(&self) -> u64 {
        u64::from(self.registers.read32(DEVICE_FEATURES))
    }

    /// The register has 32 bits; `Interface::Legacy` accepts none above them.
    fn set_driver_features(&self, features: u64) {
        self.registers.write32(GUEST_FEATURES, features as u32);
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        self.registers.write16(QUEUE_SELECT, queue);
        self.registers.read16(QUEUE_SIZE)
    }

    fn set_up_queue(&self, queue: u16, size: u16, areas: QueueAreas) -> Result<(), IoFailure> {
        let device = self.max_queue_size(queue);
        // The legacy interface's ring arithmetic (free-running 16-bit indices
        // taken modulo the size) holds only for a power of two up to 32768
        // (virtio 1.x, 2.6 and 4.1.5.1.3.1): a device that says otherwise is
        // not believed, as Linux refuses it.
        if !device.is_power_of_two() || device > LEGACY_QUEUE_SIZE_LIMIT {
            return Err(refused(VirtioCause::QueueSizeInvalid { size: device, max: LEGACY_QUEUE_SIZE_LIMIT }));
        }
        if size != device {
            return Err(refused(VirtioCause::LegacyQueueSize { size, device }));
        }
        let base = areas.descriptors.as_u64();
        if areas != QueueLayout::new(size).areas(areas.descriptors) || !base.is_multiple_of(QUEUE_ALIGNMENT) {
            return Err(refused(VirtioCause::LegacyQueueLayout));
        }
        let page = u32::try_from(base / QUEUE_ALIGNMENT)
            .map_err(|_| refused(VirtioCause::LegacyQueueTooHigh { address: base }))?;
        self.registers.write16(QUEUE_SELECT, queue);
        self.registers.write32(QUEUE_ADDRESS, page);
        Ok(())
    }

    fn notify(&self, queue: u16) -> Result<(), IoFailure> {
        self.registers.write16(QUEUE_NOTIFY, queue);
        Ok(())
    }

    fn acknowledge_interrupt(&self) -> u8 {
        self.registers.read8(ISR_STATUS)
    }

    fn config_read32(&self, offset: u16) -> Result<u32, IoFailure> {
        if offset.checked_add(4).is_none_or(|end| end > DEVICE_CONFIG_BYTES) {
            return Err(config_out_of_range(offset, 4, u64::from(DEVICE_CONFIG_BYTES)));
        }
        Ok(self.registers.read32(LEGACY_DEVICE_CONFIG + offset))
    }

    /// Two 32-bit reads, low half first. The legacy interface has no
    /// generation counter; virtio-blk's capacity does not change under us.
    fn config_read64(&self, offset: u16) -> Result<u64, IoFailure> {
        let low = self.config_read32(offset)?;
        let high = self.config_read32(offset + 4)?;
        Ok(u64::from(low) | u64::from(high) << 32)
    }
}
