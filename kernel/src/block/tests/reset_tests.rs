//! Recovery by reset: a device that asks for one (or a request that timed out)
//! is quiesced, reopened, and the requests it held are programmed again with
//! the transfers they still hold; a device that dies at every reset, or will
//! not stop, ends as a stop does.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;

/// A disk whose device finishes only when told and can be reset.
fn resettable(depth: usize) -> QueuedDisk<FakeDisk> {
    let disk = disk(1024, depth, Finishing::WhenTold);
    *disk.hardware().recovery.lock() = Recovery::ResetAndReissue;
    disk
}

fn events(disk: &QueuedDisk<FakeDisk>) -> Vec<String> {
    disk.hardware().events.lock().clone()
}

fn starts(lbas: impl IntoIterator<Item = u64>) -> Vec<String> {
    lbas.into_iter().map(|lba| alloc::format!("start {lba}")).collect()
}

/// A write request of one block whose bytes are `fill`.
fn write(disk: &QueuedDisk<FakeDisk>, lba: u64, fill: u8) -> BlockRequest {
    let mut buffer = high_buffer(disk, 1, IoDirection::Out);
    buffer.write_bytes(0, &[fill; BLOCK as usize]).unwrap();
    BlockRequest::new(BlockOperation::Write, lba, 1, buffer, 0)
}

#[test]
fn a_fatal_error_resets_the_device_and_every_request_it_held_completes() {
    let disk = resettable(8);
    // Four reads and four writes, interleaved.
    let handles: Vec<RequestHandle> = (0..8u64)
        .map(|index| match index % 2 {
            0 => disk.submit(read(&disk, index * 10, 2)).unwrap(),
            _ => disk.submit(write(&disk, index * 10, index as u8)).unwrap(),
        })
        .collect();
    *disk.hardware().fatal.lock() = Fatal::Once;
    disk.run_work_loop();
    let after: Vec<String> = events(&disk)[8..].to_vec();
    let mut expected: Vec<String> = ["reset"].map(String::from).into();
    expected.extend((0..8).map(|_| String::from("released")));
    expected.push(String::from("restart"));
    expected.extend(starts((0..8).map(|index| index * 10)));
    assert_eq!(after, expected, "reset, reopened, then each request programmed again in submission order");
    assert_eq!(disk.stats().in_flight, 8, "none failed");
    for slot in disk.hardware().in_flight_slots() {
        disk.hardware().finish(slot);
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = disk.wait(handle);
        finished.result.unwrap_or_else(|failure| panic!("request {index}: {failure}"));
        let lba = index as u64 * 10;
        match index % 2 {
            0 => assert_eq!(
                finished.buffer.unwrap().to_vec(0, 2 * BLOCK as usize).unwrap(),
                disk.hardware().image(lba, 2)
            ),
            _ => assert_eq!(disk.hardware().image(lba, 1), [index as u8; BLOCK as usize], "write {index}"),
        }
    }
    let stats = disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 8, 0));
    // The disk runs on.
    let handle = disk.submit(read(&disk, 3, 1)).unwrap();
    disk.hardware().finish(disk.hardware().in_flight_slots()[0]);
    disk.wait(handle).result.unwrap();
}

#[test]
fn a_timeout_fails_only_the_stuck_request_and_the_others_complete_after_a_reset() {
    let disk = resettable(4);
    let handles: Vec<RequestHandle> = (0..4).map(|index| disk.submit(read(&disk, index * 5, 1)).unwrap()).collect();
    let mut handles = handles.into_iter();
    let stuck = handles.next().unwrap();
    let finished = disk.wait(stuck);
    let failure = finished.result.unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    assert!(matches!(failure.cause(), Cause::TimedOut { .. }), "{failure}");
    assert!(finished.buffer.is_some(), "the device was stopped: the buffer comes back");
    let after: Vec<String> = events(&disk)[4..].to_vec();
    let mut expected: Vec<String> =
        ["reset", "released", "released", "released", "released", "restart"].map(String::from).into();
    expected.extend(starts([5, 10, 15]));
    assert_eq!(after, expected, "the three others were programmed again, in order");
    for slot in disk.hardware().in_flight_slots() {
        disk.hardware().finish(slot);
    }
    for (index, handle) in handles.enumerate() {
        let finished = disk.wait(handle);
        finished.result.unwrap_or_else(|failure| panic!("request {}: {failure}", index + 1));
        let lba = (index as u64 + 1) * 5;
        assert_eq!(finished.buffer.unwrap().to_vec(0, BLOCK as usize).unwrap(), disk.hardware().image(lba, 1));
    }
    let stats = disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 4, 1));
}

#[test]
fn a_device_that_dies_at_every_reset_is_stopped_after_the_limit() {
    let disk = resettable(4);
    let handles: Vec<RequestHandle> = (0..4).map(|index| disk.submit(read(&disk, index, 1)).unwrap()).collect();
    *disk.hardware().fatal.lock() = Fatal::Always;
    for _ in 0..10 {
        disk.run_work_loop();
    }
    let restarts = events(&disk).iter().filter(|event| *event == "restart").count();
    assert_eq!(restarts as u64, MAX_RESETS_IN_A_ROW, "reopened at each reset, then stopped: {:?}", events(&disk));
    assert_eq!(disk.stats().resets, MAX_RESETS_IN_A_ROW);
    for handle in handles {
        let finished = disk.wait(handle);
        assert_eq!(finished.result.unwrap_err(), FATAL);
        assert!(finished.buffer.is_some(), "stopped: the buffer comes back");
    }
    // After the last reopen: the four programmed again, then the stop's
    // quiesce before any memory went back.
    let events = events(&disk);
    let last_restart = events.iter().rposition(|event| event == "restart").unwrap();
    let mut expected = starts(0..4);
    expected.extend(["reset", "released", "released", "released", "released"].map(String::from));
    assert_eq!(events[last_restart + 1..last_restart + 10], expected);
    let refused = disk.submit(read(&disk, 9, 1)).unwrap_err();
    assert_eq!(refused.failure.cause(), Cause::DriverStopped);
    assert_eq!(disk.stats().in_flight, 0);
}

#[test]
fn a_device_that_will_not_stop_at_a_reset_keeps_its_memory() {
    let disk = resettable(2);
    let why = IoFailure::new(IoReturn::Timeout, Cause::DeviceWouldNotStop);
    *disk.hardware().stops.lock() = Quiesced::StillRunning(why);
    let platform = disk.hardware().platform;
    let handles: Vec<RequestHandle> = (0..2).map(|index| disk.submit(read(&disk, index, 2)).unwrap()).collect();
    let bounce_in_use = platform.accounting().stats().pages_in_use;
    assert!(bounce_in_use > 0, "the 32-bit fake bounces a high buffer");
    *disk.hardware().fatal.lock() = Fatal::Once;
    disk.run_work_loop();
    for handle in handles {
        let finished = disk.wait(handle);
        assert_eq!(finished.result.unwrap_err(), FATAL);
        assert!(finished.buffer.is_none(), "abandoned: the device may still write it");
    }
    assert_eq!(platform.accounting().stats().pages_in_use, bounce_in_use, "bounce pages never freed");
    let events = events(&disk);
    assert!(!events.iter().any(|event| event == "released" || event == "restart"), "{events:?}");
    assert_eq!(disk.stats().resets, 1, "the reset was tried (and ended as a stop)");
    assert_eq!(disk.submit(read(&disk, 9, 1)).unwrap_err().failure.cause(), Cause::DriverStopped);
}

#[test]
fn a_device_that_does_not_come_back_after_a_reset_is_stopped_and_its_requests_fail_with_the_cause() {
    let disk = resettable(2);
    let handles: Vec<RequestHandle> = (0..2).map(|index| disk.submit(read(&disk, index, 1)).unwrap()).collect();
    *disk.hardware().reopens.lock() = Err(IoFailure::new(IoReturn::NotReady, Cause::DeviceWouldNotStop));
    *disk.hardware().fatal.lock() = Fatal::Once;
    disk.run_work_loop();
    for handle in handles {
        let finished = disk.wait(handle);
        assert_eq!(finished.result.unwrap_err(), FATAL);
        assert!(finished.buffer.is_some(), "the device stopped: the buffer comes back");
    }
    assert_eq!(events(&disk)[2..], ["reset", "released", "released", "restart"]);
    assert_eq!(disk.stats().resets, 1);
    assert_eq!(disk.submit(read(&disk, 9, 1)).unwrap_err().failure.cause(), Cause::DriverStopped);
    *disk.hardware().reopens.lock() = Ok(());
    disk.start().unwrap();
}
