//! The virtio-blk driver against the fake device on a simulated machine.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, DoubleBuffering, TransferOptions};
use dmakit::dma::simulated::{STALE_BYTE, SimulatedPlatform};
use dmakit::dma::{Cause, DmaBuffer, DmaPlatform, IoDirection, IoFailure, IoMemoryDescriptor, IoReturn, Specification};
use dmakit::memory::Constraints;
use dmakit::pattern;
use dmakit::time::Waiter;
use proptest::prelude::*;

use super::VirtioBlock;
use super::fake::{FakeRegisters, FakeVirtio, Medium, Reset};
use super::registers::STATUS_FAILED;
use crate::test_support::WAITER;

const SECTORS: u64 = 2048;
/// What a test's buffer holds before a transfer, so that the bytes the transfer
/// left alone can be told apart.
const OLD_BYTE: u8 = 0x5a;

fn disk_image() -> Vec<u8> {
    let mut image = vec![0; (SECTORS * 512) as usize];
    pattern::fill(0, b'V', &mut image);
    image
}

/// The disk's bytes for `count` sectors from `first`.
fn sectors(first: u64, count: u64) -> Vec<u8> {
    let mut bytes = vec![0; (count * 512) as usize];
    pattern::fill(first, b'V', &mut bytes);
    bytes
}

fn setup(medium: Medium) -> (&'static SimulatedPlatform, Arc<FakeVirtio>, VirtioBlock<FakeRegisters>) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtio::new(platform, disk_image(), medium);
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER).unwrap();
    (platform, fake, driver)
}

/// A buffer with no placement: on the simulated machine it lies above 4 GiB.
fn buffer(platform: &'static SimulatedPlatform, bytes: u64, direction: IoDirection) -> DmaBuffer {
    DmaBuffer::allocate(platform, bytes, direction, Constraints::NONE).unwrap()
}

fn lies_above_4_gib(buffer: &DmaBuffer) -> bool {
    buffer.descriptor().physical_segment(0).unwrap().0.as_u64() >= 1 << 32
}

/// Options that make the device reach only 32 bits for one transfer.
fn restricted_to_32_bits() -> TransferOptions {
    let narrow = Specification { num_address_bits: 32, ..Specification::UNLIMITED_64 };
    TransferOptions { restrict: Some(narrow), force_double_buffer: false }
}

#[test]
fn reads_every_sector_byte_exact() {
    let (platform, _fake, driver) = setup(Medium::Writable);
    assert_eq!(driver.block_count(), SECTORS);
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 256 * 512, IoDirection::In);
    for first in (0..SECTORS).step_by(256) {
        driver.read(first, 256, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 256 * 512).unwrap(), sectors(first, 256), "sectors from {first}");
    }
    let after = platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "a 64-bit device needs no bouncing");
}

#[test]
fn writes_reach_the_disk_and_read_back() {
    let (platform, fake, driver) = setup(Medium::Writable);
    let mut source = buffer(platform, 8 * 512, IoDirection::Out);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 13 % 251) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    driver.write(100, 8, &mut source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[100 * 512..108 * 512], data.as_slice());
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    driver.read(100, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, data.len()).unwrap(), data);
}

#[test]
fn forced_double_buffering_still_moves_the_right_bytes() {
    // Every transfer bounces, so a missing synchronize or complete would lose data.
    let (platform, fake, driver) = setup(Medium::Writable);
    driver.set_double_buffering(DoubleBuffering::Forced);
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 64 * 512, IoDirection::In);
    driver.read(10, 64, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 64 * 512).unwrap(), sectors(10, 64));
    let mut source = buffer(platform, 4 * 512, IoDirection::Out);
    source.write_bytes(0, &[0xa5; 2048]).unwrap();
    driver.write(0, 4, &mut source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[..2048], &[0xa5; 2048][..]);
    let after = platform.accounting().stats();
    let (from_bounce, to_bounce) =
        (after.bytes_from_bounce - before.bytes_from_bounce, after.bytes_to_bounce - before.bytes_to_bounce);
    assert!(from_bounce >= 64 * 512 && to_bounce >= 2048, "{before:?} -> {after:?}");
    // Only the queue stays prepared, for the device's whole life.
    assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
}

#[test]
fn bad_requests_are_refused_and_the_device_stays_usable() {
    let (platform, _fake, driver) = setup(Medium::Writable);
    let mut target = buffer(platform, 4096, IoDirection::In);
    assert_eq!(driver.read(SECTORS - 1, 2, &mut target, 0).unwrap_err(), IoReturn::BadArgument, "past the end");
    assert_eq!(driver.read(SECTORS, 1, &mut target, 0).unwrap_err(), IoReturn::BadArgument);
    assert_eq!(driver.read(0, 0, &mut target, 0).unwrap_err(), IoReturn::BadArgument, "zero length");
    assert_eq!(driver.read(0, 9, &mut target, 0).unwrap_err(), IoReturn::Overrun, "buffer too small");
    assert_eq!(driver.read(0, 1, &mut target, 1).unwrap_err(), IoReturn::NotAligned, "odd offset");
    driver.read(SECTORS - 8, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), sectors(SECTORS - 8, 8));
}

#[test]
fn a_restricted_specification_bounces_for_one_transfer_only() {
    let (platform, _fake, driver) = setup(Medium::Writable);
    let mut target = buffer(platform, 16 * 512, IoDirection::In);
    let before = platform.accounting().stats();
    let narrow = Specification { num_address_bits: 32, boundary: 4096, ..Specification::UNLIMITED_64 };
    let options = TransferOptions { restrict: Some(narrow), force_double_buffer: false };
    driver.transfer(BlockOperation::Read, 5, 16, &mut target, 0, &options).unwrap();
    let bounced = platform.accounting().stats().bytes_from_bounce - before.bytes_from_bounce;
    assert_eq!(bounced, 16 * 512, "a 32-bit experiment bounces high memory");
    assert!(driver.last_segments().iter().all(|s| s.end() <= 1 << 32 && s.length <= 4096));
    assert_eq!(target.to_vec(0, 16 * 512).unwrap(), sectors(5, 16));
    driver.read(5, 16, &mut target, 0).unwrap();
    let bounced = platform.accounting().stats().bytes_from_bounce - before.bytes_from_bounce;
    assert_eq!(bounced, 16 * 512, "the next transfer is direct again");
}

#[test]
fn device_errors_are_reported() {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable);
    Arc::get_mut(&mut fake).unwrap().bad_sector = Some(50);
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER).unwrap();
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 4096, IoDirection::In);
    let failure = driver.read(48, 4, &mut target, 0).unwrap_err();
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::DeviceError("virtio-blk status IOERR")));
    assert_eq!(driver.read(0, 4, &mut target, 0), Ok(()), "still usable");
    let after = platform.accounting().stats();
    assert_eq!(after.prepared_commands, before.prepared_commands, "only the queue stays prepared");
}

#[test]
fn read_only_disks_refuse_writes() {
    let (platform, _fake, driver) = setup(Medium::ReadOnly);
    let mut source = buffer(platform, 512, IoDirection::Out);
    assert_eq!(driver.write(0, 1, &mut source, 0).unwrap_err(), IoReturn::NotPermitted);
}

#[test]
fn scattered_buffers_use_many_descriptors() {
    let (platform, fake, driver) = setup(Medium::Writable);
    // Eight separately allocated frames: eight data segments in one chain, unless
    // the allocator happens to place neighbours next to each other.
    let pieces: Vec<_> = (0..8)
        .map(|i| {
            (4096, if i % 2 == 0 { Constraints::NONE } else { Constraints::below(x86_64::PhysAddr::new(1 << 32)) })
        })
        .collect();
    let scattered = IoMemoryDescriptor::allocate_scattered(platform, &pieces, IoDirection::In).unwrap();
    let mut scattered = DmaBuffer::from_descriptor(scattered).unwrap();
    driver.read(0, 64, &mut scattered, 0).unwrap();
    assert_eq!(*fake.longest_chain.lock(), 10, "header, 8 data segments, status");
    assert_eq!(driver.last_segments().len(), 8);
    assert_eq!(scattered.to_vec(0, 64 * 512).unwrap(), sectors(0, 64));
}

#[test]
fn a_short_read_is_an_underrun_and_copies_back_only_what_the_device_wrote() {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable);
    Arc::get_mut(&mut fake).unwrap().read_limit = Some(1000);
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER).unwrap();
    // An `In` buffer above 4 GiB, read by a 32-bit device: the data goes through
    // bounce memory that is not filled first, so anything copied back beyond
    // what the device wrote would be stale bytes.
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    assert!(lies_above_4_gib(&target));
    target.write_bytes(0, &[OLD_BYTE; 8 * 512]).unwrap();
    let before = platform.accounting().stats();
    let failure = driver.transfer(BlockOperation::Read, 10, 8, &mut target, 0, &restricted_to_32_bits()).unwrap_err();
    assert_eq!(failure, IoFailure::new(IoReturn::Underrun, Cause::ShortTransfer { moved: 1000, prepared: 8 * 512 }));
    let after = platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 1000, "the data bounced; 1000 bytes came back");
    let contents = target.to_vec(0, 8 * 512).unwrap();
    assert_eq!(contents[..1000], sectors(10, 8)[..1000], "what the device wrote");
    assert!(!contents[1000..].contains(&STALE_BYTE), "no stale bounce memory reached the buffer");
    assert!(contents[1000..].iter().all(|&byte| byte == OLD_BYTE), "the rest keeps its old bytes");
    assert_eq!(after.pages_in_use, before.pages_in_use, "the bounce memory was freed");
    driver.read(0, 1, &mut target, 0).expect("an underrun does not stop the device (one sector fits the limit)");
}

#[test]
fn a_timed_out_read_resets_the_device_before_any_memory_goes_back() {
    let (platform, fake, driver) = setup(Medium::Writable);
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    assert!(lies_above_4_gib(&target));
    target.write_bytes(0, &[OLD_BYTE; 8 * 512]).unwrap();
    let before = platform.accounting().stats();
    fake.late.store(true, Ordering::Relaxed);
    let failure = driver.transfer(BlockOperation::Read, 0, 8, &mut target, 0, &restricted_to_32_bits()).unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    assert!(matches!(failure.cause(), Cause::TimedOut { .. }), "{failure}");

    let reset = *fake.resets.lock().last().unwrap();
    let expected = Reset {
        queue_address: driver.queue_address(),
        queue_memory_allocated: true,
        chains_forgotten: 1,
        chain_memory_allocated: true,
    };
    assert_eq!(reset, expected, "the device was reset holding the chain, before any of its memory was freed");
    let after = platform.accounting().stats();
    assert_eq!(after.bounced_transfers - before.bounced_transfers, 1, "the data went through bounce memory");
    assert_eq!(after.pages_in_use, before.pages_in_use, "which was freed after the reset");
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "nothing copied back from a stopped device");
    assert_eq!((after.leaked_pages, after.leaked_transfers), (before.leaked_pages, before.leaked_transfers));

    assert_eq!(fake.finish_late(), 0, "the reset device forgot the chain: it writes nothing into freed memory");
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), vec![OLD_BYTE; 8 * 512], "the buffer keeps its old bytes");
    assert_eq!(fake.device_status(), STATUS_FAILED, "the driver told the device it gave up");
    let refused = driver.read(0, 1, &mut target, 0).unwrap_err();
    assert_eq!(refused, IoFailure::new(IoReturn::NotReady, Cause::DeviceStopped));
}

/// A waiter during whose wait the late device answers: the device finishes
/// after the notify, within the timeout.
struct AnswerWhileWaiting(Arc<FakeVirtio>);

impl Waiter for AnswerWhileWaiting {
    fn wait_until(&self, timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
        self.0.finish_late();
        WAITER.wait_until(timeout_ms, done)
    }
}

#[test]
fn a_late_answer_within_the_timeout_completes_the_read() {
    // The other side of the timeout test: without a reset, the chains a late
    // device took do run.
    let platform = SimulatedPlatform::leak(64);
    let fake = FakeVirtio::new(platform, disk_image(), Medium::Writable);
    let waiter = Box::leak(Box::new(AnswerWhileWaiting(fake.clone())));
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, waiter).unwrap();
    fake.late.store(true, Ordering::Relaxed);
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    driver.read(3, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(3, 8));
    assert_eq!(fake.finish_late(), 0, "nothing left over");
}

#[test]
fn a_failure_after_queue_setup_resets_the_device_before_freeing_the_queue() {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable);
    Arc::get_mut(&mut fake).unwrap().seg_max = 0;
    let before = platform.accounting().stats();
    let Err(failure) = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER) else {
        panic!("a device that takes no data segments is refused");
    };
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::DeviceError("virtio-blk seg_max is 0")));
    let reset = *fake.resets.lock().last().unwrap();
    assert_ne!(reset.queue_address, 0, "the device had the queue when it was reset");
    assert!(reset.queue_memory_allocated, "reset before the queue memory was freed");
    assert!(!platform.is_allocated(reset.queue_address), "and freed after the reset");
    assert_eq!(fake.device_status(), STATUS_FAILED, "FAILED comes after the reset, not instead of it");
    let after = platform.accounting().stats();
    assert_eq!(after.prepared_commands, before.prepared_commands);
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

#[test]
fn dropping_the_driver_resets_the_device_before_releasing_the_queue() {
    let (platform, fake, driver) = setup(Medium::Writable);
    let mut target = buffer(platform, 512, IoDirection::In);
    driver.read(0, 1, &mut target, 0).unwrap();
    let queue_address = driver.queue_address();
    let resets_before = fake.resets.lock().len();
    let before = platform.accounting().stats();
    drop(driver);
    let resets = fake.resets.lock().clone();
    assert_eq!(resets.len(), resets_before + 1, "dropping resets the device once");
    let expected =
        Reset { queue_address, queue_memory_allocated: true, chains_forgotten: 0, chain_memory_allocated: true };
    assert_eq!(resets[resets_before], expected, "reset while the queue memory was still allocated");
    assert!(!platform.is_allocated(queue_address), "the queue is released after the reset");
    let after = platform.accounting().stats();
    assert_eq!(after.prepared_commands + 1, before.prepared_commands, "the queue was the one prepared command");
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_transfers_match_the_disk(requests in prop::collection::vec((0u64..SECTORS, 1u64..40, 0u64..64, any::<bool>()), 1..12)) {
        let (platform, fake, driver) = setup(Medium::Writable);
        let before = platform.accounting().stats();
        for (lba, count, offset_words, bounce) in requests {
            let count = count.min(SECTORS - lba);
            let offset = offset_words * 2;
            driver.set_double_buffering(if bounce { DoubleBuffering::Forced } else { DoubleBuffering::AsNeeded });
            let mut target = buffer(platform, offset + count * 512, IoDirection::In);
            driver.read(lba, count, &mut target, offset).unwrap();
            let start = (lba * 512) as usize;
            let expected = fake.disk.lock()[start..start + (count * 512) as usize].to_vec();
            prop_assert_eq!(target.to_vec(offset, expected.len()).unwrap(), expected);
        }
        prop_assert_eq!(platform.accounting().stats().pages_in_use, before.pages_in_use);
    }
}
