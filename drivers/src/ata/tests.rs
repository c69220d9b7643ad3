//! The ATA driver against the fake PIIX channel on a simulated machine.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::BlockDevice;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaPlatform, IoDirection, IoMemoryDescriptor, IoReturn};
use dmakit::memory::Constraints;
use dmakit::pattern;
use proptest::prelude::*;
use x86_64::PhysAddr;

use super::fake::{Block, FakeChannel, FakeDrive, FakePorts};
use super::identify::Identity;
use super::prd::REGION_LIMIT;
use super::registers::*;
use super::{AtaDisk, Channel};
use crate::test_support::WAITER;

const SECTORS: u64 = 8192;

fn drive(lba48: bool) -> FakeDrive {
    let mut image = vec![0; (SECTORS * 512) as usize];
    pattern::fill(0, b'A', &mut image);
    FakeDrive { image, identity: Identity { sectors: SECTORS, lba48, model: String::from("FAKE DISK") } }
}

struct Setup {
    platform: &'static SimulatedPlatform,
    fake: Arc<FakeChannel>,
    channel: Arc<Channel<FakePorts>>,
}

fn setup(master: Option<FakeDrive>, slave: Option<FakeDrive>) -> Setup {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeChannel::new(platform, master, slave);
    let port = |block| FakePorts(fake.clone(), block);
    let channel =
        Channel::new(port(Block::Command), port(Block::Control), port(Block::BusMaster), platform, &WAITER, true)
            .unwrap();
    Setup { platform, fake, channel: Arc::new(channel) }
}

fn disk(setup: &Setup, number: u8) -> AtaDisk<FakePorts> {
    let identity = setup.channel.identify(number).expect("drive present");
    AtaDisk::new(setup.channel.clone(), number, identity)
}

fn high(platform: &'static SimulatedPlatform, bytes: u64, direction: IoDirection) -> Arc<IoMemoryDescriptor> {
    let buffer = IoMemoryDescriptor::allocate(platform, bytes, direction, Constraints::NONE).unwrap();
    assert!(buffer.physical_segment(0).unwrap().0.as_u64() >= 1 << 32);
    buffer
}

fn contents(descriptor: &IoMemoryDescriptor, offset: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    descriptor.read_bytes(offset, &mut bytes).unwrap();
    bytes
}

#[test]
fn identify_finds_the_drives_that_exist() {
    let setup = setup(Some(drive(true)), None);
    let identity = setup.channel.identify(0).unwrap();
    assert_eq!((identity.sectors, identity.lba48, identity.model.as_str()), (SECTORS, true, "FAKE DISK"));
    assert_eq!(setup.channel.identify(1), None, "no slave");
}

#[test]
fn reads_every_sector_into_high_memory_through_bounce_buffers() {
    let setup = setup(Some(drive(false)), None);
    let disk = disk(&setup, 0);
    let target = high(setup.platform, 256 * 512, IoDirection::In);
    let mut expected = vec![0; 256 * 512];
    for first in (0..SECTORS).step_by(256) {
        disk.read(first, 256, &target, 0).unwrap();
        pattern::fill(first, b'A', &mut expected);
        assert_eq!(contents(&target, 0, expected.len()), expected, "sectors from {first}");
    }
    let stats = setup.platform.accounting().stats();
    assert_eq!(stats.bytes_from_bounce, SECTORS * 512, "a 32-bit controller bounces high memory");
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 1), "only the PRD table stays prepared");
}

#[test]
fn writes_reach_the_disk_and_read_back() {
    let setup = setup(Some(drive(true)), Some(drive(true)));
    let slave = disk(&setup, 1);
    let source = high(setup.platform, 16 * 512, IoDirection::Out);
    let data: Vec<u8> = (0..16 * 512).map(|i| (i % 253) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    slave.write(40, 16, &source, 0).unwrap();
    assert_eq!(&setup.fake.drives.lock()[1].as_ref().unwrap().image[40 * 512..56 * 512], data.as_slice());
    let target = high(setup.platform, 16 * 512, IoDirection::In);
    slave.read(40, 16, &target, 0).unwrap();
    assert_eq!(contents(&target, 0, data.len()), data);
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA));
}

#[test]
fn regions_never_cross_64_kib_even_when_the_buffer_does() {
    let setup = setup(Some(drive(true)), None);
    let disk = disk(&setup, 0);
    // A low buffer (no bouncing), read at an offset so that regions straddle 64 KiB lines.
    let below = Constraints { below: Some(PhysAddr::new(1 << 32)), alignment: REGION_LIMIT, boundary: 0 };
    let target = IoMemoryDescriptor::allocate(setup.platform, 320 * 1024, IoDirection::In, below).unwrap();
    let offset = REGION_LIMIT - 1024;
    disk.read(3, 256, &target, offset).unwrap();
    let (table, _) = setup.channel.last_transfer();
    assert!(table.len() >= 3, "128 KiB from 63 KiB into a 64 KiB-aligned buffer needs 3 regions: {table:?}");
    for entry in &table {
        assert!(u64::from(entry.address) % REGION_LIMIT + entry.length() <= REGION_LIMIT, "{entry:?}");
    }
    assert_eq!(setup.platform.accounting().stats().bytes_from_bounce, 0, "split, not bounced");
    let mut expected = vec![0; 256 * 512];
    pattern::fill(3, b'A', &mut expected);
    assert_eq!(contents(&target, offset, expected.len()), expected);
}

#[test]
fn large_requests_use_lba48_and_small_ones_lba28() {
    let setup = setup(Some(drive(true)), None);
    let disk = disk(&setup, 0);
    let target = high(setup.platform, 1024 * 512, IoDirection::In);
    disk.read(100, 1024, &target, 0).unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA_EXT));
    disk.read(100, 8, &target, 0).unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA));
    let mut expected = vec![0; 8 * 512];
    pattern::fill(100, b'A', &mut expected);
    assert_eq!(contents(&target, 0, expected.len()), expected);
    // Without LBA48 a large request is split into 256-sector commands.
    let plain = self::setup(Some(drive(false)), None);
    let small = self::disk(&plain, 0);
    let target = high(plain.platform, 600 * 512, IoDirection::In);
    small.read(0, 600, &target, 0).unwrap();
    let reads = plain.fake.commands.lock().iter().filter(|&&c| c == COMMAND_READ_DMA).count();
    assert_eq!(reads, 3);
}

#[test]
fn errors_are_reported_and_the_disk_stays_usable() {
    let setup = setup(Some(drive(false)), None);
    let disk = disk(&setup, 0);
    let target = high(setup.platform, 4096, IoDirection::In);
    assert_eq!(disk.read(SECTORS - 2, 4, &target, 0), Err(IoReturn::BadArgument));
    assert_eq!(disk.read(0, 0, &target, 0), Err(IoReturn::BadArgument));
    assert_eq!(disk.read(0, 1, &target, 3), Err(IoReturn::NotAligned));
    *setup.fake.bad_sector.lock() = Some(7);
    assert_eq!(disk.read(4, 8, &target, 0), Err(IoReturn::IoError));
    assert_eq!(setup.platform.accounting().stats().pages_in_use, 0, "bounce memory returned after an error");
    disk.read(SECTORS - 8, 8, &target, 0).unwrap();
    let mut expected = vec![0; 4096];
    pattern::fill(SECTORS - 8, b'A', &mut expected);
    assert_eq!(contents(&target, 0, 4096), expected);
}

#[test]
fn forced_double_buffering_works_for_low_buffers_too() {
    let setup = setup(Some(drive(false)), None);
    let disk = disk(&setup, 0);
    disk.set_force_double_buffer(true);
    let below = Constraints::below(PhysAddr::new(1 << 32));
    let target = IoMemoryDescriptor::allocate(setup.platform, 32 * 512, IoDirection::In, below).unwrap();
    disk.read(9, 32, &target, 0).unwrap();
    let mut expected = vec![0; 32 * 512];
    pattern::fill(9, b'A', &mut expected);
    assert_eq!(contents(&target, 0, expected.len()), expected);
    assert_eq!(setup.platform.accounting().stats().bytes_from_bounce, 32 * 512);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_transfers_match_the_disk(requests in prop::collection::vec((0u64..SECTORS, 1u64..300, 0u64..40_000, any::<bool>(), any::<bool>()), 1..10)) {
        let setup = setup(Some(drive(true)), None);
        let disk = disk(&setup, 0);
        for (lba, count, offset_words, high_memory, write) in requests {
            let count = count.min(SECTORS - lba);
            let offset = offset_words * 2;
            let placement = if high_memory { Constraints::NONE } else { Constraints::below(PhysAddr::new(1 << 32)) };
            let buffer = IoMemoryDescriptor::allocate(setup.platform, offset + count * 512, IoDirection::InOut, placement).unwrap();
            let start = (lba * 512) as usize;
            let length = (count * 512) as usize;
            if write {
                let data: Vec<u8> = (0..length).map(|i| (i as u64 ^ lba) as u8).collect();
                buffer.write_bytes(offset, &data).unwrap();
                disk.write(lba, count, &buffer, offset).unwrap();
                let written = setup.fake.drives.lock()[0].as_ref().unwrap().image[start..start + length].to_vec();
                prop_assert_eq!(written, data);
            } else {
                disk.read(lba, count, &buffer, offset).unwrap();
                let expected = setup.fake.drives.lock()[0].as_ref().unwrap().image[start..start + length].to_vec();
                prop_assert_eq!(contents(&buffer, offset, length), expected);
            }
        }
        prop_assert_eq!(setup.platform.accounting().stats().pages_in_use, 0);
    }
}
