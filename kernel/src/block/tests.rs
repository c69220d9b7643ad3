//! The block layer against a fake disk whose device finishes requests when and
//! in the order a test says, moving data only through the segments it was given.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;

use super::*;
use crate::dma::simulated::SimulatedPlatform;
use crate::dma::{
    ByteCount, Cause, DmaBuffer, DmaPlatform, IoDirection, IoFailure, IoReturn, LentTransfer, Segment, Specification,
};
use crate::memory::{Constraints, FRAME_SIZE};
use crate::time::Waiter;

mod byte_count_tests;
mod flush_tests;
mod reset_tests;

const BLOCK: u64 = 512;
const BLOCKS: u64 = 4096;

/// Looks a few times, then gives up: the fake never finishes on its own.
struct Impatient;

impl Waiter for Impatient {
    fn wait_until(&self, _timeout_ms: u64, done: &mut dyn FnMut() -> bool) -> Result<(), IoReturn> {
        if (0..3).any(|_| done()) { Ok(()) } else { Err(IoReturn::Timeout) }
    }
}

static WAITER: Impatient = Impatient;

/// When the fake device finishes what it is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finishing {
    /// As soon as a request starts.
    AtOnce,
    /// Only when the test calls `finish`.
    WhenTold,
}

/// Whether the fake device asks for a reset when it is looked at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fatal {
    Healthy,
    /// At the next `collect`, then healthy again.
    Once,
    /// At every `collect`: a device that dies again after every reset.
    Always,
}

/// The fake device's fatal error.
const FATAL: IoFailure = IoFailure::new(IoReturn::IoError, Cause::Other("the fake device's fatal error"));

/// What the fake device was told for one slot: the command and the segments,
/// copied at `program` (a device knows addresses, not buffers; a flush has none).
struct Programmed {
    command: SlotCommand,
    segments: Vec<Segment>,
}

/// A disk of `BLOCKS` blocks behind a 32-bit device with `depth` slots.
struct FakeDisk {
    platform: &'static SimulatedPlatform,
    /// Where the device's DMA goes: `platform` itself, or an IOMMU domain on it.
    dma: &'static dyn DmaPlatform,
    depth: usize,
    finishing: Finishing,
    image: Mutex<Vec<u8>>,
    /// What a power loss would leave: the image as the last flush found it
    /// (finished writes sit in the device's volatile cache until then).
    durable: Mutex<Vec<u8>>,
    /// What the shape says about the cache.
    write_cache: WriteCache,
    /// What the shape says about the device's byte count.
    byte_count: ByteCount,
    slots: Mutex<Vec<Option<Programmed>>>,
    /// Slots the device finished, in its order, with what it says it did.
    done: Mutex<VecDeque<(usize, DeviceOutcome)>>,
    /// What happened, in order: "start 7", "reset", "released".
    events: Mutex<Vec<String>>,
    max_blocks: u64,
    /// How `quiesce` ends: stopped, or a device that will not stop.
    stops: Mutex<Quiesced>,
    /// What a reset does to the commands it held (and so what the block layer may do).
    recovery: Mutex<Recovery>,
    /// When `collect` reports a fatal error.
    fatal: Mutex<Fatal>,
    /// What `reopen` answers.
    reopens: Mutex<Result<(), IoFailure>>,
}

impl FakeDisk {
    fn new(platform: &'static SimulatedPlatform, depth: usize, finishing: Finishing) -> FakeDisk {
        let image: Vec<u8> = (0..BLOCKS * BLOCK).map(|byte| (byte / BLOCK) as u8 ^ (byte % 251) as u8).collect();
        FakeDisk {
            platform,
            dma: platform,
            depth,
            finishing,
            durable: Mutex::new(image.clone()),
            write_cache: WriteCache::Volatile,
            byte_count: ByteCount::Reported,
            image: Mutex::new(image),
            slots: Mutex::new((0..depth).map(|_| None).collect()),
            done: Mutex::new(VecDeque::new()),
            events: Mutex::new(Vec::new()),
            max_blocks: 64,
            stops: Mutex::new(Quiesced::Stopped),
            recovery: Mutex::new(Recovery::StopOnly),
            fatal: Mutex::new(Fatal::Healthy),
            reopens: Mutex::new(Ok(())),
        }
    }

    /// The device does slot `slot`'s request: moves the data through the
    /// segments it was given and marks it finished, all bytes moved.
    fn finish(&self, slot: usize) {
        let slots = self.slots.lock();
        let programmed = slots[slot].as_ref().expect("a request in the slot");
        let mut image = self.image.lock();
        let command = match programmed.command {
            SlotCommand::Transfer(command) => command,
            SlotCommand::Flush => {
                // Every write finished so far leaves the cache for the medium.
                self.durable.lock().clone_from(&image);
                self.done.lock().push_back((slot, DeviceOutcome { moved: 0, result: Ok(()) }));
                return;
            }
        };
        let mut position = (command.lba * BLOCK) as usize;
        for segment in &programmed.segments {
            let (first, end) = (segment.address.as_u64(), segment.address.as_u64() + segment.length);
            let every_page_allocated = (first / FRAME_SIZE..end.div_ceil(FRAME_SIZE))
                .all(|page| self.platform.is_allocated(page * FRAME_SIZE));
            assert!(every_page_allocated, "the device reached freed memory at {first:#x}");
            let bytes = &mut image[position..position + segment.length as usize];
            match command.operation {
                BlockOperation::Read => self.platform.device_write(segment.address.as_u64(), bytes),
                BlockOperation::Write => self.platform.device_read(segment.address.as_u64(), bytes),
            }
            position += segment.length as usize;
        }
        let moved = programmed.segments.iter().map(|segment| segment.length).sum();
        self.done.lock().push_back((slot, DeviceOutcome { moved, result: Ok(()) }));
    }

    /// The device reports slot `slot` finished having moved `moved` bytes,
    /// whatever it really did.
    fn claim(&self, slot: usize, moved: u64) {
        self.done.lock().push_back((slot, DeviceOutcome { moved, result: Ok(()) }));
    }

    /// The device reports slot `slot` failed with `failure`, nothing moved.
    fn fail(&self, slot: usize, failure: IoFailure) {
        self.done.lock().push_back((slot, DeviceOutcome { moved: 0, result: Err(failure) }));
    }

    fn in_flight_slots(&self) -> Vec<usize> {
        self.slots.lock().iter().enumerate().filter(|(_, slot)| slot.is_some()).map(|(index, _)| index).collect()
    }

    fn image(&self, lba: u64, count: u64) -> Vec<u8> {
        self.image.lock()[(lba * BLOCK) as usize..((lba + count) * BLOCK) as usize].to_vec()
    }

    /// What a power loss would leave of `count` blocks at `lba`.
    fn durable(&self, lba: u64, count: u64) -> Vec<u8> {
        self.durable.lock()[(lba * BLOCK) as usize..((lba + count) * BLOCK) as usize].to_vec()
    }
}

impl HardwareQueue for FakeDisk {
    fn shape(&self) -> DiskShape {
        DiskShape {
            driver_name: "FakeDisk",
            block_size: BLOCK as u32,
            block_count: BLOCKS,
            depth: self.depth,
            max_request_blocks: self.max_blocks,
            specification: Specification::UNLIMITED_32,
            platform: self.dma,
            write_cache: self.write_cache,
            byte_count: self.byte_count,
        }
    }
    fn description(&self) -> String {
        String::from("a fake disk")
    }
    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        self.events.lock().push(alloc::format!("start {}", command.lba));
        let segments = data.segments().to_vec();
        self.slots.lock()[slot] = Some(Programmed { command: SlotCommand::Transfer(*command), segments });
        if self.finishing == Finishing::AtOnce {
            self.finish(slot);
        }
        Ok(())
    }
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure> {
        self.events.lock().push(String::from("flush"));
        self.slots.lock()[slot] = Some(Programmed { command: SlotCommand::Flush, segments: Vec::new() });
        if self.finishing == Finishing::AtOnce {
            self.finish(slot);
        }
        Ok(())
    }
    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        while let Some((slot, outcome)) = self.done.lock().pop_front() {
            self.slots.lock()[slot] = None;
            finished(slot, outcome);
        }
        let mut fatal = self.fatal.lock();
        match *fatal {
            Fatal::Healthy => DeviceHealth::Running,
            Fatal::Once => {
                *fatal = Fatal::Healthy;
                DeviceHealth::MustReset(FATAL)
            }
            Fatal::Always => DeviceHealth::MustReset(FATAL),
        }
    }
    fn recovery(&self) -> Recovery {
        *self.recovery.lock()
    }
    fn acknowledge_interrupt(&self) -> bool {
        true
    }
    fn quiesce(&self) -> Quiesced {
        self.events.lock().push(String::from("reset"));
        self.done.lock().clear();
        let quiesced = *self.stops.lock();
        if quiesced == Quiesced::Stopped {
            for slot in self.slots.lock().iter_mut() {
                if slot.take().is_some() {
                    self.events.lock().push(String::from("released"));
                }
            }
        }
        quiesced
    }
    fn reopen(&self) -> Result<(), IoFailure> {
        self.events.lock().push(String::from("restart"));
        *self.reopens.lock()
    }
}

fn disk(bounce_pages: usize, depth: usize, finishing: Finishing) -> QueuedDisk<FakeDisk> {
    QueuedDisk::new(FakeDisk::new(SimulatedPlatform::leak(bounce_pages), depth, finishing), &WAITER).unwrap()
}

/// A buffer above 4 GiB (so the 32-bit fake device bounces it).
fn high_buffer(disk: &QueuedDisk<FakeDisk>, blocks: u64, direction: IoDirection) -> DmaBuffer {
    DmaBuffer::allocate(disk.hardware().platform, blocks * BLOCK, direction, Constraints::NONE).unwrap()
}

fn read(disk: &QueuedDisk<FakeDisk>, lba: u64, blocks: u64) -> BlockRequest {
    BlockRequest::new(BlockOperation::Read, lba, blocks, high_buffer(disk, blocks, IoDirection::In), 0)
}

#[test]
fn the_device_finishes_in_its_own_order_and_every_buffer_comes_back_right() {
    let disk = disk(1024, 8, Finishing::WhenTold);
    let handles: Vec<RequestHandle> = (0..8).map(|index| disk.submit(read(&disk, index * 10, 2)).unwrap()).collect();
    assert_eq!(disk.stats().in_flight, 8);
    // The device answers last-come first.
    for slot in disk.hardware().in_flight_slots().into_iter().rev() {
        disk.hardware().finish(slot);
    }
    disk.interrupt();
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = disk.wait(handle);
        finished.result.unwrap();
        let buffer = finished.buffer.unwrap();
        let lba = index as u64 * 10;
        assert_eq!(buffer.to_vec(0, 2 * BLOCK as usize).unwrap(), disk.hardware().image(lba, 2), "request {index}");
    }
    let stats = disk.stats();
    assert_eq!((stats.deepest, stats.finished, stats.failed, stats.in_flight), (8, 8, 0, 0));
    assert_eq!(stats.out_of_order, 7, "every request but the first submitted finished before an older one");
    assert_eq!(stats.interrupts, 1);
}

/// A device as fast as the submitter (QEMU's NVMe under TCG finishes a read
/// before the next `submit` returns): one by one, the queue never holds two.
/// Submitted together, every request is programmed before the work loop looks
/// for completions, and the device holds as many as it takes.
#[test]
fn requests_submitted_together_are_all_on_the_device_before_any_is_collected() {
    let disk = disk(1024, 8, Finishing::AtOnce);
    let one_by_one: Vec<RequestHandle> = (0..8).map(|index| disk.submit(read(&disk, index, 1)).unwrap()).collect();
    for handle in one_by_one {
        disk.wait(handle).result.unwrap();
    }
    assert_eq!(disk.stats().deepest, 1, "each finished before the next was submitted");
    let requests: Vec<BlockRequest> = (0..10).map(|index| read(&disk, index * 3, 3)).collect();
    let handles: Vec<RequestHandle> =
        disk.submit_together(requests).into_iter().map(|submitted| submitted.unwrap()).collect();
    let stats = disk.stats();
    assert_eq!((stats.deepest, stats.queued), (8, 2), "eight on the device at once, two waiting for a slot");
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = disk.wait(handle);
        finished.result.unwrap();
        let lba = index as u64 * 3;
        assert_eq!(finished.buffer.unwrap().to_vec(0, 3 * BLOCK as usize).unwrap(), disk.hardware().image(lba, 3));
    }
    let refused = disk.submit_together(alloc::vec![read(&disk, BLOCKS, 1), read(&disk, 0, 1)]);
    assert!(refused[0].is_err(), "a bad request comes back with its reason");
    let good = refused.into_iter().nth(1).unwrap().unwrap();
    disk.wait(good).result.unwrap();
}

#[test]
fn requests_beyond_the_depth_wait_in_software_and_start_in_order() {
    let disk = disk(1024, 2, Finishing::WhenTold);
    let handles: Vec<RequestHandle> = (0..6).map(|index| disk.submit(read(&disk, index, 1)).unwrap()).collect();
    let stats = disk.stats();
    assert_eq!((stats.in_flight, stats.queued), (2, 4));
    while !handles.iter().all(RequestHandle::is_finished) {
        for slot in disk.hardware().in_flight_slots() {
            disk.hardware().finish(slot);
        }
        disk.run_work_loop();
    }
    let started: Vec<String> = disk.hardware().events.lock().clone();
    let expected: Vec<String> = (0..6).map(|lba| alloc::format!("start {lba}")).collect();
    assert_eq!(started, expected, "first come, first started");
    assert_eq!(disk.stats().deepest, 2);
    for handle in handles {
        disk.wait(handle).result.unwrap();
    }
}

#[test]
fn short_bounce_memory_defers_requests_in_order_until_pages_come_back() {
    // Four bounce pages; each request bounces two.
    let disk = disk(4, 4, Finishing::WhenTold);
    let blocks = FRAME_SIZE * 2 / BLOCK;
    let handles: Vec<RequestHandle> =
        (0..4).map(|index| disk.submit(read(&disk, index * blocks, blocks)).unwrap()).collect();
    let stats = disk.stats();
    assert_eq!(
        (stats.in_flight, stats.queued, stats.deferred_loads),
        (2, 2, 1),
        "the third waits, the fourth behind it"
    );
    while !handles.iter().all(RequestHandle::is_finished) {
        for slot in disk.hardware().in_flight_slots() {
            disk.hardware().finish(slot);
        }
        disk.run_work_loop();
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = disk.wait(handle);
        finished.result.unwrap();
        let expected = disk.hardware().image(index as u64 * blocks, blocks);
        assert_eq!(finished.buffer.unwrap().to_vec(0, expected.len()).unwrap(), expected, "request {index}");
    }
    // The fourth waited in line behind the third, but was never refused itself.
    assert_eq!(disk.stats().deferred_loads, 1, "only the third was refused for bounce memory");
}

#[test]
fn a_request_that_may_not_wait_or_can_never_fit_fails_at_once() {
    let disk = disk(4, 4, Finishing::WhenTold);
    let blocks = FRAME_SIZE * 2 / BLOCK;
    let first = disk.submit(read(&disk, 0, blocks)).unwrap();
    let second = disk.submit(read(&disk, 100, blocks)).unwrap();
    let mut impatient = read(&disk, 200, blocks);
    impatient.deferral = Deferral::FailAtOnce;
    let impatient = disk.submit(impatient).unwrap();
    let finished = disk.wait(impatient);
    let failure = finished.result.unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert!(matches!(failure.cause(), Cause::BounceBudgetSpent { .. }), "{failure}");
    assert!(finished.buffer.is_some(), "the buffer comes back with the failure");

    let huge = disk.submit(read(&disk, 300, FRAME_SIZE * 5 / BLOCK)).unwrap();
    let failure = disk.wait(huge).result.unwrap_err();
    assert!(matches!(failure.cause(), Cause::BounceBudgetSpent { pages: 5, limit: 4, .. }), "{failure}");
    assert_eq!(disk.stats().deferred_loads, 0, "neither waited");
    for slot in disk.hardware().in_flight_slots() {
        disk.hardware().finish(slot);
    }
    disk.wait(first).result.unwrap();
    disk.wait(second).result.unwrap();
}

#[test]
fn a_request_that_waits_too_long_for_bounce_memory_never_starts_and_the_disk_runs_on() {
    let disk = disk(2, 2, Finishing::WhenTold);
    let blocks = FRAME_SIZE * 2 / BLOCK;
    let holder = disk.submit(read(&disk, 0, blocks)).unwrap();
    let waiting = disk.submit(read(&disk, 100, blocks)).unwrap();
    let failure = disk.wait(waiting).result.unwrap_err();
    assert_eq!(failure.cause(), Cause::BounceMemoryStayedShort { milliseconds: REQUEST_TIMEOUT_MS });
    assert!(!disk.hardware().events.lock().contains(&String::from("reset")), "the device was not blamed");
    disk.hardware().finish(disk.hardware().in_flight_slots()[0]);
    disk.wait(holder).result.unwrap();
}

#[test]
fn a_timeout_resets_the_device_before_any_memory_comes_back() {
    let disk = disk(1024, 4, Finishing::WhenTold);
    let stuck = disk.submit(read(&disk, 0, 1)).unwrap();
    let other = disk.submit(read(&disk, 1, 1)).unwrap();
    let failure = disk.wait(stuck).result.unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    let events = disk.hardware().events.lock().clone();
    assert_eq!(events[2..], ["reset", "released", "released"], "reset first, then the memory went back");
    assert_eq!(disk.wait(other).result.unwrap_err().code(), IoReturn::Timeout, "the device held it too");
    let refused = disk.submit(read(&disk, 2, 1)).unwrap_err();
    assert_eq!(refused.failure.cause(), Cause::DriverStopped);
    disk.start().unwrap();
    let handle = disk.submit(read(&disk, 2, 1)).unwrap();
    disk.hardware().finish(disk.hardware().in_flight_slots()[0]);
    disk.wait(handle).result.unwrap();
}

#[test]
fn stop_drains_what_the_device_finishes_and_aborts_the_rest() {
    let disk = disk(1024, 2, Finishing::WhenTold);
    let finishes = disk.submit(read(&disk, 0, 1)).unwrap();
    let stuck = disk.submit(read(&disk, 1, 1)).unwrap();
    let waiting = disk.submit(read(&disk, 2, 1)).unwrap();
    disk.hardware().finish(disk.hardware().in_flight_slots()[0]);
    let report = disk.stop().unwrap();
    assert_eq!(report, StopReport { drained: 1, aborted: 2, prepared_left: 0 });
    disk.wait(finishes).result.unwrap();
    for handle in [stuck, waiting] {
        let finished = disk.wait(handle);
        assert_eq!(finished.result.unwrap_err(), IoFailure::new(IoReturn::Aborted, Cause::DriverStopped));
        assert!(finished.buffer.is_some());
    }
    let events = disk.hardware().events.lock().clone();
    assert_eq!(events[2..], ["reset", "released"], "the unfinished one went back after the reset");
    assert_eq!(disk.stop().unwrap_err(), IoFailure::new(IoReturn::NotPermitted, Cause::DriverStoppedAlready));
    disk.start().unwrap();
    assert_eq!(disk.start().unwrap_err(), IoFailure::new(IoReturn::Busy, Cause::DriverRunningAlready));
    assert_eq!(disk.wait_any(&[]).unwrap_err(), IoFailure::new(IoReturn::BadArgument, Cause::NothingToWaitFor));
}

#[test]
fn read_and_write_split_large_transfers_and_lend_the_buffer_back() {
    let disk = disk(1024, 4, Finishing::AtOnce);
    let mut source =
        DmaBuffer::allocate(disk.hardware().platform, 200 * BLOCK, IoDirection::Out, Constraints::NONE).unwrap();
    let data: Vec<u8> = (0..200 * BLOCK).map(|byte| (byte % 253) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    disk.write(1000, 200, &mut source, 0).unwrap();
    assert_eq!(disk.hardware().image(1000, 200), data, "200 blocks in requests of at most 64");
    assert_eq!(disk.stats().submitted, 4);
    let mut target =
        DmaBuffer::allocate(disk.hardware().platform, 200 * BLOCK, IoDirection::In, Constraints::NONE).unwrap();
    disk.read(1000, 200, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, data.len()).unwrap(), data);
}

#[test]
fn bad_requests_come_back_with_their_buffer_and_why() {
    let disk = disk(1024, 4, Finishing::AtOnce);
    let rejected = disk.submit(read(&disk, BLOCKS - 1, 2)).unwrap_err();
    assert!(matches!(rejected.failure.cause(), Cause::BlocksPastEnd { .. }));
    assert_eq!(rejected.request.buffer.length(), 2 * BLOCK, "the buffer came back");
    let rejected = disk.submit(read(&disk, 0, 65)).unwrap_err();
    assert_eq!(rejected.failure.cause(), Cause::RequestTooLarge { count: 65, max: 64 });
    let mut wrong = read(&disk, 0, 1);
    wrong.operation = BlockOperation::Write;
    let rejected = disk.submit(wrong).unwrap_err();
    assert_eq!(rejected.failure.code(), IoReturn::BadArgument);
    let failure = disk.read(0, 0, &mut high_buffer(&disk, 1, IoDirection::In), 0).unwrap_err();
    assert_eq!((failure.code(), failure.cause()), (IoReturn::BadArgument, Cause::ZeroBlocks));
    assert_eq!(disk.stats().submitted, 0, "nothing reached the queue");
}

#[test]
fn a_device_that_claims_more_bytes_than_prepared_gets_only_the_prepared_range_and_an_error() {
    let disk = disk(1024, 2, Finishing::WhenTold);
    let handle = disk.submit(read(&disk, 7, 1)).unwrap();
    let slot = disk.hardware().in_flight_slots()[0];
    disk.hardware().finish(slot);
    // The same slot again, now claiming a megabyte: the first report wins, the
    // second names a slot with no request and is ignored.
    disk.hardware().claim(slot, 1 << 20);
    let finished = disk.wait(handle);
    finished.result.unwrap();
    assert_eq!(finished.buffer.unwrap().to_vec(0, BLOCK as usize).unwrap(), disk.hardware().image(7, 1));
    let lying = disk.submit(read(&disk, 8, 1)).unwrap();
    disk.hardware().claim(disk.hardware().in_flight_slots()[0], 1 << 20);
    let finished = disk.wait(lying);
    let failure = finished.result.unwrap_err();
    assert_eq!(failure.cause(), Cause::DeviceClaimedTooMuch { claimed: 1 << 20, prepared: BLOCK });
    assert!(finished.buffer.is_some(), "the device finished: the buffer comes back");
}

#[test]
fn a_device_that_will_not_stop_keeps_its_memory_and_no_buffer_comes_back() {
    let disk = disk(1024, 2, Finishing::WhenTold);
    let why = IoFailure::new(IoReturn::Timeout, Cause::DeviceWouldNotStop);
    *disk.hardware().stops.lock() = Quiesced::StillRunning(why);
    let platform = disk.hardware().platform;
    let stuck = disk.submit(read(&disk, 0, 2)).unwrap();
    let bounce_in_use = platform.accounting().stats().pages_in_use;
    assert!(bounce_in_use > 0, "the 32-bit fake bounces a high buffer");
    let finished = disk.wait(stuck);
    assert_eq!(finished.result.unwrap_err().code(), IoReturn::Timeout);
    assert!(finished.buffer.is_none(), "abandoned: the device may still write it");
    assert_eq!(platform.accounting().stats().pages_in_use, bounce_in_use, "bounce pages never freed");
    let events = disk.hardware().events.lock().clone();
    assert!(!events.contains(&String::from("released")), "nothing released under a running device: {events:?}");
}

#[test]
fn a_buffer_behind_an_unconfirmed_iommu_unmap_is_not_handed_back() {
    use crate::dma::MappedPlatform;
    use crate::iommu::Unit;
    use crate::iommu::fake::{FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY, Stall};

    let memory = SimulatedPlatform::leak(1024);
    let fake = alloc::sync::Arc::new(FakeUnit::new(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY));
    let unit = Unit::start(0, 0xfed9_0000, alloc::sync::Arc::clone(&fake), memory).unwrap();
    let mut hardware = FakeDisk::new(memory, 2, Finishing::WhenTold);
    hardware.dma = MappedPlatform::leak(memory, unit.attach(0x0020).unwrap());
    let disk = QueuedDisk::new(hardware, &WAITER).unwrap();
    let buffer = DmaBuffer::allocate(memory, BLOCK, IoDirection::In, Constraints::NONE).unwrap();
    let handle = disk.submit(BlockRequest::new(BlockOperation::Read, 0, 1, buffer, 0)).unwrap();
    fake.stall(Stall::IotlbInvalidation);
    // The device says it is done; the IOMMU never confirms it lost access.
    disk.hardware().claim(disk.hardware().in_flight_slots()[0], BLOCK);
    let finished = disk.wait(handle);
    let failure = finished.result.unwrap_err();
    assert!(matches!(failure.cause(), Cause::InvalidationFailed { .. }), "{failure}");
    assert!(finished.buffer.is_none(), "the device may still reach it: leaked, not handed back");
}

#[test]
fn the_benchmark_sends_a_request_larger_than_the_device_takes_as_parts_in_flight_together() {
    use crate::bench::{Pattern, Split, read_requests};
    // 80 KiB requests on a device that takes 32 KiB (64 blocks): three parts
    // each (64, 64, 32 blocks), all three out before the next request starts.
    let disk = disk(1024, 8, Finishing::AtOnce);
    let split = Split::new(&disk, 80 * 1024).unwrap();
    let mut groups = split.allocate(disk.hardware().platform, 1).unwrap();
    let finished = read_requests(&disk, Pattern::Sequential, &split, &mut groups, 3).unwrap();
    assert_eq!(finished, 3);
    let stats = disk.stats();
    assert_eq!((stats.submitted, stats.finished, stats.failed), (9, 9, 0));
    assert!(stats.deepest <= 3, "depth 1 keeps one request's parts in flight, not more: {}", stats.deepest);
    let starts: Vec<String> = disk.hardware().events.lock().clone();
    let expected: Vec<String> =
        [0, 64, 128, 160, 224, 288, 320, 384, 448].map(|lba| alloc::format!("start {lba}")).into();
    assert_eq!(starts, expected);
}

#[test]
fn the_benchmark_keeps_requests_the_device_takes_whole_in_one_part_each() {
    use crate::bench::{Pattern, Split, read_requests};
    let disk = disk(1024, 8, Finishing::AtOnce);
    let split = Split::new(&disk, 4096).unwrap();
    let mut groups = split.allocate(disk.hardware().platform, 4).unwrap();
    assert_eq!(read_requests(&disk, Pattern::Random, &split, &mut groups, 20).unwrap(), 20);
    assert_eq!(disk.stats().submitted, 20);
    assert!(Split::new(&disk, 100).is_err(), "less than a block");
}
