//! The ATA driver against the fake PIIX channel on a simulated machine.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, DoubleBuffering, QueuedDisk};
use dmakit::dma::simulated::{STALE_BYTE, SimulatedPlatform};
use dmakit::dma::{
    AtaCause, Cause, DeviceStatus, DmaAddr, DmaBuffer, DmaPlatform, IoDirection, IoFailure, IoReturn, Segment,
};
use dmakit::io::RegisterIo;
use dmakit::memory::{Constraints, FRAME_SIZE};
use dmakit::pattern;
use proptest::prelude::*;
use x86_64::PhysAddr;

use super::fake::{Block, FakeChannel, FakeDrive, FakePorts, Memory};
use super::identify::{Addressing, CacheFlush, Identity};
use super::prd::{END_OF_TABLE, PrdEntry, REGION_LIMIT};
use super::registers::*;
use super::{AtaDisk, Channel, Interrupts};
use crate::test_support::WAITER;

mod data_phase;
mod flush_tests;
mod hostile_tests;
mod identify_tests;

const SECTORS: u64 = 8192;
/// What a test's buffer holds before a transfer that must not change it.
const OLD_BYTE: u8 = 0x5a;

fn drive(addressing: Addressing) -> FakeDrive {
    let flush = match addressing {
        Addressing::Lba28 => CacheFlush::FlushCache,
        Addressing::Lba48 => CacheFlush::FlushCacheExt,
    };
    drive_with(addressing, flush)
}

/// A drive whose IDENTIFY says `flush` about its write cache.
fn drive_with(addressing: Addressing, flush: CacheFlush) -> FakeDrive {
    let mut image = vec![0; (SECTORS * 512) as usize];
    pattern::fill(0, b'A', &mut image);
    FakeDrive { image, identity: Identity { sectors: SECTORS, addressing, model: String::from("FAKE DISK"), flush } }
}

struct Setup {
    platform: &'static SimulatedPlatform,
    fake: Arc<FakeChannel>,
    channel: Arc<Channel<FakePorts>>,
}

fn new_channel(platform: &'static SimulatedPlatform, fake: &Arc<FakeChannel>) -> Result<Channel<FakePorts>, IoFailure> {
    let port = |block| FakePorts(fake.clone(), block);
    Channel::new(
        port(Block::Command),
        port(Block::Control),
        port(Block::BusMaster),
        platform,
        &WAITER,
        Interrupts::Enabled,
    )
}

fn setup(master: Option<FakeDrive>, slave: Option<FakeDrive>) -> Setup {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeChannel::new(platform, master, slave);
    let channel = new_channel(platform, &fake).unwrap();
    Setup { platform, fake, channel: Arc::new(channel) }
}

fn disk(setup: &Setup, number: u8) -> QueuedDisk<AtaDisk<FakePorts>> {
    let identity = setup.channel.identify(number).expect("drive present").unwrap();
    QueuedDisk::new(AtaDisk::new(setup.channel.clone(), number, identity), &WAITER).unwrap()
}

fn physical_address(buffer: &DmaBuffer) -> u64 {
    buffer.descriptor().physical_segment(0).unwrap().0.as_u64()
}

fn high(platform: &'static SimulatedPlatform, bytes: u64, direction: IoDirection) -> DmaBuffer {
    let buffer = DmaBuffer::allocate(platform, bytes, direction, Constraints::NONE).unwrap();
    assert!(physical_address(&buffer) >= 1 << 32);
    buffer
}

/// A buffer above 4 GiB filled with [`OLD_BYTE`].
fn high_with_old_bytes(platform: &'static SimulatedPlatform, bytes: u64) -> DmaBuffer {
    let mut buffer = high(platform, bytes, IoDirection::In);
    buffer.write_bytes(0, &vec![OLD_BYTE; bytes as usize]).unwrap();
    buffer
}

fn expected(first: u64, sectors: u64) -> Vec<u8> {
    let mut bytes = vec![0; (sectors * 512) as usize];
    pattern::fill(first, b'A', &mut bytes);
    bytes
}

#[test]
fn identify_finds_the_drives_that_exist() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let identity = setup.channel.identify(0).unwrap().unwrap();
    let found = (SECTORS, Addressing::Lba48, "FAKE DISK");
    assert_eq!((identity.sectors, identity.addressing, identity.model.as_str()), found);
    assert_eq!(setup.channel.identify(1), None, "no slave");
}

#[test]
fn reads_every_sector_into_high_memory_through_bounce_buffers() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let mut target = high(setup.platform, 256 * 512, IoDirection::In);
    let before = setup.platform.accounting().stats();
    for first in (0..SECTORS).step_by(256) {
        disk.read(first, 256, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 256 * 512).unwrap(), expected(first, 256), "sectors from {first}");
    }
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, SECTORS * 512, "a 32-bit controller bounces");
    assert_eq!(after.pages_in_use, before.pages_in_use, "every bounce page went back");
    assert_eq!(after.prepared_commands, before.prepared_commands, "only the PRD table stays prepared");
}

#[test]
fn writes_reach_the_disk_and_read_back() {
    let setup = setup(Some(drive(Addressing::Lba48)), Some(drive(Addressing::Lba48)));
    let slave = disk(&setup, 1);
    let mut source = high(setup.platform, 16 * 512, IoDirection::Out);
    let data: Vec<u8> = (0..16 * 512).map(|i| (i % 253) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    slave.write(40, 16, &mut source, 0).unwrap();
    assert_eq!(&setup.fake.drives.lock()[1].as_ref().unwrap().image[40 * 512..56 * 512], data.as_slice());
    let mut target = high(setup.platform, 16 * 512, IoDirection::In);
    slave.read(40, 16, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, data.len()).unwrap(), data);
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA));
}

#[test]
fn regions_never_cross_64_kib_even_when_the_buffer_does() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let disk = disk(&setup, 0);
    // A low buffer (no bouncing), read at an offset so that regions straddle 64 KiB lines.
    let below = Constraints { below: Some(PhysAddr::new(1 << 32)), alignment: REGION_LIMIT, boundary: 0 };
    let mut target = DmaBuffer::allocate(setup.platform, 320 * 1024, IoDirection::In, below).unwrap();
    let offset = REGION_LIMIT - 1024;
    let before = setup.platform.accounting().stats();
    disk.read(3, 256, &mut target, offset).unwrap();
    let (table, _) = setup.channel.last_transfer();
    assert!(table.len() >= 3, "128 KiB from 63 KiB into a 64 KiB-aligned buffer needs 3 regions: {table:?}");
    for entry in &table {
        assert!(u64::from(entry.address) % REGION_LIMIT + entry.length() <= REGION_LIMIT, "{entry:?}");
    }
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "split, not bounced");
    assert_eq!(target.to_vec(offset, 256 * 512).unwrap(), expected(3, 256));
}

#[test]
fn prd_entries_are_the_segments_the_block_layer_lent() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let disk = disk(&setup, 0);
    // Low and 64 KiB aligned: 129 KiB are two whole 64 KiB regions and 1 KiB.
    let below = Constraints { below: Some(PhysAddr::new(1 << 32)), alignment: REGION_LIMIT, boundary: 0 };
    let mut target = DmaBuffer::allocate(setup.platform, 3 * REGION_LIMIT, IoDirection::In, below).unwrap();
    let base = physical_address(&target) as u32;
    let region = REGION_LIMIT as u32;
    disk.read(0, 258, &mut target, 0).unwrap();
    let (table, command) = setup.channel.last_transfer();
    assert_eq!(command, COMMAND_READ_DMA_EXT, "258 sectors need LBA48");
    let whole = |address| PrdEntry { address, byte_count: 0, flags: 0 };
    let tail = PrdEntry { address: base + 2 * region, byte_count: 1024, flags: END_OF_TABLE };
    assert_eq!(table, vec![whole(base), whole(base + region), tail], "64 KiB is written as 0, the last entry ends");
    assert_eq!(*setup.fake.last_table.lock(), table, "the controller read the same entries from the table");
    let segment = |address: u32, length| Segment { address: DmaAddr::new(u64::from(address)), length };
    let segments =
        vec![segment(base, REGION_LIMIT), segment(base + region, REGION_LIMIT), segment(base + 2 * region, 1024)];
    assert_eq!(disk.last_segments(), segments);
    assert_eq!(target.to_vec(0, 258 * 512).unwrap(), expected(0, 258));
}

#[test]
fn large_requests_use_lba48_and_small_ones_lba28() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let disk = disk(&setup, 0);
    let mut target = high(setup.platform, 1024 * 512, IoDirection::In);
    disk.read(100, 1024, &mut target, 0).unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA_EXT));
    disk.read(100, 8, &mut target, 0).unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA));
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(100, 8));
    // Without LBA48 a large request is split into 256-sector commands.
    let plain = self::setup(Some(drive(Addressing::Lba28)), None);
    let small = self::disk(&plain, 0);
    let mut target = high(plain.platform, 600 * 512, IoDirection::In);
    small.read(0, 600, &mut target, 0).unwrap();
    let reads = plain.fake.commands.lock().iter().filter(|&&c| c == COMMAND_READ_DMA).count();
    assert_eq!(reads, 3);
    assert_eq!(target.to_vec(0, 600 * 512).unwrap(), expected(0, 600));
}

#[test]
fn errors_are_reported_and_the_disk_stays_usable() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let mut target = high(setup.platform, 4096, IoDirection::In);
    assert_eq!(disk.read(SECTORS - 2, 4, &mut target, 0).unwrap_err(), IoReturn::BadArgument);
    assert_eq!(disk.read(0, 0, &mut target, 0).unwrap_err(), IoReturn::BadArgument);
    assert_eq!(disk.read(0, 1, &mut target, 3).unwrap_err(), IoReturn::NotAligned);
    let before = setup.platform.accounting().stats();
    *setup.fake.bad_sector.lock() = Some(7);
    let failure = disk.read(4, 8, &mut target, 0).unwrap_err();
    // The drive's ERR, with the error register the fake sets: ABRT.
    let aborted = Cause::Ata(AtaCause::DriveError { status: STATUS_READY | STATUS_ERROR, error: 0x04 });
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, aborted));
    let after = setup.platform.accounting().stats();
    assert_eq!(after.pages_in_use, before.pages_in_use, "bounce memory returned after an error");
    assert_eq!(after.leaked_transfers, before.leaked_transfers, "completed, not leaked");
    disk.read(SECTORS - 8, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), expected(SECTORS - 8, 8));
}

#[test]
fn bus_master_errors_and_device_faults_say_which() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let mut target = high_with_old_bytes(setup.platform, 4096);
    let fault = STATUS_READY | STATUS_FAULT | STATUS_ERROR;
    let cases = [
        (&setup.fake.bus_error, AtaCause::BusMasterError { bus_master: BM_ERROR }, "bus-master error"),
        (&setup.fake.device_fault, AtaCause::DeviceFault { status: fault }, "device fault"),
    ];
    for (switch, cause, what) in cases {
        switch.store(true, Ordering::Relaxed);
        let failure = disk.read(0, 8, &mut target, 0).unwrap_err();
        assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
        assert!(failure.to_string().contains(what), "{failure}");
        assert_eq!(target.to_vec(0, 4096).unwrap(), vec![OLD_BYTE; 4096], "{what}: nothing came back");
        switch.store(false, Ordering::Relaxed);
    }
    disk.read(0, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), expected(0, 8));
}

#[test]
fn a_short_transfer_with_a_good_status_copies_nothing_stale_back() {
    // The drive moves 3 of 8 sectors and reports success; only the engine's
    // Active bit, read before the engine is stopped, shows the transfer ended
    // short. Nothing may come back from the (unfilled) bounce buffer.
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let mut target = high_with_old_bytes(setup.platform, 4096);
    *setup.fake.short_sectors.lock() = Some(3);
    let before = setup.platform.accounting().stats();
    let failure = disk.read(0, 8, &mut target, 0).unwrap_err();
    assert_eq!(failure.code(), IoReturn::IoError);
    assert!(failure.to_string().contains("short transfer"), "{failure}");
    assert_eq!(target.to_vec(0, 4096).unwrap(), vec![OLD_BYTE; 4096], "no stale bounce byte came back");
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce);
    *setup.fake.short_sectors.lock() = None;
    disk.read(0, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), expected(0, 8));
}

#[test]
fn a_device_error_in_mid_buffer_copies_nothing_stale_back() {
    // LBA28: 512 sectors are two commands of 256. The drive fails 100 sectors
    // into the second, after moving those 100 into the bounce buffer.
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let length = 512 * 512;
    let mut target = high_with_old_bytes(setup.platform, length);
    *setup.fake.bad_sector.lock() = Some(256 + 100);
    let before = setup.platform.accounting().stats();
    let failure = disk.read(0, 512, &mut target, 0).unwrap_err();
    // The drive's ERR, with the error register the fake sets: ABRT.
    let aborted = Cause::Ata(AtaCause::DriveError { status: STATUS_READY | STATUS_ERROR, error: 0x04 });
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, aborted));
    let bytes = target.to_vec(0, length as usize).unwrap();
    let (first, second) = bytes.split_at(256 * 512);
    assert_eq!(first, expected(0, 256), "the first command finished: its sectors arrived");
    assert!(!second.contains(&STALE_BYTE), "no stale bounce byte reached the caller");
    assert!(second.iter().all(|&byte| byte == OLD_BYTE), "the failed command's share keeps its old bytes");
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 256 * 512, "only the first command came back");
    assert_eq!(after.pages_in_use, before.pages_in_use, "the bounce memory went back");
}

#[test]
fn a_timed_out_read_stops_the_engine_before_its_memory_goes_back() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    // Above 4 GiB: the controller writes into bounce memory the driver frees.
    let mut target = high_with_old_bytes(setup.platform, 8 * 512);
    let before = setup.platform.accounting().stats();
    let misuses = setup.platform.accounting().misuse_log().len();
    setup.fake.late.store(true, Ordering::Relaxed);
    let failure = disk.read(16, 8, &mut target, 0).unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    // The timeout says what the registers showed: the engine still active.
    match failure.cause() {
        Cause::TimedOut { last: Some(DeviceStatus::Ata { bus_master, .. }), .. } => {
            assert_ne!(bus_master & BM_ACTIVE, 0, "{failure}")
        }
        other => panic!("a timeout carrying the channel's status, not {other:?}"),
    }

    let stop = *setup.fake.stops.lock().last().expect("the engine was stopped");
    assert_eq!(stop.held_back, Some(Memory::Allocated), "stopped while its bounce memory was still allocated");
    let regions = setup.fake.last_table.lock().clone();
    assert!(regions.iter().all(|entry| u64::from(entry.address) < 1 << 32), "the controller got bounce memory");
    for entry in &regions {
        let address = u64::from(entry.address);
        assert!(!setup.platform.is_allocated(address), "bounce memory at {address:#x} was given back");
    }
    // The device answers now: with its engine stopped it writes nothing (the
    // fake would fail on a write into the freed bounce pages).
    assert_eq!(setup.fake.finish_late(), 0);
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), vec![OLD_BYTE; 8 * 512], "nothing came back");
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce);
    assert_eq!(after.pages_in_use, before.pages_in_use, "freed, not leaked");
    assert_eq!(after.leaked_transfers, before.leaked_transfers);
    assert_eq!(setup.platform.accounting().misuse_log().len(), misuses, "no DMA misuse");

    setup.fake.late.store(false, Ordering::Relaxed);
    let refused = disk.read(16, 8, &mut target, 0).unwrap_err();
    assert_eq!(refused.cause(), Cause::DriverStopped, "a timeout stops the driver");
    disk.start().unwrap();
    disk.read(16, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(16, 8), "started again, the disk answers in time");
}

#[test]
#[should_panic(expected = "device wrote into freed memory")]
fn the_fake_catches_a_device_writing_into_freed_memory() {
    // The check the timeout test relies on: an engine left running writes into
    // memory that was given back, and the fake fails.
    let platform = SimulatedPlatform::leak(16);
    let fake = FakeChannel::new(platform, Some(drive(Addressing::Lba28)), None);
    let ports = |block| FakePorts(fake.clone(), block);
    let (command_block, bus_master) = (ports(Block::Command), ports(Block::BusMaster));
    let below = Constraints::below(PhysAddr::new(1 << 32));
    // The table is memory shared with the controller, as the driver's is.
    let table =
        dmakit::dma::CoherentMemory::allocate(platform, FRAME_SIZE, dmakit::dma::Specification::UNLIMITED_32).unwrap();
    let data = DmaBuffer::allocate(platform, FRAME_SIZE, IoDirection::In, below).unwrap();
    let entry = PrdEntry { address: physical_address(&data) as u32, byte_count: 512, flags: END_OF_TABLE };
    table.write_bytes(0, &entry.to_bytes()).unwrap();
    bus_master.write32(BM_PRD_TABLE, table.device_address().as_u64() as u32);
    command_block.write8(DRIVE, DRIVE_LBA);
    command_block.write8(SECTOR_COUNT, 1);
    command_block.write8(COMMAND, COMMAND_READ_DMA);
    fake.late.store(true, Ordering::Relaxed);
    bus_master.write8(BM_COMMAND, BM_START | BM_WRITES_MEMORY);
    drop(data);
    fake.finish_late();
}

#[test]
fn dropping_a_channel_stops_the_engine_before_releasing_the_table() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let mut target = high(setup.platform, 4096, IoDirection::In);
    disk.read(0, 8, &mut target, 0).unwrap();
    let Setup { platform, fake, channel } = setup;
    let table = fake.prd_table();
    assert!(table != 0 && platform.is_allocated(table), "the controller has the table");
    let stops = fake.stops.lock().len();
    let before = platform.accounting().stats();
    drop(disk);
    drop(channel);
    let after = platform.accounting().stats();
    let stops_now = fake.stops.lock().clone();
    assert_eq!(stops_now.len(), stops + 1, "dropping the channel stopped the engine");
    assert_eq!(stops_now[stops].table, Some(Memory::Allocated), "while the table was still allocated");
    assert!(!platform.is_allocated(table), "then the table was released");
    assert_eq!(after.prepared_commands + 1, before.prepared_commands, "the table's command completed");
    assert_eq!(after.leaked_transfers, before.leaked_transfers, "released, not leaked");
}

#[test]
fn a_channel_without_room_for_its_table_gives_the_controller_nothing() {
    let platform = SimulatedPlatform::leak(16);
    // Take every frame below 4 GiB, where the table must live.
    let below = Constraints::below(PhysAddr::new(1 << 32));
    let mut hoard = Vec::new();
    for size in [1 << 20, FRAME_SIZE] {
        while let Ok(buffer) = DmaBuffer::allocate(platform, size, IoDirection::In, below) {
            hoard.push(buffer);
        }
    }
    let fake = FakeChannel::new(platform, Some(drive(Addressing::Lba28)), None);
    let before = platform.accounting().stats();
    let failure = new_channel(platform, &fake).err().expect("no memory for the PRD table");
    assert_eq!(failure.code(), IoReturn::NoMemory);
    assert!(matches!(failure.cause(), Cause::NoReachableMemory { .. }), "{failure}");
    assert_eq!(fake.prd_table(), 0, "the controller never got a table address");
    let after = platform.accounting().stats();
    assert_eq!((after.prepared_commands, after.leaked_transfers), (before.prepared_commands, before.leaked_transfers));
    drop(hoard);
    let channel = new_channel(platform, &fake).expect("memory is back");
    assert_eq!(fake.prd_table(), 0, "a new channel gives the table only with a command");
    drop(channel);
}

#[test]
fn forced_double_buffering_works_for_low_buffers_too() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    disk.set_double_buffering(DoubleBuffering::Forced);
    let below = Constraints::below(PhysAddr::new(1 << 32));
    let mut target = DmaBuffer::allocate(setup.platform, 32 * 512, IoDirection::In, below).unwrap();
    let before = setup.platform.accounting().stats();
    disk.read(9, 32, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 32 * 512).unwrap(), expected(9, 32));
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 32 * 512);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_transfers_match_the_disk(requests in prop::collection::vec((0u64..SECTORS, 1u64..300, 0u64..40_000, any::<bool>(), any::<bool>()), 1..10)) {
        let setup = setup(Some(drive(Addressing::Lba48)), None);
        let disk = disk(&setup, 0);
        let before = setup.platform.accounting().stats();
        for (lba, count, offset_words, high_memory, write) in requests {
            let count = count.min(SECTORS - lba);
            let offset = offset_words * 2;
            let placement = if high_memory { Constraints::NONE } else { Constraints::below(PhysAddr::new(1 << 32)) };
            let mut buffer = DmaBuffer::allocate(setup.platform, offset + count * 512, IoDirection::InOut, placement).unwrap();
            let start = (lba * 512) as usize;
            let length = (count * 512) as usize;
            if write {
                let data: Vec<u8> = (0..length).map(|i| (i as u64 ^ lba) as u8).collect();
                buffer.write_bytes(offset, &data).unwrap();
                disk.write(lba, count, &mut buffer, offset).unwrap();
                let written = setup.fake.drives.lock()[0].as_ref().unwrap().image[start..start + length].to_vec();
                prop_assert_eq!(written, data);
            } else {
                disk.read(lba, count, &mut buffer, offset).unwrap();
                let expected = setup.fake.drives.lock()[0].as_ref().unwrap().image[start..start + length].to_vec();
                prop_assert_eq!(buffer.to_vec(offset, length).unwrap(), expected);
            }
        }
        prop_assert_eq!(setup.platform.accounting().stats().pages_in_use, before.pages_in_use);
    }
}
