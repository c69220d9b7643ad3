//! The virtio-blk driver against the fake device on a simulated machine.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, TransferOptions};
use dmakit::dma::Specification;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaPlatform, IoDirection, IoMemoryDescriptor, IoReturn};
use dmakit::memory::Constraints;
use dmakit::pattern;
use proptest::prelude::*;

use super::VirtioBlock;
use super::fake::{FakeRegisters, FakeVirtio};
use crate::test_support::WAITER;

const SECTORS: u64 = 2048;

fn disk_image() -> Vec<u8> {
    let mut image = vec![0; (SECTORS * 512) as usize];
    pattern::fill(0, b'V', &mut image);
    image
}

fn setup(read_only: bool) -> (&'static SimulatedPlatform, Arc<FakeVirtio>, VirtioBlock<FakeRegisters>) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtio::new(platform, disk_image(), read_only);
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER).unwrap();
    (platform, fake, driver)
}

fn buffer(platform: &'static SimulatedPlatform, bytes: u64, direction: IoDirection) -> Arc<IoMemoryDescriptor> {
    IoMemoryDescriptor::allocate(platform, bytes, direction, Constraints::NONE).unwrap()
}

fn contents(descriptor: &IoMemoryDescriptor, offset: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    descriptor.read_bytes(offset, &mut bytes).unwrap();
    bytes
}

#[test]
fn reads_every_sector_byte_exact() {
    let (platform, _fake, driver) = setup(false);
    assert_eq!(driver.block_count(), SECTORS);
    let target = buffer(platform, 256 * 512, IoDirection::In);
    let mut expected = vec![0; 256 * 512];
    for first in (0..SECTORS).step_by(256) {
        driver.read(first, 256, &target, 0).unwrap();
        pattern::fill(first, b'V', &mut expected);
        assert_eq!(contents(&target, 0, expected.len()), expected, "sectors from {first}");
    }
    assert_eq!(platform.accounting().stats().bytes_from_bounce, 0, "a 64-bit device needs no bouncing");
}

#[test]
fn writes_reach_the_disk_and_read_back() {
    let (platform, fake, driver) = setup(false);
    let source = buffer(platform, 8 * 512, IoDirection::Out);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 13 % 251) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    driver.write(100, 8, &source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[100 * 512..108 * 512], data.as_slice());
    let target = buffer(platform, 8 * 512, IoDirection::In);
    driver.read(100, 8, &target, 0).unwrap();
    assert_eq!(contents(&target, 0, data.len()), data);
}

#[test]
fn forced_double_buffering_still_moves_the_right_bytes() {
    // Every transfer bounces, so a missing synchronize or complete would lose data.
    let (platform, fake, driver) = setup(false);
    driver.set_force_double_buffer(true);
    let target = buffer(platform, 64 * 512, IoDirection::In);
    driver.read(10, 64, &target, 0).unwrap();
    let mut expected = vec![0; 64 * 512];
    pattern::fill(10, b'V', &mut expected);
    assert_eq!(contents(&target, 0, expected.len()), expected);
    let source = buffer(platform, 4 * 512, IoDirection::Out);
    source.write_bytes(0, &[0xa5; 2048]).unwrap();
    driver.write(0, 4, &source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[..2048], &[0xa5; 2048][..]);
    let stats = platform.accounting().stats();
    assert!(stats.bytes_from_bounce >= 64 * 512 && stats.bytes_to_bounce >= 2048, "{stats:?}");
    // Only the queue stays prepared, for the device's whole life.
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 1));
}

#[test]
fn bad_requests_are_refused_and_the_device_stays_usable() {
    let (platform, _fake, driver) = setup(false);
    let target = buffer(platform, 4096, IoDirection::In);
    assert_eq!(driver.read(SECTORS - 1, 2, &target, 0), Err(IoReturn::BadArgument), "past the end");
    assert_eq!(driver.read(SECTORS, 1, &target, 0), Err(IoReturn::BadArgument));
    assert_eq!(driver.read(0, 0, &target, 0), Err(IoReturn::BadArgument), "zero length");
    assert_eq!(driver.read(0, 9, &target, 0), Err(IoReturn::Overrun), "buffer too small");
    assert_eq!(driver.read(0, 1, &target, 1), Err(IoReturn::NotAligned), "odd offset");
    driver.read(SECTORS - 8, 8, &target, 0).unwrap();
    let mut expected = vec![0; 4096];
    pattern::fill(SECTORS - 8, b'V', &mut expected);
    assert_eq!(contents(&target, 0, 4096), expected);
}

#[test]
fn a_restricted_specification_bounces_for_one_transfer_only() {
    let (platform, _fake, driver) = setup(false);
    let target = buffer(platform, 16 * 512, IoDirection::In);
    let narrow = Specification { num_address_bits: 32, boundary: 4096, ..Specification::UNLIMITED_64 };
    let options = TransferOptions { restrict: Some(narrow), force_double_buffer: false };
    driver.transfer(IoDirection::In, 5, 16, &target, 0, &options).unwrap();
    assert_eq!(platform.accounting().stats().bytes_from_bounce, 16 * 512, "a 32-bit experiment bounces high memory");
    assert!(driver.last_segments().iter().all(|s| s.end() <= 1 << 32 && s.length <= 4096));
    let mut expected = vec![0; 16 * 512];
    pattern::fill(5, b'V', &mut expected);
    assert_eq!(contents(&target, 0, expected.len()), expected);
    driver.read(5, 16, &target, 0).unwrap();
    assert_eq!(platform.accounting().stats().bytes_from_bounce, 16 * 512, "the next transfer is direct again");
}

#[test]
fn device_errors_are_reported() {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), false);
    Arc::get_mut(&mut fake).unwrap().bad_sector = Some(50);
    let driver = VirtioBlock::new(FakeRegisters(fake.clone()), platform, &WAITER).unwrap();
    let target = buffer(platform, 4096, IoDirection::In);
    assert_eq!(driver.read(48, 4, &target, 0), Err(IoReturn::IoError));
    assert_eq!(driver.read(0, 4, &target, 0), Ok(()), "still usable");
    assert_eq!(platform.accounting().stats().prepared_commands, 1, "only the queue");
}

#[test]
fn read_only_disks_refuse_writes() {
    let (platform, _fake, driver) = setup(true);
    let source = buffer(platform, 512, IoDirection::Out);
    assert_eq!(driver.write(0, 1, &source, 0), Err(IoReturn::NotPermitted));
}

#[test]
fn scattered_buffers_use_many_descriptors() {
    let (platform, fake, driver) = setup(false);
    // Eight separately allocated frames: eight data segments in one chain, unless
    // the allocator happens to place neighbours next to each other.
    let pieces: Vec<_> = (0..8)
        .map(|i| {
            (4096, if i % 2 == 0 { Constraints::NONE } else { Constraints::below(x86_64::PhysAddr::new(1 << 32)) })
        })
        .collect();
    let scattered = IoMemoryDescriptor::allocate_scattered(platform, &pieces, IoDirection::In).unwrap();
    driver.read(0, 64, &scattered, 0).unwrap();
    assert_eq!(*fake.longest_chain.lock(), 10, "header, 8 data segments, status");
    let mut expected = vec![0; 64 * 512];
    pattern::fill(0, b'V', &mut expected);
    assert_eq!(contents(&scattered, 0, expected.len()), expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_transfers_match_the_disk(requests in prop::collection::vec((0u64..SECTORS, 1u64..40, 0u64..64, any::<bool>()), 1..12)) {
        let (platform, fake, driver) = setup(false);
        for (lba, count, offset_words, bounce) in requests {
            let count = count.min(SECTORS - lba);
            let offset = offset_words * 2;
            driver.set_force_double_buffer(bounce);
            let target = buffer(platform, offset + count * 512, IoDirection::In);
            driver.read(lba, count, &target, offset).unwrap();
            let start = (lba * 512) as usize;
            let expected = fake.disk.lock()[start..start + (count * 512) as usize].to_vec();
            prop_assert_eq!(contents(&target, offset, expected.len()), expected);
        }
        prop_assert_eq!(platform.accounting().stats().pages_in_use, 0);
    }
}
