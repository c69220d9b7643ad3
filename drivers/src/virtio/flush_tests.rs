//! Flush on virtio-blk, on both transports: `VIRTIO_BLK_T_FLUSH` (4) as a
//! header and a status, no data descriptor, only when the device offered
//! `VIRTIO_BLK_F_FLUSH`; without it the block layer answers at once and the
//! device sees nothing; an error status fails the flush with the byte.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, HardwareQueue, QueuedDisk, WriteCache};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, DmaBuffer, IoDirection, IoReturn, VirtioCause};
use dmakit::memory::Constraints;

use super::VirtioBlock;
use super::fake::{FakeVirtio, Medium};
use super::registers::{FEATURE_FLUSH, STATUS_IOERR};
use super::transport::{DmaPlatforms, Interface, Transport};
use crate::test_support::WAITER;

type Disk = QueuedDisk<VirtioBlock<alloc::boxed::Box<dyn Transport>>>;

on_both_transports!(
    a_flush_is_a_header_and_a_status_after_the_write_when_the_device_offers_it,
    without_the_feature_the_device_never_sees_a_flush,
    an_error_status_fails_the_flush_with_the_byte,
);

/// The fake with 64 sectors, offering `VIRTIO_BLK_F_FLUSH` when `flush`
/// says so and failing flushes with `flush_status`, and the disk on it.
fn setup(
    interface: Interface,
    flush: WriteCache,
    flush_status: u8,
) -> (Arc<FakeVirtio>, Disk, &'static SimulatedPlatform) {
    let platform = SimulatedPlatform::leak(256);
    let mut fake = FakeVirtio::new(platform, vec![0; 64 * 512], Medium::Writable, interface);
    let device = Arc::get_mut(&mut fake).expect("not shared yet");
    if flush == WriteCache::Volatile {
        device.offered |= FEATURE_FLUSH;
    }
    device.flush_status = flush_status;
    let platforms = DmaPlatforms { physical: platform, function: platform };
    let disk = QueuedDisk::new(VirtioBlock::new(fake.transport(), platforms).unwrap(), &WAITER).unwrap();
    (fake, disk, platform)
}

fn a_flush_is_a_header_and_a_status_after_the_write_when_the_device_offers_it(interface: Interface) {
    let (fake, disk, platform) = setup(interface, WriteCache::Volatile, 0);
    assert_eq!(disk.hardware().shape().write_cache, WriteCache::Volatile);
    assert_ne!(disk.hardware().features().1 & FEATURE_FLUSH, 0, "accepted when offered");
    let mut source = DmaBuffer::allocate(platform, 2 * 512, IoDirection::Out, Constraints::NONE).unwrap();
    source.write_bytes(0, &[0x17; 2 * 512]).unwrap();
    disk.write(6, 2, &mut source, 0).unwrap();
    disk.flush().unwrap();
    assert_eq!(*fake.flushes.lock(), [(0, 2)], "sector 0, and two descriptors: header and status");
    assert_eq!(fake.disk.lock()[6 * 512..8 * 512], [0x17; 2 * 512]);
    assert_eq!(disk.stats().flushes, 1);
}

fn without_the_feature_the_device_never_sees_a_flush(interface: Interface) {
    let (fake, disk, _) = setup(interface, WriteCache::WriteThrough, 0);
    assert_eq!(disk.hardware().shape().write_cache, WriteCache::WriteThrough);
    disk.flush().unwrap();
    assert!(fake.flushes.lock().is_empty());
    // Asked directly, the driver refuses: the device would not know the request.
    let refused = disk.hardware().admit(&dmakit::block::SlotCommand::Flush).unwrap_err();
    assert_eq!(refused.cause(), Cause::Virtio(VirtioCause::FlushNotNegotiated));
}

fn an_error_status_fails_the_flush_with_the_byte(interface: Interface) {
    let (fake, disk, _) = setup(interface, WriteCache::Volatile, STATUS_IOERR);
    let failure = disk.flush().unwrap_err();
    assert_eq!(failure.code(), IoReturn::IoError);
    assert_eq!(failure.cause(), Cause::Virtio(VirtioCause::RequestStatus(STATUS_IOERR)));
    let seen: Vec<(u64, usize)> = fake.flushes.lock().clone();
    assert_eq!(seen, [(0, 2)]);
    assert_eq!(disk.stats().failed, 1);
}
