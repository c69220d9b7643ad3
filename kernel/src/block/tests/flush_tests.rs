//! Flushes through the block layer: a slot but no buffer, in line behind the
//! requests submitted before, answered at once by a disk without a volatile
//! cache, refused by a stopped disk, failed with the device's cause, and
//! issued again after a reset like a read.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;

/// A write request of one block whose bytes are `fill`.
fn write(disk: &QueuedDisk<FakeDisk>, lba: u64, fill: u8) -> BlockRequest {
    let mut buffer = high_buffer(disk, 1, IoDirection::Out);
    buffer.write_bytes(0, &[fill; BLOCK as usize]).unwrap();
    BlockRequest::new(BlockOperation::Write, lba, 1, buffer, 0)
}

fn events(disk: &QueuedDisk<FakeDisk>) -> Vec<String> {
    disk.hardware().events.lock().clone()
}

/// Finishes whatever the fake device holds, then runs the loop.
fn finish_all(disk: &QueuedDisk<FakeDisk>) {
    for slot in disk.hardware().in_flight_slots() {
        disk.hardware().finish(slot);
    }
    disk.run_work_loop();
}

#[test]
fn a_flush_waits_in_line_behind_queued_writes_and_makes_finished_writes_durable() {
    // Two slots, three writes: the third waits in software, the flush behind it.
    let disk = disk(1024, 2, Finishing::WhenTold);
    let writes: Vec<RequestHandle> =
        (0..3u64).map(|index| disk.submit(write(&disk, 100 + index, 0xa0 + index as u8)).unwrap()).collect();
    let flush = disk.submit_flush().unwrap();
    assert_eq!(events(&disk), ["start 100", "start 101"], "the flush waits behind the third write");
    finish_all(&disk);
    assert_eq!(events(&disk)[2..], ["start 102", "flush"], "first come, first started: the flush last");
    assert!(!flush.is_finished(), "the device has not answered the flush yet");
    assert_ne!(disk.hardware().durable(100, 1), [0xa0; BLOCK as usize], "finished, but still in the cache");
    finish_all(&disk);
    for handle in writes {
        disk.wait(handle).result.unwrap();
    }
    let finished = disk.wait(flush);
    finished.result.unwrap();
    assert!(finished.buffer.is_none(), "a flush carries no buffer");
    // The fake device finished the third write before the flush, too.
    for index in 0..3u64 {
        assert_eq!(disk.hardware().durable(100 + index, 1), [0xa0 + index as u8; BLOCK as usize], "write {index}");
    }
    let stats = disk.stats();
    assert_eq!((stats.submitted, stats.flushes, stats.finished, stats.failed, stats.in_flight), (4, 1, 4, 0, 0));
    assert_eq!(disk.hardware().platform.accounting().stats().pages_in_use, 0, "every bounce page went back");
}

#[test]
fn the_synchronous_flush_waits_for_the_device() {
    let disk = disk(1024, 4, Finishing::AtOnce);
    let mut source = high_buffer(&disk, 1, IoDirection::Out);
    source.write_bytes(0, &[0x5c; BLOCK as usize]).unwrap();
    disk.write(9, 1, &mut source, 0).unwrap();
    disk.flush().unwrap();
    assert_eq!(events(&disk), ["start 9", "flush"]);
    assert_eq!(disk.hardware().durable(9, 1), [0x5c; BLOCK as usize]);
}

#[test]
fn a_disk_without_a_volatile_cache_answers_a_flush_at_once_without_the_device() {
    let mut hardware = FakeDisk::new(SimulatedPlatform::leak(64), 2, Finishing::WhenTold);
    hardware.write_cache = WriteCache::WriteThrough;
    let disk = QueuedDisk::new(hardware, &WAITER).unwrap();
    let busy = disk.submit(read(&disk, 0, 1)).unwrap();
    let flush = disk.submit_flush().unwrap();
    assert!(flush.is_finished(), "nothing to flush: over before the read it was submitted after");
    let finished = disk.wait(flush);
    assert_eq!((finished.result, finished.buffer.is_none()), (Ok(()), true));
    disk.flush().unwrap();
    assert_eq!(events(&disk), ["start 0"], "the device never saw a flush");
    let stats = disk.stats();
    assert_eq!((stats.submitted, stats.flushes, stats.finished), (3, 2, 2));
    finish_all(&disk);
    disk.wait(busy).result.unwrap();
}

#[test]
fn a_stopped_disk_refuses_a_flush_and_a_stop_aborts_one_waiting() {
    for write_cache in [WriteCache::Volatile, WriteCache::WriteThrough] {
        let mut hardware = FakeDisk::new(SimulatedPlatform::leak(64), 1, Finishing::WhenTold);
        hardware.write_cache = write_cache;
        let disk = QueuedDisk::new(hardware, &WAITER).unwrap();
        disk.stop().unwrap();
        let stopped = IoFailure::new(IoReturn::NotReady, Cause::DriverStopped);
        assert_eq!(disk.flush().unwrap_err(), stopped, "{write_cache:?}");
        assert_eq!(disk.submit_flush().unwrap_err(), stopped, "{write_cache:?}");
        assert_eq!(disk.stats().flushes, 0, "refused, not taken");
    }
    // One slot: a write in it, the flush waiting behind it when the disk stops.
    let disk = disk(1024, 1, Finishing::WhenTold);
    let writing = disk.submit(write(&disk, 5, 1)).unwrap();
    let flush = disk.submit_flush().unwrap();
    let report = disk.stop().unwrap();
    assert_eq!((report.aborted, report.prepared_left), (2, 0), "the waiting flush and the unfinished write");
    let finished = disk.wait(flush);
    assert_eq!(finished.result.unwrap_err(), IoFailure::new(IoReturn::Aborted, Cause::DriverStopped));
    assert!(finished.buffer.is_none());
    assert!(disk.wait(writing).buffer.is_some(), "the write's buffer came back after the reset");
    assert!(!events(&disk).contains(&String::from("flush")), "the flush never reached the device");
}

#[test]
fn a_device_error_on_a_flush_fails_it_with_the_devices_cause() {
    let disk = disk(1024, 2, Finishing::WhenTold);
    let flush = disk.submit_flush().unwrap();
    let slot = disk.hardware().in_flight_slots()[0];
    let device_error = IoFailure::new(IoReturn::IoError, Cause::Other("the fake device's write error"));
    disk.hardware().fail(slot, device_error);
    let finished = disk.wait(flush);
    assert_eq!(finished.result.unwrap_err(), device_error);
    assert!(finished.buffer.is_none());
    let stats = disk.stats();
    assert_eq!((stats.failed, stats.in_flight), (1, 0));
    // The slot is free again, for a read with a buffer.
    let handle = disk.submit(read(&disk, 3, 1)).unwrap();
    finish_all(&disk);
    assert_eq!(disk.wait(handle).buffer.unwrap().to_vec(0, BLOCK as usize).unwrap(), disk.hardware().image(3, 1));
}

#[test]
fn a_flush_the_device_held_is_issued_again_after_a_reset() {
    let disk = disk(1024, 4, Finishing::WhenTold);
    *disk.hardware().recovery.lock() = Recovery::ResetAndReissue;
    let writing = disk.submit(write(&disk, 40, 0x77)).unwrap();
    let flush = disk.submit_flush().unwrap();
    *disk.hardware().fatal.lock() = Fatal::Once;
    disk.run_work_loop();
    let expected = ["start 40", "flush", "reset", "released", "released", "restart", "start 40", "flush"];
    assert_eq!(events(&disk), expected, "the write and the flush programmed again, in order");
    finish_all(&disk);
    disk.wait(writing).result.unwrap();
    let finished = disk.wait(flush);
    assert_eq!((finished.result, finished.buffer.is_none()), (Ok(()), true));
    assert_eq!(disk.hardware().durable(40, 1), [0x77; BLOCK as usize]);
    let stats = disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 2, 0));
}

#[test]
fn a_flush_that_times_out_resets_the_device_and_fails_alone() {
    let disk = disk(1024, 4, Finishing::WhenTold);
    *disk.hardware().recovery.lock() = Recovery::ResetAndReissue;
    let flush = disk.submit_flush().unwrap();
    let reading = disk.submit(read(&disk, 8, 1)).unwrap();
    let finished = disk.wait(flush);
    let failure = finished.result.unwrap_err();
    assert!(matches!(failure.cause(), Cause::TimedOut { .. }), "{failure}");
    assert!(finished.buffer.is_none());
    assert_eq!(events(&disk)[2..], ["reset", "released", "released", "restart", "start 8"], "only the read again");
    finish_all(&disk);
    disk.wait(reading).result.unwrap();
    // The slot the flush held takes a new flush.
    let again = disk.submit_flush().unwrap();
    finish_all(&disk);
    disk.wait(again).result.unwrap();
}
