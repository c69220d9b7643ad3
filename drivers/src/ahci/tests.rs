//! The AHCI driver against the fake HBA on a simulated machine, through the
//! block layer's `QueuedDisk`.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{
    BlockDevice, BlockOperation, BlockRequest, DoubleBuffering, HardwareQueue, QueuedDisk, RequestHandle,
};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{AhciCause, Cause, DmaBuffer, DmaPlatform, IoDirection, IoReturn};
use dmakit::memory::Constraints;
use dmakit::pattern;
use x86_64::PhysAddr;

use super::fake::{FakeDisk, FakeHba, FakeRegisters, NcqErrorReport};
use super::identify::{CacheFlush, DriveIdentity};
use super::recovery::{MOST_REISSUES, Signs, Verdict, ncq_verdict};
use super::registers::*;
use super::{AhciPort, Hba};
use crate::test_support::WAITER;

mod flush_tests;
mod hostile_tests;
mod untrusted_tests;

const SECTORS: u64 = 8192;

struct Setup {
    platform: &'static SimulatedPlatform,
    fake: Arc<FakeHba>,
    disk: QueuedDisk<AhciPort<FakeRegisters>>,
}

fn setup_with(addresses_64_bit: bool, ncq: bool) -> Setup {
    setup_drive(addresses_64_bit, ncq, CacheFlush::FlushCacheExt)
}

/// A port whose drive's IDENTIFY says `flush` about its write cache.
fn setup_drive(addresses_64_bit: bool, ncq: bool, flush: CacheFlush) -> Setup {
    let platform = SimulatedPlatform::leak(1024);
    let mut image = vec![0; (SECTORS * SECTOR_SIZE) as usize];
    pattern::fill(0, b'S', &mut image);
    let model = String::from("FAKE SATA DISK");
    let identity = DriveIdentity { sectors: SECTORS, ncq, queue_depth: 32, model, flush };
    let fake = FakeHba::new(platform, addresses_64_bit, FakeDisk { image, identity });
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let hba = Hba::reset(registers.clone(), 0x1100, &WAITER).unwrap();
    assert_eq!(hba.ports_with_device(), vec![0], "port 1 is empty");
    let port = AhciPort::new(registers, hba.capabilities(), 0, platform, &WAITER).unwrap();
    Setup { platform, fake, disk: QueuedDisk::new(port, &WAITER).unwrap() }
}

fn setup() -> Setup {
    setup_with(true, true)
}

fn expected(first: u64, sectors: u64) -> Vec<u8> {
    let mut bytes = vec![0; (sectors * SECTOR_SIZE) as usize];
    pattern::fill(first, b'S', &mut bytes);
    bytes
}

fn buffer(setup: &Setup, sectors: u64, placement: Constraints) -> DmaBuffer {
    DmaBuffer::allocate(setup.platform, sectors * SECTOR_SIZE, IoDirection::InOut, placement).unwrap()
}

fn low() -> Constraints {
    Constraints::below(PhysAddr::new(1 << 32))
}

fn read_request(lba: u64, count: u64, buffer: DmaBuffer) -> BlockRequest {
    BlockRequest::new(BlockOperation::Read, lba, count, buffer, 0)
}

#[test]
fn bring_up_resets_the_hba_and_identifies_the_disk() {
    let setup = setup();
    assert_eq!(*setup.fake.resets.lock(), 1, "one HBA reset");
    assert_eq!(setup.fake.commands.lock().first(), Some(&COMMAND_IDENTIFY));
    let port = setup.disk.hardware();
    assert_eq!((port.identity().sectors, port.identity().model.as_str()), (SECTORS, "FAKE SATA DISK"));
    assert!(port.uses_ncq());
    assert_eq!(setup.disk.queue_depth(), 32);
    assert_eq!(setup.disk.block_count(), SECTORS);
    assert_eq!(setup.disk.description(), "AHCI port 0: FAKE SATA DISK (NCQ depth 32, 64-bit DMA)");
    assert!(setup.platform.is_allocated(setup.fake.command_list()), "the port has its command list");
}

#[test]
fn reads_and_writes_are_byte_exact() {
    let setup = setup();
    let mut source = buffer(&setup, 16, Constraints::NONE);
    let data: Vec<u8> = (0..16 * 512).map(|i| (i % 251) as u8).collect();
    source.write_bytes(0, &data).unwrap();
    setup.disk.write(100, 16, &mut source, 0).unwrap();
    assert_eq!(&setup.fake.disk.lock().image[100 * 512..116 * 512], data.as_slice());
    let mut target = buffer(&setup, 16, Constraints::NONE);
    setup.disk.read(100, 16, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, data.len()).unwrap(), data);
    // A request larger than one command is split by the block layer.
    let mut large = buffer(&setup, 3000, Constraints::NONE);
    setup.disk.read(1000, 3000, &mut large, 0).unwrap();
    assert_eq!(large.to_vec(0, 3000 * 512).unwrap(), expected(1000, 3000));
    let queued = setup.fake.commands.lock().iter().filter(|&&c| c == COMMAND_READ_FPDMA_QUEUED).count();
    assert_eq!(queued, 3, "16 sectors, then 2048 + 952");
}

#[test]
fn thirty_two_requests_in_flight_complete_out_of_order() {
    let setup = setup();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..32u64)
        .map(|index| setup.disk.submit(read_request(index * 40, 8, buffer(&setup, 8, Constraints::NONE))).unwrap())
        .collect();
    assert_eq!(setup.disk.stats().in_flight, 32);
    assert_eq!(*setup.fake.most_queued.lock(), 32, "the drive held all 32 at once");
    for tag in (0..32).rev() {
        setup.fake.complete(tag);
        setup.disk.run_work_loop();
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        finished.result.unwrap();
        let bytes = finished.buffer.unwrap().to_vec(0, 8 * 512).unwrap();
        assert_eq!(bytes, expected(index as u64 * 40, 8), "request {index}");
    }
    let stats = setup.disk.stats();
    assert_eq!(stats.deepest, 32);
    assert!(stats.out_of_order > 0, "{stats:?}");
    assert_eq!(stats.failed, 0);
}

#[test]
fn a_32_bit_hba_bounces_buffers_above_4_gib() {
    let setup = setup_with(false, true);
    assert!(setup.disk.description().contains("32-bit DMA"));
    assert!(setup.fake.command_list() < 1 << 32, "the command list is below 4 GiB");
    let mut target = buffer(&setup, 64, Constraints::NONE);
    assert!(target.descriptor().physical_segment(0).unwrap().0.as_u64() >= 1 << 32, "the buffer is high");
    let before = setup.platform.accounting().stats();
    setup.disk.read(7, 64, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 64 * 512).unwrap(), expected(7, 64));
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 64 * 512, "bounced");
    assert_eq!(after.pages_in_use, before.pages_in_use, "the bounce pages went back");
    assert!(*setup.fake.highest_address.lock() <= 1 << 32);
    assert!(setup.disk.last_segments().iter().all(|segment| segment.end() <= 1 << 32));
}

#[test]
fn forced_double_buffering_bounces_low_buffers_too() {
    let setup = setup();
    setup.disk.set_double_buffering(DoubleBuffering::Forced);
    let mut target = buffer(&setup, 32, low());
    let before = setup.platform.accounting().stats();
    setup.disk.read(9, 32, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 32 * 512).unwrap(), expected(9, 32));
    let after = setup.platform.accounting().stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 32 * 512);
}

#[test]
fn an_error_on_one_tag_fails_only_that_request() {
    let setup = setup();
    *setup.fake.bad_lba.lock() = Some(204);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..4u64)
        .map(|index| setup.disk.submit(read_request(index * 100, 8, buffer(&setup, 8, Constraints::NONE))).unwrap())
        .collect();
    // The failing command ends first, while the other three are still queued:
    // which one failed is unknown without the NCQ error log (PxSERR does not
    // say), so recovery resets the drive (which drops them all) and issues
    // all four again.
    setup.fake.complete(2);
    setup.disk.run_work_loop();
    assert_eq!(setup.fake.queued_tags(), vec![0, 1, 2, 3], "all were issued again");
    // The bad one fails again, after the others: the one left, it failed.
    for tag in [3, 0, 1, 2] {
        setup.fake.complete(tag);
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        let buffer = finished.buffer.expect("the buffer comes back");
        if index == 2 {
            let failure = finished.result.unwrap_err();
            assert_eq!(failure.code(), IoReturn::IoError);
            assert!(aborted(failure.cause()), "{failure}");
        } else {
            finished.result.unwrap();
            assert_eq!(buffer.to_vec(0, 8 * 512).unwrap(), expected(index as u64 * 100, 8), "request {index}");
        }
    }
    assert_eq!(setup.disk.stats().failed, 1);
    // The port works on.
    *setup.fake.bad_lba.lock() = None;
    setup.fake.hold.store(false, Ordering::Relaxed);
    let mut target = buffer(&setup, 8, Constraints::NONE);
    setup.disk.read(200, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(200, 8));
}

#[test]
fn an_error_after_the_others_finished_fails_only_its_request() {
    // QEMU's order: the other queued commands complete, the failed tag stays
    // set in PxSACT and is marked in PxSERR.
    let setup = setup();
    *setup.fake.bad_lba.lock() = Some(0);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..3u64)
        .map(|index| setup.disk.submit(read_request(index * 50, 4, buffer(&setup, 4, Constraints::NONE))).unwrap())
        .collect();
    for tag in [1, 2, 0] {
        setup.fake.complete(tag);
    }
    let results: Vec<_> = handles.into_iter().map(|handle| setup.disk.wait(handle).result).collect();
    assert_eq!(results[0].unwrap_err().code(), IoReturn::IoError);
    assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(setup.fake.queued_tags().is_empty(), "nothing was issued again");
}

#[test]
fn without_ncq_one_command_at_a_time_and_errors_fail_it() {
    let setup = setup_with(true, false);
    assert_eq!(setup.disk.queue_depth(), 1);
    assert!(setup.disk.description().contains("no NCQ"));
    let mut target = buffer(&setup, 40, Constraints::NONE);
    setup.disk.read(3, 40, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 40 * 512).unwrap(), expected(3, 40));
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_READ_DMA_EXT));
    *setup.fake.bad_lba.lock() = Some(10);
    let failure = setup.disk.read(8, 4, &mut target, 0).unwrap_err();
    assert_eq!(failure.code(), IoReturn::IoError);
    *setup.fake.bad_lba.lock() = None;
    setup.disk.write(8, 4, &mut target, 0).unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_WRITE_DMA_EXT));
}

#[test]
fn stop_with_requests_in_flight_fails_them_and_releases_memory_after_the_port_stopped() {
    let setup = setup();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..4u64)
        .map(|index| setup.disk.submit(read_request(index, 1, buffer(&setup, 1, Constraints::NONE))).unwrap())
        .collect();
    let list = setup.fake.command_list();
    let stops = setup.fake.stops.lock().len();
    let report = setup.disk.stop().unwrap();
    assert_eq!((report.aborted, report.prepared_left), (4, 0));
    let stop = setup.fake.stops.lock()[stops];
    assert!(stop.memory_allocated, "ST was cleared while the port's memory was allocated");
    assert_eq!(stop.commands_held, 4);
    assert!(!setup.platform.is_allocated(list), "then the command list was released");
    for handle in handles {
        let finished = setup.disk.wait(handle);
        assert!(finished.buffer.is_some());
        assert_eq!(finished.result.unwrap_err().cause(), Cause::DriverStopped);
    }
    // Started again, the port has new memory and works.
    setup.disk.start().unwrap();
    setup.fake.hold.store(false, Ordering::Relaxed);
    let mut target = buffer(&setup, 8, Constraints::NONE);
    setup.disk.read(500, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(500, 8));
    assert!(setup.platform.is_allocated(setup.fake.command_list()));
}

#[test]
fn a_silent_drive_times_out_and_the_disk_starts_again() {
    let setup = setup();
    setup.fake.silent.store(true, Ordering::Relaxed);
    let mut target = buffer(&setup, 8, Constraints::NONE);
    target.write_bytes(0, &[0x5a; 4096]).unwrap();
    let failure = setup.disk.read(0, 8, &mut target, 0).unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    assert_eq!(target.to_vec(0, 4096).unwrap(), vec![0x5a; 4096], "nothing came back");
    assert!(setup.fake.stops.lock().last().unwrap().memory_allocated);
    setup.fake.silent.store(false, Ordering::Relaxed);
    setup.disk.start().unwrap();
    setup.disk.read(0, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 4096).unwrap(), expected(0, 8));
}

#[test]
fn a_port_that_never_stops_abandons_its_requests_and_memory() {
    let setup = setup();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handle = setup.disk.submit(read_request(0, 8, buffer(&setup, 8, Constraints::NONE))).unwrap();
    setup.fake.stuck.store(true, Ordering::Relaxed);
    let list = setup.fake.command_list();
    setup.disk.stop().unwrap();
    let finished = setup.disk.wait(handle);
    assert!(finished.buffer.is_none(), "abandoned: the port may still write it");
    assert_eq!(finished.result.unwrap_err().cause(), Cause::DriverStopped);
    assert!(setup.platform.is_allocated(list), "the port's memory was not released under it");
    assert!(setup.platform.accounting().stats().leaked_transfers > 0);
}

#[test]
fn interrupts_are_acknowledged_without_the_port_lock() {
    let setup = setup();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handle = setup.disk.submit(read_request(0, 1, buffer(&setup, 1, Constraints::NONE))).unwrap();
    setup.fake.complete(0);
    // The handler runs while the work loop holds the port's lock.
    let port = setup.disk.hardware();
    let guard = port.state.lock();
    assert!(port.acknowledge_interrupt(), "the drive had an interrupt");
    assert!(!port.acknowledge_interrupt(), "and it was cleared");
    drop(guard);
    setup.disk.wait(handle).result.unwrap();
    assert_eq!(port.description().to_string(), setup.disk.description());
}

#[test]
fn a_port_that_will_not_stop_for_error_recovery_gives_nothing_back() {
    let setup = setup();
    *setup.fake.bad_lba.lock() = Some(0);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..2u64)
        .map(|index| setup.disk.submit(read_request(index * 100, 8, buffer(&setup, 8, Constraints::NONE))).unwrap())
        .collect();
    setup.fake.stuck.store(true, Ordering::Relaxed);
    // The error: recovery clears PxCMD.ST, which zeroes PxCI and PxSACT, but
    // CR stays set, even through a COMRESET: the port still runs.
    setup.fake.complete(0);
    setup.disk.run_work_loop();
    // The engine still moves the data of what it holds, into memory still lent to it.
    setup.fake.complete(1);
    for handle in handles {
        let finished = setup.disk.wait(handle);
        assert!(finished.buffer.is_none(), "abandoned: the port may still write it");
        assert_eq!(finished.result.unwrap_err().cause(), Cause::DeviceWouldNotStop);
    }
    assert!(setup.platform.accounting().stats().leaked_transfers >= 2);
    // A port that stops again may be started again, with new memory.
    setup.fake.stuck.store(false, Ordering::Relaxed);
    *setup.fake.bad_lba.lock() = None;
    setup.fake.hold.store(false, Ordering::Relaxed);
    setup.disk.start().unwrap();
    let mut target = buffer(&setup, 8, Constraints::NONE);
    setup.disk.read(300, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(300, 8));
}

/// Submits reads of 8 sectors at `index * 100` for each index.
fn submit_reads(setup: &Setup, count: u64) -> Vec<RequestHandle> {
    (0..count)
        .map(|index| setup.disk.submit(read_request(index * 100, 8, buffer(setup, 8, Constraints::NONE))).unwrap())
        .collect()
}

#[test]
fn ncq_recovery_resets_the_drive_before_it_gives_back_a_failed_request() {
    let setup = setup();
    *setup.fake.ncq_errors.lock() = NcqErrorReport::Specification;
    *setup.fake.bad_lba.lock() = Some(204);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let mut handles: Vec<Option<RequestHandle>> = submit_reads(&setup, 4).into_iter().map(Some).collect();
    // Request 2 fails (TFES) while the drive still holds the other three.
    setup.fake.complete(2);
    let mut results = vec![None; 4];
    for _ in 0..8 {
        setup.disk.run_work_loop();
        // What comes back is freed at once: a drive that still held its
        // command would write into freed memory, and the fake would say so.
        for (index, slot) in handles.iter_mut().enumerate() {
            if let Some(handle) = slot.take_if(|handle| handle.is_finished()) {
                let finished = setup.disk.wait(handle);
                results[index] = Some(finished.result);
                drop(finished.buffer);
            }
        }
        for tag in setup.fake.queued_tags() {
            setup.fake.complete(tag);
        }
    }
    assert!(handles.iter().all(Option::is_none), "every request ended: {results:?}");
    assert_eq!(results[2].unwrap().unwrap_err().code(), IoReturn::IoError);
    // Issued again after the reset, the others succeeded.
    assert!([0, 1, 3].iter().all(|&index| results[index] == Some(Ok(()))), "{results:?}");
    // The port came back (the drive was ready before PxCMD.ST was set) and works.
    *setup.fake.bad_lba.lock() = None;
    setup.fake.hold.store(false, Ordering::Relaxed);
    let mut target = buffer(&setup, 8, Constraints::NONE);
    setup.disk.read(200, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(200, 8));
}

#[test]
fn a_drive_still_busy_after_the_recovery_reset_stops_the_disk_until_it_is_started_again() {
    let setup = setup();
    *setup.fake.ncq_errors.lock() = NcqErrorReport::Specification;
    *setup.fake.bad_lba.lock() = Some(0);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handle = submit_reads(&setup, 1).remove(0);
    let list = setup.fake.command_list();
    setup.fake.busy_after_reset.store(true, Ordering::Relaxed);
    setup.fake.complete(0);
    // The drive was reset before the request failed: its memory is safe.
    let finished = setup.disk.wait(handle);
    assert!(finished.buffer.is_some());
    assert_eq!(finished.result.unwrap_err().code(), IoReturn::IoError);
    // PxCMD.ST stays clear while the drive is busy: the disk stopped, and the
    // port (stopped, the drive reset) gave its memory back.
    assert_eq!(setup.fake.port_command() & CMD_START, 0, "not started on a busy drive");
    assert!(!setup.platform.is_allocated(list), "the port's memory went back");
    let refused = setup.disk.submit(read_request(500, 1, buffer(&setup, 1, Constraints::NONE))).unwrap_err();
    assert_eq!(refused.failure.cause(), Cause::DriverStopped);
    // Started again once the drive is ready, the disk works.
    setup.fake.busy_after_reset.store(false, Ordering::Relaxed);
    setup.fake.drive_ready();
    setup.disk.start().unwrap();
    *setup.fake.bad_lba.lock() = None;
    setup.fake.hold.store(false, Ordering::Relaxed);
    let mut target = buffer(&setup, 8, Constraints::NONE);
    setup.disk.read(300, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(300, 8));
}

/// How many READ FPDMA QUEUED commands the drive received.
fn queued_reads(setup: &Setup) -> usize {
    setup.fake.commands.lock().iter().filter(|&&command| command == COMMAND_READ_FPDMA_QUEUED).count()
}

#[test]
fn link_events_in_serror_fail_no_request() {
    let setup = setup();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles = submit_reads(&setup, 4);
    // A healthy port whose link recovered from errors and changed state: the
    // SError bits of those share their places with tags 0 and 1.
    setup.fake.link_event(SERR_RECOVERED_DATA | SERR_RECOVERED_COMMUNICATION | SERR_PHY_READY_CHANGE);
    setup.disk.run_work_loop();
    for tag in setup.fake.queued_tags() {
        setup.fake.complete(tag);
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        finished.result.unwrap_or_else(|failure| panic!("request {index} failed: {failure}"));
        let bytes = finished.buffer.unwrap().to_vec(0, 8 * 512).unwrap();
        assert_eq!(bytes, expected(index as u64 * 100, 8), "request {index}");
    }
    assert_eq!(setup.disk.stats().failed, 0);
}

#[test]
fn an_ncq_error_a_later_completion_hid_is_found_by_issuing_the_command_again() {
    // QEMU 7.2: no TFES, and the next command that completes clears ERR from
    // PxTFD; only QEMU's mark in PxSERR stays, a link event to the driver.
    let setup = setup();
    *setup.fake.bad_lba.lock() = Some(0);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles = submit_reads(&setup, 3);
    for tag in [0, 1, 2] {
        setup.fake.complete(tag);
    }
    setup.disk.run_work_loop();
    assert_eq!(setup.fake.queued_tags(), vec![0], "the one left was issued again, after a reset");
    // It fails again, alone: ERR stays in PxTFD, and it is the failed one.
    setup.fake.complete(0);
    let results: Vec<_> = handles.into_iter().map(|handle| setup.disk.wait(handle)).collect();
    let failure = results[0].result.unwrap_err();
    assert!(aborted(failure.cause()), "{failure}");
    for (index, finished) in results.iter().enumerate().skip(1) {
        finished.result.unwrap();
        let bytes = finished.buffer.as_ref().unwrap().to_vec(0, 8 * 512).unwrap();
        assert_eq!(bytes, expected(index as u64 * 100, 8), "request {index}");
    }
    assert_eq!(setup.disk.stats().failed, 1);
    assert_eq!(queued_reads(&setup), 4);
}

#[test]
fn commands_left_together_after_an_ncq_error_are_issued_one_at_a_time_until_the_error_names_its_command() {
    let setup = setup();
    *setup.fake.ncq_errors.lock() = NcqErrorReport::Specification;
    *setup.fake.bad_lba.lock() = Some(3);
    setup.fake.hold.store(true, Ordering::Relaxed);
    // Requests 0 and 1 both cover the bad sector, request 2 does not.
    let handles: Vec<_> = [0, 0, 100]
        .into_iter()
        .map(|lba| setup.disk.submit(read_request(lba, 8, buffer(&setup, 8, Constraints::NONE))).unwrap())
        .collect();
    for _ in 0..10 {
        for tag in setup.fake.queued_tags() {
            setup.fake.complete(tag);
        }
        setup.disk.run_work_loop();
    }
    assert!(setup.fake.queued_tags().is_empty());
    let results: Vec<_> = handles.into_iter().map(|handle| setup.disk.wait(handle).result).collect();
    // Alone on the drive, each of the two that cover the bad sector fails with
    // the drive's own error, named; the third never failed.
    for result in &results[..2] {
        let failure = result.unwrap_err();
        assert!(aborted(failure.cause()), "{failure}");
        assert_eq!(failure.code(), IoReturn::IoError);
    }
    results[2].unwrap();
    // Three at first, two together MOST_REISSUES times, then each alone once.
    assert_eq!(queued_reads(&setup), 3 + 2 * usize::from(MOST_REISSUES) + 2, "a bounded number of issues");
}

#[test]
fn an_innocent_command_left_with_a_failed_one_completes_once_they_run_one_at_a_time() {
    let setup = setup();
    *setup.fake.ncq_errors.lock() = NcqErrorReport::Specification;
    *setup.fake.bad_lba.lock() = Some(3);
    setup.fake.hold.store(true, Ordering::Relaxed);
    // Slot 0 covers the bad sector, slot 1 does not.
    let handles: Vec<_> = [0, 100]
        .into_iter()
        .map(|lba| setup.disk.submit(read_request(lba, 8, buffer(&setup, 8, Constraints::NONE))).unwrap())
        .collect();
    // The drive fails slot 0 while slot 1 is still queued, every time they run
    // together: the error cannot say which of the two it was.
    for round in 0..=MOST_REISSUES {
        assert_eq!(setup.fake.queued_tags(), vec![0, 1], "round {round}: issued together");
        setup.fake.complete(0);
        setup.disk.run_work_loop();
    }
    assert_eq!(setup.fake.queued_tags(), vec![0], "then one at a time, slot 1 held back");
    for _ in 0..4 {
        for tag in setup.fake.queued_tags() {
            setup.fake.complete(tag);
        }
        setup.disk.run_work_loop();
    }
    let results: Vec<_> = handles.into_iter().map(|handle| setup.disk.wait(handle)).collect();
    let failure = results[0].result.unwrap_err();
    assert!(aborted(failure.cause()), "alone, the failed one is named: {failure}");
    results[1].result.unwrap();
    let bytes = results[1].buffer.as_ref().unwrap().to_vec(0, 8 * 512).unwrap();
    assert_eq!(bytes, expected(100, 8), "the innocent request read its sectors");
    assert_eq!(setup.disk.stats().failed, 1);
}

#[test]
fn the_ncq_verdict_fails_a_command_only_for_the_devices_error() {
    let link = Signs { errors: 0, task_file: 0x50, link: SERR_RECOVERED_COMMUNICATION | SERR_PHY_READY_CHANGE };
    let device = Signs { errors: IS_TASK_FILE_ERROR, task_file: 0x41 | TFD_ABORTED, link: 0 };
    let failed_and_reissued = |verdict| match verdict {
        Verdict::LeaveToDrive => None,
        Verdict::Reset { failed, reissued, .. } => Some((failed, reissued)),
    };
    // A link event alone: never a failure; a reset only to issue them again.
    for still in [0, 0b1, 0b110] {
        for exhausted in [false, true] {
            let verdict = failed_and_reissued(ncq_verdict(link, still, exhausted));
            assert!(verdict.is_none_or(|(failed, _)| failed == 0), "{still:#b} {exhausted}: {verdict:?}");
        }
    }
    assert_eq!(failed_and_reissued(ncq_verdict(link, 0b110, false)), Some((0, 0b110)));
    assert_eq!(failed_and_reissued(ncq_verdict(link, 0b110, true)), None);
    // The device's error: the one left failed; of several, which is unknown:
    // issued together again, then (exhausted) one at a time, none failed.
    let failure = device.failure();
    assert!(aborted(failure.cause()), "{failure}");
    let alone = Verdict::Reset { failed: 0b100, reissued: 0, held_back: 0, failure };
    assert_eq!(ncq_verdict(device, 0b100, false), alone);
    assert_eq!(ncq_verdict(device, 0b100, true), alone, "alone, it is the failed one however often it ran");
    assert_eq!(failed_and_reissued(ncq_verdict(device, 0b110, false)), Some((0, 0b110)));
    let one_at_a_time = Verdict::Reset { failed: 0, reissued: 0b010, held_back: 0b100, failure };
    assert_eq!(ncq_verdict(device, 0b110, true), one_at_a_time);
    // PxTFD.ERR alone (QEMU 7.2 raises no TFES) is the device's error too.
    let quiet = Signs { errors: 0, ..device };
    assert_eq!(failed_and_reissued(ncq_verdict(quiet, 0b1, false)), Some((0b1, 0)));
}

/// Whether `cause` is the drive's ABRT, as the port's registers showed it.
fn aborted(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::Ahci(AhciCause::CommandFailed { task_file, meaning: "the drive aborted the command (task-file ERR, ABRT)", .. })
            if task_file & TFD_ABORTED != 0
    )
}

#[test]
fn a_dropped_port_is_stopped_before_its_memory_goes_back() {
    let Setup { platform, fake, disk } = setup();
    let list = fake.command_list();
    assert!(platform.is_allocated(list));
    assert_ne!(fake.port_command() & CMD_START, 0, "running");
    let stops_before = fake.stops.lock().len();
    drop(disk);
    assert_eq!(fake.port_command() & (CMD_START | CMD_FIS_RECEIVE), 0, "both engines were stopped");
    let stop = fake.stops.lock()[stops_before];
    assert!(stop.memory_allocated, "stopped while its memory was still allocated");
    assert!(!platform.is_allocated(list), "then the command list went back");
}
