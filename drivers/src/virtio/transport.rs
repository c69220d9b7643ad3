//! What the virtio drivers (virtio-blk, virtio-net) need from a virtio transport, and the choices
//! that depend on which one it is: the features to accept, where the queue may
//! lie, and which DMA platform the device's memory goes through.
//!
//! Two transports implement [`Transport`]: [`super::legacy::LegacyTransport`]
//! (virtio 0.9.5, one I/O register block) and [`super::modern::ModernTransport`]
//! (virtio 1.0, four structures in memory BARs). The block driver is generic
//! over the trait, so it runs on either, and on the host against fakes of both.

use alloc::boxed::Box;

use dmakit::dma::{Cause, DmaAddr, DmaPlatform, IoFailure, IoReturn, VirtioCause};

use super::registers::{FEATURE_ACCESS_PLATFORM, FEATURE_VERSION_1};

/// Which virtio PCI interface a transport speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// Virtio 0.9.5 ("legacy"): I/O BAR 0, 32 feature bits, one contiguous
    /// queue given as a 32-bit page number, its size fixed by the device.
    Legacy,
    /// Virtio 1.0 ("modern"): structures in memory BARs found through vendor
    /// capabilities, 64 feature bits with a `FEATURES_OK` handshake, three
    /// 64-bit queue addresses, a queue size the driver may lower.
    Modern,
}

/// The most queue entries the driver asks a modern device for: 256 entries
/// (12 KiB of ring, QEMU's default) make 32 slots of 8 descriptors, 32
/// requests in flight (see `block.rs`).
pub const QUEUE_SIZE_LIMIT: u16 = 256;

impl Interface {
    /// How the registry and descriptions name it.
    pub fn name(self) -> &'static str {
        match self {
            Interface::Legacy => "legacy virtio-PCI (I/O BAR 0)",
            Interface::Modern => "modern virtio-PCI 1.0 (memory BAR)",
        }
    }

    /// Address bits the queue's memory may use: the legacy interface takes the
    /// queue's page number in a 32-bit register (so 32 + 12 bits), the modern
    /// one three 64-bit addresses.
    pub fn queue_address_bits(self) -> u8 {
        match self {
            Interface::Legacy => 44,
            Interface::Modern => 64,
        }
    }

    /// The queue size to use when the device says at most `max`: a legacy
    /// device's size is fixed; a modern driver may write a smaller one, and
    /// takes no more than [`QUEUE_SIZE_LIMIT`].
    pub fn queue_size(self, max: u16) -> u16 {
        match self {
            Interface::Legacy => max,
            Interface::Modern => max.min(QUEUE_SIZE_LIMIT),
        }
    }

    /// Features a driver accepts when the device offers them: the device
    /// type's own (`device_features`: virtio-blk's `SEG_MAX`, virtio-net's
    /// `MAC`, ...), and on the modern interface `VERSION_1` and
    /// `ACCESS_PLATFORM`.
    pub fn acceptable_features(self, device_features: u64) -> u64 {
        match self {
            Interface::Legacy => device_features,
            Interface::Modern => device_features | FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM,
        }
    }

    /// The features to accept from `offered` for a device type whose own are
    /// `device_features`. A modern device that does not offer `VERSION_1` is
    /// not a virtio 1.0 device: refused.
    pub fn negotiate(self, offered: u64, device_features: u64) -> Result<u64, IoFailure> {
        if self == Interface::Modern && offered & FEATURE_VERSION_1 == 0 {
            let cause = Cause::Virtio(VirtioCause::NoVersion1);
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        Ok(offered & self.acceptable_features(device_features))
    }
}

/// Where the three parts of a split virtqueue lie, as device addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAreas {
    /// The descriptor table.
    pub descriptors: DmaAddr,
    /// The driver area (available ring).
    pub driver: DmaAddr,
    /// The device area (used ring).
    pub device: DmaAddr,
}

/// The two platforms a virtio function's memory may go through; which one is
/// right depends on the negotiated features ([`DmaRoute::choose`]).
#[derive(Clone, Copy)]
pub struct DmaPlatforms {
    /// The bare machine: the device gets physical addresses
    /// (`dmakit::dma::kernel_platform::platform()`).
    pub physical: &'static dyn DmaPlatform,
    /// The function's own platform (`PciDevice::dma_platform()`): through its
    /// IOMMU domain when one covers it.
    pub function: &'static dyn DmaPlatform,
}

/// How a virtio device reaches memory: the one place that decides which
/// platform its DMA commands and its queue use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaRoute {
    /// `ACCESS_PLATFORM` negotiated: the device's accesses go through the
    /// platform, so it gets addresses the function's platform hands out (IOVAs
    /// when an IOMMU covers it).
    Platform,
    /// The legacy interface: QEMU's legacy virtio uses physical addresses and
    /// bypasses any IOMMU.
    PhysicalLegacy,
    /// A modern device without `ACCESS_PLATFORM`: it too bypasses any IOMMU
    /// and uses physical addresses.
    PhysicalNoAccessPlatform,
}

impl DmaRoute {
    /// The route for a device on `interface` that accepted `features`.
    pub fn choose(interface: Interface, accepted: u64) -> DmaRoute {
        match interface {
            Interface::Legacy => DmaRoute::PhysicalLegacy,
            Interface::Modern if accepted & FEATURE_ACCESS_PLATFORM != 0 => DmaRoute::Platform,
            Interface::Modern => DmaRoute::PhysicalNoAccessPlatform,
        }
    }

    /// The platform the driver must allocate and map through.
    pub fn platform(self, platforms: &DmaPlatforms) -> &'static dyn DmaPlatform {
        match self {
            DmaRoute::Platform => platforms.function,
            DmaRoute::PhysicalLegacy | DmaRoute::PhysicalNoAccessPlatform => platforms.physical,
        }
    }

    /// What the registry shows, given the platform chosen: whether an IOMMU
    /// really translates, and why not when it does not.
    pub fn description(self, platform: &dyn DmaPlatform) -> &'static str {
        match self {
            DmaRoute::Platform if platform.mapper().is_some() => "through the IOMMU (ACCESS_PLATFORM)",
            DmaRoute::Platform => "physical addresses (ACCESS_PLATFORM, but no IOMMU covers the device)",
            DmaRoute::PhysicalLegacy => "physical addresses (legacy virtio bypasses the IOMMU)",
            DmaRoute::PhysicalNoAccessPlatform => {
                "physical addresses (no ACCESS_PLATFORM: the device bypasses the IOMMU)"
            }
        }
    }
}

/// A virtio transport: the device's common registers as the block driver uses
/// them. Queue-related calls name the queue; virtio-blk uses queue 0.
pub trait Transport: Send + Sync {
    /// Which interface this is.
    fn interface(&self) -> Interface;
    /// Resets the device (device status 0): it forgets its features, queues
    /// and every address it was given. `Err` if the device does not confirm
    /// the reset; then it may still use that memory, which must not be freed.
    fn reset(&self) -> Result<(), IoFailure>;
    /// The device status byte.
    fn status(&self) -> u8;
    /// Writes the device status byte (never 0: that is [`Transport::reset`]).
    fn set_status(&self, status: u8);
    /// The features the device offers (legacy: the low 32 bits only).
    fn device_features(&self) -> u64;
    /// Writes the features the driver accepts.
    fn set_driver_features(&self, features: u64);
    /// Entries of queue `queue` the device allows (0: no such queue).
    fn max_queue_size(&self, queue: u16) -> u16;
    /// Gives queue `queue`, of `size` entries, to the device at `areas`, and
    /// enables it. Refused (`BadArgument`, with the reason) when the interface
    /// cannot take that size or those addresses.
    fn set_up_queue(&self, queue: u16, size: u16, areas: QueueAreas) -> Result<(), IoFailure>;
    /// Tells the device queue `queue` has new buffers. `NotReady` for a queue
    /// that was not set up.
    fn notify(&self, queue: u16) -> Result<(), IoFailure>;
    /// Reads the interrupt status, which acknowledges it (bit 0: a queue
    /// interrupt; bit 1: a configuration change).
    fn acknowledge_interrupt(&self) -> u8;
    /// A 32-bit field of the device-specific configuration, at `offset` from
    /// its start. `IoError` with `OutOfRange` past the configuration's end.
    fn config_read32(&self, offset: u16) -> Result<u32, IoFailure>;
    /// A 64-bit field of the device-specific configuration, read as two
    /// consistent 32-bit halves.
    fn config_read64(&self, offset: u16) -> Result<u64, IoFailure>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn interface(&self) -> Interface {
        (**self).interface()
    }
    fn reset(&self) -> Result<(), IoFailure> {
        (**self).reset()
    }
    fn status(&self) -> u8 {
        (**self).status()
    }
    fn set_status(&self, status: u8) {
        (**self).set_status(status)
    }
    fn device_features(&self) -> u64 {
        (**self).device_features()
    }
    fn set_driver_features(&self, features: u64) {
        (**self).set_driver_features(features)
    }
    fn max_queue_size(&self, queue: u16) -> u16 {
        (**self).max_queue_size(queue)
    }
    fn set_up_queue(&self, queue: u16, size: u16, areas: QueueAreas) -> Result<(), IoFailure> {
        (**self).set_up_queue(queue, size, areas)
    }
    fn notify(&self, queue: u16) -> Result<(), IoFailure> {
        (**self).notify(queue)
    }
    fn acknowledge_interrupt(&self) -> u8 {
        (**self).acknowledge_interrupt()
    }
    fn config_read32(&self, offset: u16) -> Result<u32, IoFailure> {
        (**self).config_read32(offset)
    }
    fn config_read64(&self, offset: u16) -> Result<u64, IoFailure> {
        (**self).config_read64(offset)
    }
}

/// How often the status is read back after a reset before the driver decides
/// the device did not reset (QEMU resets inside the write, on either interface).
const RESET_POLLS: usize = 1000;

/// Reads the device status through `read_status` until it is 0, at most
/// [`RESET_POLLS`] times: only a 0 read back says the device finished its
/// reset and forgot the queues (virtio 1.x, 2.1.2; the same register on the
/// legacy interface). `Timeout` with `ResetNotConfirmed` otherwise: the device
/// may still be running, so its memory must not be freed.
pub(super) fn confirm_reset(read_status: impl Fn() -> u8) -> Result<(), IoFailure> {
    if (0..RESET_POLLS).any(|_| read_status() == 0) {
        return Ok(());
    }
    Err(IoFailure::new(IoReturn::Timeout, Cause::Virtio(VirtioCause::ResetNotConfirmed)))
}

/// `IoError` for a device-configuration access past the `size` bytes the
/// device has.
pub(super) fn config_out_of_range(offset: u16, length: u64, size: u64) -> IoFailure {
    IoFailure::new(IoReturn::IoError, Cause::OutOfRange { offset: u64::from(offset), length, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::registers::{BLOCK_FEATURES, FEATURE_SEG_MAX};

    #[test]
    fn modern_negotiation_needs_version_1_and_keeps_access_platform() {
        let offered = FEATURE_SEG_MAX | FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM | 1 << 28 | 1 << 34;
        let accepted = Interface::Modern.negotiate(offered, BLOCK_FEATURES).unwrap();
        assert_eq!(accepted, FEATURE_SEG_MAX | FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM);
        assert_eq!(DmaRoute::choose(Interface::Modern, accepted), DmaRoute::Platform);
        let plain = Interface::Modern.negotiate(FEATURE_VERSION_1, BLOCK_FEATURES).unwrap();
        assert_eq!(DmaRoute::choose(Interface::Modern, plain), DmaRoute::PhysicalNoAccessPlatform);
        let refused = Interface::Modern.negotiate(FEATURE_SEG_MAX, BLOCK_FEATURES).unwrap_err();
        assert_eq!(refused.code(), IoReturn::IoError);
        assert_eq!(Interface::Legacy.negotiate(offered & 0xffff_ffff, BLOCK_FEATURES).unwrap(), FEATURE_SEG_MAX);
        assert_eq!(DmaRoute::choose(Interface::Legacy, FEATURE_ACCESS_PLATFORM), DmaRoute::PhysicalLegacy);
    }

    #[test]
    fn only_a_modern_driver_lowers_the_queue_size() {
        assert_eq!(Interface::Legacy.queue_size(1024), 1024);
        assert_eq!(Interface::Modern.queue_size(1024), QUEUE_SIZE_LIMIT);
        assert_eq!(Interface::Modern.queue_size(64), 64);
    }
}
