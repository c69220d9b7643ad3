//! The legacy virtio-PCI register block (I/O BAR 0), and the status, feature
//! and virtio-blk bits both interfaces share.
//!
//! Virtio 1.0 section 4.1.4.8 "Legacy Interfaces: A Note on PCI Device Layout".
//! QEMU's `virtio-blk-pci` is a transitional device by default: it offers this
//! interface next to the modern one (`modern.rs`), which alone it keeps with
//! `disable-legacy=on`.

/// 0x00, 32 bits, read: the features the device offers.
pub const DEVICE_FEATURES: u16 = 0x00;
/// 0x04, 32 bits: the features the driver accepts.
pub const GUEST_FEATURES: u16 = 0x04;
/// 0x08, 32 bits: physical page number of the selected queue (0 = none).
pub const QUEUE_ADDRESS: u16 = 0x08;
/// 0x0c, 16 bits, read: size of the selected queue.
pub const QUEUE_SIZE: u16 = 0x0c;
/// 0x0e, 16 bits: which queue the queue registers refer to.
pub const QUEUE_SELECT: u16 = 0x0e;
/// 0x10, 16 bits, write: "queue N has new buffers".
pub const QUEUE_NOTIFY: u16 = 0x10;
/// 0x12, 8 bits: device status; writing 0 resets the device.
pub const DEVICE_STATUS: u16 = 0x12;
/// 0x13, 8 bits, read: interrupt status; reading it acknowledges the interrupt.
pub const ISR_STATUS: u16 = 0x13;
/// 0x14: where the device-specific configuration starts (without MSI-X).
pub const LEGACY_DEVICE_CONFIG: u16 = 0x14;
/// virtio-blk configuration, offset 0: the capacity in 512-byte sectors, 64 bits.
pub const CONFIG_CAPACITY: u16 = 0;
/// virtio-blk configuration, offset 12: `seg_max`, 32 bits, the most data
/// segments in one request.
pub const CONFIG_SEG_MAX: u16 = 12;
/// The legacy register of the capacity.
pub const BLOCK_CAPACITY: u16 = LEGACY_DEVICE_CONFIG + CONFIG_CAPACITY;
/// The legacy register of `seg_max`.
pub const BLOCK_SEG_MAX: u16 = LEGACY_DEVICE_CONFIG + CONFIG_SEG_MAX;
/// Bytes of virtio-blk configuration the driver reads (up to `seg_max`).
pub const CONFIG_BYTES_READ: u16 = CONFIG_SEG_MAX + 4;
/// The size of the register block.
pub const REGISTER_BLOCK_SIZE: u16 = 0x14 + 0x24;

/// Device status: the guest saw the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the guest has a driver for it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status (modern only): the driver has written the features it
/// accepts; the device clears the bit again if it cannot work with them.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the driver gave up.
pub const STATUS_FAILED: u8 = 0x80;

/// Feature: `seg_max` in the configuration is valid.
pub const FEATURE_SEG_MAX: u64 = 1 << 2;
/// Feature: the disk is read-only.
pub const FEATURE_READ_ONLY: u64 = 1 << 5;
/// Feature `VIRTIO_BLK_F_FLUSH`: the device may keep finished writes in a
/// volatile cache and takes flush requests. Without it the cache is in
/// writethrough mode (virtio 1.1, 5.2.6.2), and there is nothing to flush.
pub const FEATURE_FLUSH: u64 = 1 << 9;
/// The virtio-blk features the block driver accepts when offered.
pub const BLOCK_FEATURES: u64 = FEATURE_SEG_MAX | FEATURE_READ_ONLY | FEATURE_FLUSH;
/// Feature `VIRTIO_F_VERSION_1`: the device follows virtio 1.0; a modern
/// interface requires it (the legacy one has only 32 feature bits).
pub const FEATURE_VERSION_1: u64 = 1 << 32;
/// Feature `VIRTIO_F_ACCESS_PLATFORM`: the device's memory accesses go through
/// the platform (its IOMMU), so it must be given addresses the platform maps,
/// not physical ones.
pub const FEATURE_ACCESS_PLATFORM: u64 = 1 << 33;

/// Bytes of a request header: type (u32), reserved (u32), sector (u64).
pub const HEADER_BYTES: u64 = 16;
/// Bytes of a request's status.
pub const STATUS_BYTES: u64 = 1;
/// Request type: read.
pub const REQUEST_IN: u32 = 0;
/// Request type: write.
pub const REQUEST_OUT: u32 = 1;
/// Request type: flush (header and status only, sector 0).
pub const REQUEST_FLUSH: u32 = 4;
/// Request status: success.
pub const STATUS_OK: u8 = 0;
/// Request status: the device failed to read or write the disk.
pub const STATUS_IOERR: u8 = 1;
/// Request status: the device does not support the request type.
pub const STATUS_UNSUPP: u8 = 2;

/// The queue alignment: the legacy interface needs the used ring on a page;
/// the modern one needs less, and gets the same layout.
pub const QUEUE_ALIGNMENT: u64 = 4096;
/// virtio-blk sectors are always 512 bytes, whatever the disk's block size.
pub const SECTOR_SIZE: u64 = 512;
