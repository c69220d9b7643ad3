//! The virtio-blk driver against the fake device on a simulated machine, on both
//! transports: each test below `on_both_transports!` runs once with the legacy
//! register block and once with the modern structures (`legacy::` and
//! `modern::` in the test names). Tests of what only one interface has follow.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{
    BlockDevice, BlockOperation, BlockRequest, Deferral, DoubleBuffering, Finished, QueuedDisk, REQUEST_TIMEOUT_MS,
    RequestHandle, StopReport, TransferOptions,
};
use dmakit::dma::simulated::{STALE_BYTE, SimulatedPlatform};
use dmakit::dma::{
    Cause, DeviceStatus, DmaBuffer, DmaPlatform, IoDirection, IoFailure, IoMemoryDescriptor, IoReturn, Misuse,
    Specification, VirtioCause,
};
use dmakit::memory::Constraints;
use dmakit::pattern;
use dmakit::time::Waiter;
use proptest::prelude::*;

use super::VirtioBlock;
use super::fake::{Answer, FakeVirtio, FeatureCheck, FinishOrder, Medium, Misreport, Reset, ResetResponse};
use super::registers::{
    FEATURE_ACCESS_PLATFORM, FEATURE_SEG_MAX, FEATURE_VERSION_1, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, STATUS_IOERR, STATUS_OK,
};
use super::transport::{DmaPlatforms, DmaRoute, Interface, QUEUE_SIZE_LIMIT, Transport};
use crate::test_support::WAITER;

mod hostile_block_tests;
mod queue_size_tests;
mod used_ring_tests;

/// The disk as the kernel builds it: the block layer around the driver, over
/// either transport.
type Disk = QueuedDisk<VirtioBlock<Box<dyn Transport>>>;

on_both_transports!(
    reads_every_sector_byte_exact,
    writes_reach_the_disk_and_read_back,
    forced_double_buffering_still_moves_the_right_bytes,
    bad_requests_are_refused_and_the_device_stays_usable,
    a_restricted_specification_bounces_for_one_transfer_only,
    device_errors_are_reported,
    read_only_disks_refuse_writes,
    scattered_buffers_use_the_slots_descriptors_or_bounce_whole,
    a_short_read_is_an_underrun_and_copies_back_only_what_the_device_wrote,
    a_timed_out_read_resets_the_device_before_any_memory_goes_back,
    a_late_answer_within_the_timeout_completes_the_read,
    a_failure_after_queue_setup_resets_the_device_before_freeing_the_queue,
    dropping_the_driver_resets_the_device_before_releasing_the_queue,
    thirty_two_requests_in_flight_finish_out_of_order_byte_exact,
    an_io_error_fails_only_its_request,
    stopping_with_requests_in_flight_resets_before_releasing_and_restart_works,
    a_tiny_bounce_budget_defers_loads_and_a_request_larger_than_the_budget_fails_at_once,
    the_rings_wrap_around_after_as_many_requests_as_the_queue_has_entries,
    a_device_that_misreports_a_chain_is_not_believed,
    a_device_that_ignores_the_reset_keeps_its_memory_for_ever_and_restart_waits_for_a_real_reset,
);

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

/// One platform for both routes: the fake device reads and writes `platform`.
fn platforms(platform: &'static SimulatedPlatform) -> DmaPlatforms {
    DmaPlatforms { physical: platform, function: platform }
}

/// Starts the driver on `fake` through a transport of the fake's interface,
/// inside the block layer.
fn start(fake: &Arc<FakeVirtio>, platforms: DmaPlatforms, waiter: &'static dyn Waiter) -> Result<Disk, IoFailure> {
    QueuedDisk::new(VirtioBlock::new(fake.transport(), platforms)?, waiter)
}

fn setup(medium: Medium, interface: Interface) -> (&'static SimulatedPlatform, Arc<FakeVirtio>, Disk) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtio::new(platform, disk_image(), medium, interface);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    (platform, fake, disk)
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

/// A small deterministic generator (xorshift64*), so that a failing run can be
/// repeated.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A request a test submits, and what it must leave behind.
struct Planned {
    operation: BlockOperation,
    lba: u64,
    count: u64,
    /// Where the blocks start in the buffer (even); the bytes around them must
    /// keep [`OLD_BYTE`].
    offset: u64,
    /// What a write writes.
    data: Vec<u8>,
}

impl Planned {
    fn length(&self) -> usize {
        (self.count * 512) as usize
    }
}

/// A read of `count` sectors from `lba` into the start of its buffer.
fn reading(lba: u64, count: u64) -> Planned {
    Planned { operation: BlockOperation::Read, lba, count, offset: 0, data: Vec::new() }
}

/// `requests` reads and writes of 1 to `max_sectors` sectors at random places,
/// each in its own region of the disk: they may finish in any order and every
/// byte is still known.
fn plan(seed: u64, requests: u64, max_sectors: u64) -> Vec<Planned> {
    let mut random = Random(seed);
    let region = SECTORS / requests;
    (0..requests)
        .map(|index| {
            let count = 1 + random.below(max_sectors.min(region));
            let lba = index * region + random.below(region - count + 1);
            let offset = 2 * random.below(300);
            let operation = if random.below(2) == 0 { BlockOperation::Read } else { BlockOperation::Write };
            let data = (0..count * 512).map(|_| random.next() as u8).collect();
            Planned { operation, lba, count, offset, data }
        })
        .collect()
}

/// Submits `planned` with a fresh buffer above 4 GiB, [`OLD_BYTE`] around the
/// blocks.
fn submit(disk: &Disk, platform: &'static SimulatedPlatform, planned: &Planned) -> RequestHandle {
    let size = planned.offset + planned.count * 512 + 64;
    let mut memory = buffer(platform, size, planned.operation.memory_direction());
    memory.write_bytes(0, &vec![OLD_BYTE; size as usize]).unwrap();
    if planned.operation == BlockOperation::Write {
        memory.write_bytes(planned.offset, &planned.data).unwrap();
    }
    let request = BlockRequest::new(planned.operation, planned.lba, planned.count, memory, planned.offset);
    disk.submit(request).unwrap()
}

/// Checks a finished request against the fake's disk: a read brought exactly
/// its blocks and left the rest of the buffer alone; a write put its bytes on
/// the disk.
fn check(fake: &FakeVirtio, planned: &Planned, finished: Finished) {
    let Finished { buffer, result } = finished;
    result
        .unwrap_or_else(|failure| panic!("{:?} of {} at {}: {failure}", planned.operation, planned.count, planned.lba));
    let memory = buffer.expect("a finished request gives its buffer back");
    let start = (planned.lba * 512) as usize;
    match planned.operation {
        BlockOperation::Read => {
            let contents = memory.to_vec(0, memory.length() as usize).unwrap();
            let (before, rest) = contents.split_at(planned.offset as usize);
            let (blocks, after) = rest.split_at(planned.length());
            assert_eq!(blocks, sectors(planned.lba, planned.count), "read of {} at {}", planned.count, planned.lba);
            assert!(before.iter().chain(after).all(|&byte| byte == OLD_BYTE), "a read wrote outside its blocks");
        }
        BlockOperation::Write => {
            assert_eq!(&fake.disk.lock()[start..start + planned.length()], planned.data.as_slice());
        }
    }
}

/// Checks that a request stopped before the device ran it moved nothing: a
/// read's buffer keeps its old bytes, a write's blocks keep the disk's.
fn check_untouched(fake: &FakeVirtio, planned: &Planned, buffer: &DmaBuffer) {
    let start = (planned.lba * 512) as usize;
    match planned.operation {
        BlockOperation::Read => {
            let contents = buffer.to_vec(0, buffer.length() as usize).unwrap();
            assert!(contents.iter().all(|&byte| byte == OLD_BYTE), "a stopped read changed its buffer");
        }
        BlockOperation::Write => {
            let disk = fake.disk.lock();
            assert_eq!(disk[start..start + planned.length()], sectors(planned.lba, planned.count), "a stopped write");
        }
    }
}

fn reads_every_sector_byte_exact(interface: Interface) {
    let (platform, _fake, disk) = setup(Medium::Writable, interface);
    assert_eq!(disk.block_count(), SECTORS);
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 256 * 512, IoDirection::In);
    for first in (0..SECTORS).step_by(256) {
        disk.read(first, 256, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 256 * 512).unwrap(), sectors(first, 256), "sectors from {first}");
    }
    let after = platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "a 64-bit device needs no bouncing");
}

fn writes_reach_the_disk_and_read_back(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let mut source = buffer(platform, 8 * 512, IoDirection::Out);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 13 % 251) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    disk.write(100, 8, &mut source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[100 * 512..108 * 512], data.as_slice());
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    disk.read(100, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, data.len()).unwrap(), data);
}

fn forced_double_buffering_still_moves_the_right_bytes(interface: Interface) {
    // Every transfer bounces, so a missing synchronize or complete would lose data.
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    disk.set_double_buffering(DoubleBuffering::Forced);
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 64 * 512, IoDirection::In);
    disk.read(10, 64, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 64 * 512).unwrap(), sectors(10, 64));
    let mut source = buffer(platform, 4 * 512, IoDirection::Out);
    source.write_bytes(0, &[0xa5; 2048]).unwrap();
    disk.write(0, 4, &mut source, 0).unwrap();
    assert_eq!(&fake.disk.lock()[..2048], &[0xa5; 2048][..]);
    let after = platform.accounting().stats();
    let (from_bounce, to_bounce) =
        (after.bytes_from_bounce - before.bytes_from_bounce, after.bytes_to_bounce - before.bytes_to_bounce);
    assert!(from_bounce >= 64 * 512 && to_bounce >= 2048, "{before:?} -> {after:?}");
    // Only the queue stays prepared, for the device's whole life.
    assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
}

fn bad_requests_are_refused_and_the_device_stays_usable(interface: Interface) {
    let (platform, _fake, disk) = setup(Medium::Writable, interface);
    let mut target = buffer(platform, 4096, IoDirection::In);
    assert_eq!(disk.read(SECTORS - 1, 2, &mut target, 0).unwrap_err(), IoReturn::BadArgument, "past the end");
    assert_eq!(disk.read(SECTORS, 1, &mut target, 0).unwrap_err(), IoReturn::BadArgument);
    assert_eq!(disk.read(0, 0, &mut target, 0).unwrap_err(), IoReturn::BadArgument, "zero length");
    assert_eq!(disk.read(0, 9, &mut target, 0).unwrap_err(), IoReturn::Overrun, "buffer too small");
    assert_eq!(disk.read(0, 1, &mut target, 1).unwrap_err(), IoReturn::NotAligned, "odd offset");
    disk.read(SECTORS - 8, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), sectors(SECTORS - 8, 8));
}

fn a_restricted_specification_bounces_for_one_transfer_only(interface: Interface) {
    let (platform, _fake, disk) = setup(Medium::Writable, interface);
    let mut target = buffer(platform, 16 * 512, IoDirection::In);
    let before = platform.accounting().stats();
    let narrow = Specification { num_address_bits: 32, boundary: 4096, ..Specification::UNLIMITED_64 };
    let options = TransferOptions { restrict: Some(narrow), force_double_buffer: false };
    disk.transfer(BlockOperation::Read, 5, 16, &mut target, 0, &options).unwrap();
    let bounced = platform.accounting().stats().bytes_from_bounce - before.bytes_from_bounce;
    assert_eq!(bounced, 16 * 512, "a 32-bit experiment bounces high memory");
    assert!(disk.last_segments().iter().all(|s| s.end() <= 1 << 32 && s.length <= 4096));
    assert_eq!(target.to_vec(0, 16 * 512).unwrap(), sectors(5, 16));
    disk.read(5, 16, &mut target, 0).unwrap();
    let bounced = platform.accounting().stats().bytes_from_bounce - before.bytes_from_bounce;
    assert_eq!(bounced, 16 * 512, "the next transfer is direct again");
}

fn device_errors_are_reported(interface: Interface) {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    Arc::get_mut(&mut fake).unwrap().bad_sector = Some(50);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    let before = platform.accounting().stats();
    let mut target = buffer(platform, 4096, IoDirection::In);
    let failure = disk.read(48, 4, &mut target, 0).unwrap_err();
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::RequestStatus(STATUS_IOERR))));
    assert_eq!(disk.read(0, 4, &mut target, 0), Ok(()), "still usable");
    let after = platform.accounting().stats();
    assert_eq!(after.prepared_commands, before.prepared_commands, "only the queue stays prepared");
}

fn read_only_disks_refuse_writes(interface: Interface) {
    let (platform, _fake, disk) = setup(Medium::ReadOnly, interface);
    let mut source = buffer(platform, 512, IoDirection::Out);
    assert_eq!(disk.write(0, 1, &mut source, 0).unwrap_err(), IoReturn::NotPermitted);
}

fn scattered_buffers_use_the_slots_descriptors_or_bounce_whole(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let layout = disk.hardware().slot_layout();
    assert_eq!((layout.descriptors_per_slot, layout.data_segments), (8, 6), "QEMU's queue: 8 descriptors a slot");
    // Separately allocated frames, alternately above and below 4 GiB so that
    // no two are neighbours: one data segment each.
    let scattered = |pieces: usize| {
        let pieces: Vec<_> = (0..pieces)
            .map(|i| {
                (4096, if i % 2 == 0 { Constraints::NONE } else { Constraints::below(x86_64::PhysAddr::new(1 << 32)) })
            })
            .collect();
        let descriptor = IoMemoryDescriptor::allocate_scattered(platform, &pieces, IoDirection::In).unwrap();
        DmaBuffer::from_descriptor(descriptor).unwrap()
    };
    let mut six = scattered(6);
    let before = platform.accounting().stats();
    disk.read(0, 48, &mut six, 0).unwrap();
    assert_eq!(*fake.longest_chain.lock(), 8, "header, 6 data segments, status: all of a slot");
    assert_eq!(disk.last_segments().len(), 6);
    assert_eq!(six.to_vec(0, 48 * 512).unwrap(), sectors(0, 48));
    assert_eq!(platform.accounting().stats().bounced_transfers, before.bounced_transfers, "nothing bounced");

    // One piece more than a slot holds: the DMA layer double-buffers the whole
    // transfer into one contiguous bounce buffer, one segment.
    let mut seven = scattered(7);
    disk.read(100, 56, &mut seven, 0).unwrap();
    assert_eq!(disk.last_segments().len(), 1);
    assert_eq!(seven.to_vec(0, 56 * 512).unwrap(), sectors(100, 56));
    let after = platform.accounting().stats();
    assert_eq!(after.bounced_transfers - before.bounced_transfers, 1);
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 56 * 512);
    assert_eq!(*fake.longest_chain.lock(), 8, "no chain ever left its slot");
}

fn a_short_read_is_an_underrun_and_copies_back_only_what_the_device_wrote(interface: Interface) {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    Arc::get_mut(&mut fake).unwrap().read_limit = Some(1000);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    // An `In` buffer above 4 GiB, read by a 32-bit device: the data goes through
    // bounce memory that is not filled first, so anything copied back beyond
    // what the device wrote would be stale bytes.
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    assert!(lies_above_4_gib(&target));
    target.write_bytes(0, &[OLD_BYTE; 8 * 512]).unwrap();
    let before = platform.accounting().stats();
    let failure = disk.transfer(BlockOperation::Read, 10, 8, &mut target, 0, &restricted_to_32_bits()).unwrap_err();
    assert_eq!(failure, IoFailure::new(IoReturn::Underrun, Cause::ShortTransfer { moved: 1000, prepared: 8 * 512 }));
    let after = platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 1000, "the data bounced; 1000 bytes came back");
    let contents = target.to_vec(0, 8 * 512).unwrap();
    assert_eq!(contents[..1000], sectors(10, 8)[..1000], "what the device wrote");
    assert!(!contents[1000..].contains(&STALE_BYTE), "no stale bounce memory reached the buffer");
    assert!(contents[1000..].iter().all(|&byte| byte == OLD_BYTE), "the rest keeps its old bytes");
    assert_eq!(after.pages_in_use, before.pages_in_use, "the bounce memory was freed");
    disk.read(0, 1, &mut target, 0).expect("an underrun does not stop the device (one sector fits the limit)");
}

fn the_rings_wrap_around_after_as_many_requests_as_the_queue_has_entries(interface: Interface) {
    // 300 requests through a 256-entry queue, three in flight at a time (so
    // that ring slot i names slot i % 3's chain): the available and used
    // rings' slots start again at 0 after 256, their indexes keep counting.
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    assert_eq!(fake.queue_size(), 256);
    fake.set_answer(Answer::Held);
    for batch in 0..100 {
        let planned: Vec<Planned> = (0..3).map(|request| reading((batch * 3 + request) * 7 % SECTORS, 1)).collect();
        let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
        assert_eq!(fake.finish_held(FinishOrder::AsTaken), 3, "batch {batch}");
        disk.interrupt();
        for (planned, handle) in planned.iter().zip(handles) {
            check(&fake, planned, disk.wait(handle));
        }
    }
}

fn a_device_that_misreports_a_chain_is_not_believed(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    let mut read = |misreport| {
        *fake.misreport.lock() = misreport;
        target.write_bytes(0, &[OLD_BYTE; 8 * 512]).unwrap();
        disk.read(5, 8, &mut target, 0).map(|()| target.to_vec(0, 8 * 512).unwrap())
    };
    // More than the chain lets the device write is no success (nor cut down
    // to one): the request fails with the numbers, and the device goes on.
    let above = VirtioCause::UsedLengthAboveChain { queue: 0, length: 8 * 512 + 1 + 4096, writable: 8 * 512 + 1 };
    assert_eq!(
        read(Misreport::LengthAbovePrepared).err(),
        Some(IoFailure::new(IoReturn::Overrun, Cause::Virtio(above)))
    );
    // A status the device never wrote is no success, whatever the length says.
    let unwritten = IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::RequestStatus(0xff)));
    assert_eq!(read(Misreport::StatusUnwritten).err(), Some(unwritten));
    // A chain returned twice is a used index ahead of the one chain in flight:
    // no element is believed, the request fails with the cause, and the device
    // is reset before any memory goes back (a stale copy never ends the next
    // request in the same slot).
    let ahead = VirtioCause::UsedIndexAhead { queue: 0, index: 4, last_seen: 2, in_flight: 1 };
    assert_eq!(read(Misreport::ChainTwice).err(), Some(IoFailure::new(IoReturn::IoError, Cause::Virtio(ahead))));
    assert_eq!(fake.resets.lock().last().map(|reset| reset.queue_memory_allocated), Some(true));
    *fake.misreport.lock() = Misreport::Honest;
    disk.start().unwrap();
    assert_eq!(read(Misreport::Honest).unwrap(), sectors(5, 8));
    // An id that heads no chain (the descriptor after a head) ends no request:
    // the device is stopped at once, reset before the memory goes back.
    let not_a_head = VirtioCause::UsedIdNotAHead { queue: 0, id: 1 };
    assert_eq!(read(Misreport::IdOfNoChain).err(), Some(IoFailure::new(IoReturn::IoError, Cause::Virtio(not_a_head))));
    assert_eq!(fake.resets.lock().last().map(|reset| reset.queue_memory_allocated), Some(true));
    *fake.misreport.lock() = Misreport::Honest;
    disk.start().unwrap();
    disk.read(5, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(5, 8), "started again");
}

fn a_timed_out_read_resets_the_device_before_any_memory_goes_back(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    assert!(lies_above_4_gib(&target));
    target.write_bytes(0, &[OLD_BYTE; 8 * 512]).unwrap();
    let before = platform.accounting().stats();
    let queue_address = disk.hardware().queue_address().unwrap();
    fake.set_answer(Answer::Held);
    let failure = disk.transfer(BlockOperation::Read, 0, 8, &mut target, 0, &restricted_to_32_bits()).unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    // The timeout says what the device was doing: DRIVER_OK and the rest set.
    let last = DeviceStatus::Virtio { device_status: STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK };
    let features_ok = DeviceStatus::Virtio {
        device_status: STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    };
    match failure.cause() {
        Cause::TimedOut { milliseconds: REQUEST_TIMEOUT_MS, last: Some(said) } => {
            assert!(said == last || said == features_ok, "{failure}")
        }
        other => panic!("a timeout carrying the device's status, not {other:?}"),
    }

    let reset = *fake.resets.lock().last().unwrap();
    let expected =
        Reset { queue_address, queue_memory_allocated: true, chains_forgotten: 1, chain_memory_allocated: true };
    assert_eq!(reset, expected, "the device was reset holding the chain, before any of its memory was freed");
    assert!(!platform.is_allocated(queue_address), "the queue was released after the reset");
    let after = platform.accounting().stats();
    assert_eq!(after.bounced_transfers - before.bounced_transfers, 1, "the data went through bounce memory");
    assert_eq!(after.pages_in_use, before.pages_in_use, "which was freed after the reset");
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "nothing copied back from a stopped device");
    assert_eq!((after.leaked_pages, after.leaked_transfers), (before.leaked_pages, before.leaked_transfers));

    assert_eq!(fake.finish_held(FinishOrder::AsTaken), 0, "the reset device forgot the chain");
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), vec![OLD_BYTE; 8 * 512], "the buffer keeps its old bytes");
    let refused = disk.read(0, 1, &mut target, 0).unwrap_err();
    assert_eq!(refused, IoFailure::new(IoReturn::NotReady, Cause::DriverStopped), "stopped until started");

    fake.set_answer(Answer::AtNotify);
    disk.start().unwrap();
    disk.read(0, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(0, 8), "started again");
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

/// A waiter during whose wait the holding device answers: before each look,
/// the device finishes the chains it holds, in `order`, as a slow device does
/// within the timeout.
struct FinishWhileWaiting(Arc<FakeVirtio>, FinishOrder);

impl Waiter for FinishWhileWaiting {
    fn wait_until(&self, _timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
        // Each look may start requests that waited (for a slot, or for bounce
        // memory): the next look finishes them.
        let finished = (0..64).any(|_| {
            self.0.finish_held(self.1);
            done()
        });
        if finished { Ok(()) } else { Err(IoReturn::Timeout) }
    }
}

fn a_late_answer_within_the_timeout_completes_the_read(interface: Interface) {
    // The other side of the timeout test: without a reset, the chains a holding
    // device took do run.
    let platform = SimulatedPlatform::leak(64);
    let fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    let waiter = Box::leak(Box::new(FinishWhileWaiting(fake.clone(), FinishOrder::AsTaken)));
    let disk = start(&fake, platforms(platform), waiter).unwrap();
    fake.set_answer(Answer::Held);
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    disk.read(3, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(3, 8));
    assert_eq!(fake.held(), 0, "nothing left over");
}

fn a_failure_after_queue_setup_resets_the_device_before_freeing_the_queue(interface: Interface) {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    Arc::get_mut(&mut fake).unwrap().seg_max = 0;
    let before = platform.accounting().stats();
    let Err(failure) = start(&fake, platforms(platform), &WAITER) else {
        panic!("a device that takes no data segments is refused");
    };
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::NoDataSegments)));
    let reset = *fake.resets.lock().last().unwrap();
    assert_ne!(reset.queue_address, 0, "the device had the queue when it was reset");
    assert!(reset.queue_memory_allocated, "reset before the queue memory was freed");
    assert!(!platform.is_allocated(reset.queue_address), "and freed after the reset");
    assert_eq!(fake.device_status(), STATUS_FAILED, "FAILED comes after the reset, not instead of it");
    let after = platform.accounting().stats();
    assert_eq!(after.prepared_commands, before.prepared_commands);
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

fn dropping_the_driver_resets_the_device_before_releasing_the_queue(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let mut target = buffer(platform, 512, IoDirection::In);
    disk.read(0, 1, &mut target, 0).unwrap();
    let queue_address = disk.hardware().queue_address().unwrap();
    let resets_before = fake.resets.lock().len();
    let before = platform.accounting().stats();
    drop(disk);
    let resets = fake.resets.lock().clone();
    assert_eq!(resets.len(), resets_before + 1, "dropping resets the device once");
    let expected =
        Reset { queue_address, queue_memory_allocated: true, chains_forgotten: 0, chain_memory_allocated: true };
    assert_eq!(resets[resets_before], expected, "reset while the queue memory was still allocated");
    assert!(!platform.is_allocated(queue_address), "the queue is released after the reset");
    let after = platform.accounting().stats();
    // The ring and the request area (each slot's header and status) are the
    // driver's two coherent areas: each counts as one prepared command.
    assert_eq!(after.prepared_commands + 2, before.prepared_commands, "the queue and the request area went back");
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

fn thirty_two_requests_in_flight_finish_out_of_order_byte_exact(interface: Interface) {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x0123_4567_89ab_cdef] {
        let (platform, fake, disk) = setup(Medium::Writable, interface);
        // Half of the rounds bounce everything, so that each request's bounce
        // memory must come back to its own buffer, whatever the order.
        let policy = if seed & 1 == 1 { DoubleBuffering::Forced } else { DoubleBuffering::AsNeeded };
        disk.set_double_buffering(policy);
        let before = platform.accounting().stats();
        fake.set_answer(Answer::Held);
        let planned = plan(seed, 32, 64);
        let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
        let stats = disk.stats();
        assert_eq!((stats.in_flight, stats.queued, stats.deepest), (32, 0, 32), "{stats:?}");
        assert_eq!(fake.held(), 32, "the device holds all 32 chains at once");

        // One more waits in software for a slot.
        let extra = reading(0, 1);
        let extra_handle = submit(&disk, platform, &extra);
        assert_eq!(disk.stats().queued, 1);

        // The device finishes the newest first, then interrupts.
        assert_eq!(fake.finish_held(FinishOrder::Reverse), 32);
        disk.interrupt();
        for (planned, handle) in planned.iter().zip(handles) {
            check(&fake, planned, disk.wait(handle));
        }
        // The freed slots took the waiting request; the device holds it now.
        assert_eq!(fake.finish_held(FinishOrder::AsTaken), 1);
        check(&fake, &extra, disk.wait(extra_handle));

        let stats = disk.stats();
        assert_eq!((stats.submitted, stats.finished, stats.failed), (33, 33, 0), "{stats:?}");
        assert_eq!(stats.out_of_order, 31, "each but the oldest finished before an older one: {stats:?}");
        assert_eq!((stats.in_flight, stats.deepest, stats.interrupts), (0, 32, 1), "{stats:?}");
        let after = platform.accounting().stats();
        assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
        if policy == DoubleBuffering::Forced {
            // Each buffer was moved whole into bounce memory, and exactly each
            // read's blocks came back.
            let all: usize = planned.iter().chain([&extra]).map(Planned::length).sum();
            let reads = planned.iter().chain([&extra]).filter(|planned| planned.operation == BlockOperation::Read);
            let read: usize = reads.map(Planned::length).sum();
            assert_eq!(after.bytes_to_bounce - before.bytes_to_bounce, all as u64);
            assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, read as u64);
        }
        assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
    }
}

fn an_io_error_fails_only_its_request(interface: Interface) {
    let platform = SimulatedPlatform::leak(64);
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    Arc::get_mut(&mut fake).unwrap().bad_sector = Some(50);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    fake.set_answer(Answer::Held);
    let planned = [reading(0, 8), reading(48, 4), reading(100, 8)];
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    assert_eq!(fake.finish_held(FinishOrder::Reverse), 3);
    let mut results = planned.iter().zip(handles).map(|(planned, handle)| (planned, disk.wait(handle)));
    let (first, finished) = results.next().unwrap();
    check(&fake, first, finished);
    let (bad, finished) = results.next().unwrap();
    let failure = finished.result.unwrap_err();
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::RequestStatus(STATUS_IOERR))));
    check_untouched(&fake, bad, &finished.buffer.expect("a failed request's buffer comes back"));
    let (last, finished) = results.next().unwrap();
    check(&fake, last, finished);

    let stats = disk.stats();
    assert_eq!((stats.finished, stats.failed), (3, 1), "{stats:?}");
    let resets = fake.resets.lock().len();
    fake.set_answer(Answer::AtNotify);
    let mut target = buffer(platform, 4096, IoDirection::In);
    disk.read(0, 8, &mut target, 0).expect("the device keeps running");
    assert_eq!(fake.resets.lock().len(), resets, "nobody reset it");
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

fn stopping_with_requests_in_flight_resets_before_releasing_and_restart_works(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    // Everything bounces: the memory the device holds is bounce memory that
    // the driver frees when it completes the requests.
    disk.set_double_buffering(DoubleBuffering::Forced);
    let before = platform.accounting().stats();
    let queue_address = disk.hardware().queue_address().unwrap();
    fake.set_answer(Answer::Held);
    let planned = plan(7, 8, 16);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    let held = fake.held_data();
    assert!(held.iter().all(|&(address, length)| fake.is_allocated(address, length)));

    let report = disk.stop().unwrap();
    assert_eq!(report, StopReport { drained: 0, aborted: 8, prepared_left: 0 });
    let reset = *fake.resets.lock().last().unwrap();
    let expected =
        Reset { queue_address, queue_memory_allocated: true, chains_forgotten: 8, chain_memory_allocated: true };
    assert_eq!(reset, expected, "reset holding the 8 chains, with their memory and the ring still allocated");
    assert!(!platform.is_allocated(queue_address), "the ring was freed after the reset");
    assert_eq!(fake.device_status(), 0, "left reset, not FAILED: `start` brings it back");
    let freed = held.iter().all(|&(address, length)| !platform.is_allocated(address) && length > 0);
    assert!(freed, "and the bounce memory the chains named");
    let after = platform.accounting().stats();
    assert_eq!((after.pages_in_use, after.bytes_from_bounce), (before.pages_in_use, before.bytes_from_bounce));
    assert_eq!(after.prepared_commands + 2, before.prepared_commands, "nothing prepared but the ring and request area");

    for (planned, handle) in planned.iter().zip(handles) {
        let Finished { buffer, result } = disk.wait(handle);
        assert_eq!(result, Err(IoFailure::new(IoReturn::Aborted, Cause::DriverStopped)));
        check_untouched(&fake, planned, &buffer.expect("a stopped request's buffer comes back"));
    }
    assert_eq!(fake.finish_held(FinishOrder::AsTaken), 0, "the reset device forgot the chains");
    let mut target = buffer(platform, 4096, IoDirection::In);
    let refused = disk.read(0, 8, &mut target, 0).unwrap_err();
    assert_eq!(refused, IoFailure::new(IoReturn::NotReady, Cause::DriverStopped));

    disk.start().unwrap();
    let restarted = disk.hardware().queue_address().expect("a new queue");
    assert!(platform.is_allocated(restarted));
    assert_eq!(fake.queue_size(), 256, "the device has a queue again");
    let planned = plan(8, 32, 16);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    assert_eq!(fake.finish_held(FinishOrder::Reverse), 32, "all 32 slots work again");
    for (planned, handle) in planned.iter().zip(handles) {
        check(&fake, planned, disk.wait(handle));
    }
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

fn a_tiny_bounce_budget_defers_loads_and_a_request_larger_than_the_budget_fails_at_once(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    // The device holds what it is given until someone waits: requests pile up
    // in flight, and their bounce memory with them.
    let waiter = Box::leak(Box::new(FinishWhileWaiting(fake.clone(), FinishOrder::Reverse)));
    let disk = start(&fake, platforms(platform), waiter).unwrap();
    fake.set_answer(Answer::Held);
    let before = platform.accounting().stats();
    platform.accounting().set_page_limit(before.pages_in_use + 4);
    disk.set_double_buffering(DoubleBuffering::Forced);
    // Requests of up to 16 sectors (two pages each): two or three fit the
    // budget at once; the others wait their turn.
    let planned = plan(11, 32, 16);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    for (planned, handle) in planned.iter().zip(handles) {
        check(&fake, planned, disk.wait(handle));
    }
    let stats = disk.stats();
    assert!(stats.deferred_loads > 0, "{stats:?}");
    assert_eq!((stats.finished, stats.failed), (32, 0), "{stats:?}");
    assert!(platform.accounting().stats().pages_in_use <= before.pages_in_use + 4);

    // Five pages can never fit a budget of four: no waiting.
    let mut large = buffer(platform, 40 * 512, IoDirection::In);
    let failure = disk.read(0, 40, &mut large, 0).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert!(
        matches!(failure.cause(), Cause::BounceBudgetSpent { pages: 5, limit, .. } if limit == before.pages_in_use + 4)
    );
    // And a request that asked not to wait fails at once when the budget is
    // spent only for now.
    let first = submit(&disk, platform, &reading(0, 16));
    let second = submit(&disk, platform, &reading(16, 16));
    let mut hurried = BlockRequest::new(BlockOperation::Read, 32, 16, buffer(platform, 16 * 512, IoDirection::In), 0);
    hurried.deferral = Deferral::FailAtOnce;
    let hurried = disk.submit(hurried).unwrap();
    assert!(hurried.is_finished(), "failed in the submission, without waiting");
    assert_eq!(fake.held(), 2, "while the device holds the budget's four pages");
    let hurried = disk.wait(hurried);
    let failure = hurried.result.unwrap_err();
    assert!(matches!(failure.cause(), Cause::BounceBudgetSpent { pages: 2, .. }), "{failure}");
    assert!(hurried.buffer.is_some());
    for handle in [first, second] {
        disk.wait(handle).result.unwrap();
    }
    let after = platform.accounting().stats();
    assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}

/// Both transports read the status back after writing 0 (virtio 1.x, 2.1.2 and
/// 4.1.4.3.2: the driver waits for a read of 0 before it may take the device
/// for reset); a legacy device that does not confirm is treated as still running.
fn a_device_that_ignores_the_reset_keeps_its_memory_for_ever_and_restart_waits_for_a_real_reset(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    disk.set_double_buffering(DoubleBuffering::Forced);
    let before = platform.accounting().stats();
    let queue_address = disk.hardware().queue_address().unwrap();
    fake.set_answer(Answer::Held);
    let planned = plan(3, 4, 8);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    fake.set_reset_response(ResetResponse::Ignore);
    let report = disk.stop().unwrap();
    assert_eq!(report, StopReport { drained: 0, aborted: 4, prepared_left: 0 }, "the commands came back");
    for handle in handles {
        let Finished { buffer, result } = disk.wait(handle);
        assert!(buffer.is_none(), "the buffer stays the device's for ever");
        assert_eq!(result, Err(IoFailure::new(IoReturn::Aborted, Cause::DriverStopped)));
    }
    assert!(platform.is_allocated(queue_address), "the ring is leaked, not freed");
    let after = platform.accounting().stats();
    let leaked = after.leaked_transfers - before.leaked_transfers;
    assert_eq!(leaked, 4 + 2, "each request's data, the ring and the request area (headers and statuses)");
    let log = platform.accounting().misuse_log();
    assert_eq!(log.iter().filter(|report| report.misuse == Misuse::AbandonedWhileDeviceOwned).count(), 4);
    // The hung device wakes up and writes: only into memory never freed.
    assert_eq!(fake.finish_held(FinishOrder::AsTaken), 4);

    let failure = disk.start().unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout, "no restart on a device that does not reset");
    fake.set_reset_response(ResetResponse::Confirm);
    fake.set_answer(Answer::AtNotify);
    disk.start().unwrap();
    // Every slot works, those whose buffers were abandoned too.
    let planned = plan(4, 32, 8);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    for (planned, handle) in planned.iter().zip(handles) {
        check(&fake, planned, disk.wait(handle));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_transfers_match_the_disk(
        interface in prop_oneof![Just(Interface::Legacy), Just(Interface::Modern)],
        requests in prop::collection::vec((0u64..SECTORS, 1u64..40, 0u64..64, any::<bool>()), 1..12),
    ) {
        let (platform, fake, disk) = setup(Medium::Writable, interface);
        let before = platform.accounting().stats();
        for (lba, count, offset_words, bounce) in requests {
            let count = count.min(SECTORS - lba);
            let offset = offset_words * 2;
            disk.set_double_buffering(if bounce { DoubleBuffering::Forced } else { DoubleBuffering::AsNeeded });
            let mut target = buffer(platform, offset + count * 512, IoDirection::In);
            disk.read(lba, count, &mut target, offset).unwrap();
            let start = (lba * 512) as usize;
            let expected = fake.disk.lock()[start..start + (count * 512) as usize].to_vec();
            prop_assert_eq!(target.to_vec(offset, expected.len()).unwrap(), expected);
        }
        prop_assert_eq!(platform.accounting().stats().pages_in_use, before.pages_in_use);
    }
}

/// A fake whose settings `adjust` changes before the driver sees it.
fn adjusted_fake(
    platform: &'static SimulatedPlatform,
    interface: Interface,
    adjust: impl FnOnce(&mut FakeVirtio),
) -> Arc<FakeVirtio> {
    let mut fake = FakeVirtio::new(platform, disk_image(), Medium::Writable, interface);
    adjust(Arc::get_mut(&mut fake).expect("not shared yet"));
    fake
}

#[test]
fn a_modern_device_that_refuses_the_features_is_a_clear_error_and_gets_no_memory() {
    let platform = SimulatedPlatform::leak(64);
    let fake = adjusted_fake(platform, Interface::Modern, |fake| fake.feature_check = FeatureCheck::Refuse);
    let before = platform.accounting().stats();
    let Err(failure) = start(&fake, platforms(platform), &WAITER) else {
        panic!("a device that clears FEATURES_OK is refused");
    };
    let cause = Cause::Virtio(VirtioCause::FeaturesRefused);
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, cause));
    assert!(failure.to_string().contains("FEATURES_OK"), "{failure}");
    assert_eq!(fake.device_status(), STATUS_FAILED, "the driver reset the device and gave up");
    assert_eq!(fake.queue_size(), 0, "no queue was given to the device");
    let after = platform.accounting().stats();
    assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
}

#[test]
fn a_modern_device_without_version_1_is_refused_before_features_are_written() {
    let platform = SimulatedPlatform::leak(64);
    let fake = adjusted_fake(platform, Interface::Modern, |fake| fake.offered &= !FEATURE_VERSION_1);
    let Err(failure) = start(&fake, platforms(platform), &WAITER) else {
        panic!("a modern device must offer VERSION_1");
    };
    assert_eq!(failure.code(), IoReturn::IoError);
    assert!(failure.to_string().contains("VERSION_1"), "{failure}");
    assert_eq!(fake.accepted(), 0);
}

#[test]
fn access_platform_is_accepted_when_offered_and_puts_the_dma_on_the_functions_platform() {
    // Two machines: the fake device only sees `function`'s memory, so reads
    // come back right only if the driver put everything there.
    let function = SimulatedPlatform::leak(64);
    let physical = SimulatedPlatform::leak(64);
    let fake = FakeVirtio::new(function, disk_image(), Medium::Writable, Interface::Modern);
    let disk = start(&fake, DmaPlatforms { physical, function }, &WAITER).unwrap();
    let (offered, accepted) = disk.hardware().features();
    assert_ne!(offered & FEATURE_ACCESS_PLATFORM, 0);
    assert_eq!(accepted & (FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM), FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM);
    assert_eq!(fake.accepted(), accepted, "the device got the same 64 bits");
    assert_ne!(fake.device_status() & STATUS_FEATURES_OK, 0, "FEATURES_OK stayed set");
    assert_eq!(disk.hardware().dma_route(), DmaRoute::Platform);
    assert!(function.is_allocated(disk.hardware().queue_address().unwrap()), "the ring is on the function's platform");
    let mut target = buffer(function, 8 * 512, IoDirection::In);
    disk.read(40, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(40, 8));
    assert_eq!(physical.accounting().stats().prepared_commands, 0, "nothing went through the bare platform");
}

#[test]
fn without_access_platform_and_on_the_legacy_interface_the_dma_uses_physical_addresses() {
    for interface in [Interface::Legacy, Interface::Modern] {
        let physical = SimulatedPlatform::leak(64);
        let function = SimulatedPlatform::leak(64);
        let fake = adjusted_fake(physical, interface, |fake| fake.offered &= !FEATURE_ACCESS_PLATFORM);
        let disk = start(&fake, DmaPlatforms { physical, function }, &WAITER).unwrap();
        let expected = match interface {
            Interface::Legacy => DmaRoute::PhysicalLegacy,
            Interface::Modern => DmaRoute::PhysicalNoAccessPlatform,
        };
        assert_eq!(disk.hardware().dma_route(), expected);
        assert_eq!(disk.hardware().features().1 & FEATURE_ACCESS_PLATFORM, 0);
        assert!(
            disk.hardware().dma_description().starts_with("physical addresses"),
            "{}",
            disk.hardware().dma_description()
        );
        assert!(
            physical.is_allocated(disk.hardware().queue_address().unwrap()),
            "{interface:?}: the ring is on the bare platform"
        );
        let mut target = buffer(physical, 4 * 512, IoDirection::In);
        disk.read(7, 4, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 4 * 512).unwrap(), sectors(7, 4));
        assert_eq!(function.accounting().stats().prepared_commands, 0, "{interface:?}");
    }
}

#[test]
fn the_modern_notify_lands_at_queue_notify_off_times_the_multiplier() {
    let platform = SimulatedPlatform::leak(64);
    let fake = adjusted_fake(platform, Interface::Modern, |fake| {
        fake.queue_notify_off = 5;
        fake.notify_off_multiplier = 8;
    });
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    let mut target = buffer(platform, 512, IoDirection::In);
    disk.read(0, 1, &mut target, 0).unwrap();
    disk.read(1, 1, &mut target, 0).unwrap();
    assert_eq!(*fake.notify_offsets.lock(), [40, 40], "5 * 8 bytes into the notify structure, every time");
}

#[test]
fn a_notify_offset_outside_the_notify_structure_fails_the_start_and_frees_the_queue() {
    let platform = SimulatedPlatform::leak(64);
    let fake = adjusted_fake(platform, Interface::Modern, |fake| fake.queue_notify_off = 0x400);
    let before = platform.accounting().stats();
    let Err(failure) = start(&fake, platforms(platform), &WAITER) else {
        panic!("0x400 * 4 lies past the 0x1000-byte notify structure");
    };
    assert_eq!(
        failure,
        IoFailure::new(IoReturn::IoError, Cause::OutOfRange { offset: 0x1000, length: 2, size: 0x1000 })
    );
    assert_eq!(fake.device_status(), STATUS_FAILED);
    assert_eq!(platform.accounting().stats().pages_in_use, before.pages_in_use, "the ring was freed");
}

#[test]
fn a_modern_driver_writes_a_smaller_queue_size_than_the_maximum() {
    let platform = SimulatedPlatform::leak(64);
    let fake = adjusted_fake(platform, Interface::Modern, |fake| fake.max_queue_size = 1024);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    assert_eq!((disk.hardware().queue_size(), fake.queue_size()), (QUEUE_SIZE_LIMIT, QUEUE_SIZE_LIMIT));
    let mut target = buffer(platform, 64 * 512, IoDirection::In);
    disk.read(100, 64, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 64 * 512).unwrap(), sectors(100, 64));
    // A legacy device's size is the device's: the driver takes all of it, and
    // each of the 32 slots gets a larger share.
    let fake = adjusted_fake(platform, Interface::Legacy, |fake| fake.max_queue_size = 512);
    let disk = start(&fake, platforms(platform), &WAITER).unwrap();
    assert_eq!(disk.hardware().queue_size(), 512);
    let layout = disk.hardware().slot_layout();
    assert_eq!((layout.depth, layout.descriptors_per_slot, layout.data_segments), (32, 16, 14));
}

#[test]
fn both_transports_read_the_same_configuration() {
    for interface in [Interface::Legacy, Interface::Modern] {
        let (_platform, fake, disk) = setup(Medium::Writable, interface);
        assert_eq!(disk.block_count(), SECTORS, "{interface:?}");
        assert_ne!(disk.hardware().features().1 & FEATURE_SEG_MAX, 0, "{interface:?}");
        assert!(disk.description().contains(interface.name()), "{}", disk.description());
        assert_eq!(fake.queue_size(), 256);
        assert_eq!(disk.queue_depth(), 32, "{interface:?}");
        assert!(disk.description().contains("32 slots of 8 descriptors"), "{}", disk.description());
    }
}
