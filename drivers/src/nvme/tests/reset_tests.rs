//! A controller that reports a fatal error (CSTS.CFS), or a command it never
//! answers, is reset and the requests that did not fail are issued again; one
//! that dies at every reset is stopped after the limit; one that will not
//! disable keeps every byte it was given.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, MAX_RESETS_IN_A_ROW, RequestHandle};
use dmakit::dma::{Cause, IoReturn, NvmeCause};

use super::{Setup, buffer, expected, setup_with};

/// Four reads (even indexes) and four writes (odd ones) of 8 blocks at `index * 40`.
fn mixed(setup: &Setup) -> Vec<RequestHandle> {
    (0..8u64)
        .map(|index| {
            let operation = match index % 2 {
                0 => BlockOperation::Read,
                _ => BlockOperation::Write,
            };
            let mut data = buffer(setup, 8);
            if operation == BlockOperation::Write {
                data.write_bytes(0, &[index as u8; 8 * 512]).unwrap();
            }
            setup.disk.submit(BlockRequest::new(operation, index * 40, 8, data, 0)).unwrap()
        })
        .collect()
}

fn complete_held(setup: &Setup) {
    for id in setup.fake.held_commands() {
        setup.fake.complete(id);
    }
}

#[test]
fn a_fatal_controller_is_reset_and_the_eight_requests_it_held_complete() {
    let setup = setup_with(64, false);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles = mixed(&setup);
    assert_eq!(setup.fake.held_commands().len(), 8);
    setup.fake.raise_fatal();
    setup.disk.run_work_loop();
    assert_eq!(*setup.fake.disables.lock(), [true], "disabled once, its memory still allocated");
    assert_eq!(setup.fake.held_commands(), [0, 1, 2, 3, 4, 5, 6, 7], "all eight issued again, in order");
    complete_held(&setup);
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        finished.result.unwrap_or_else(|failure| panic!("request {index}: {failure}"));
        let lba = index * 40;
        match index % 2 {
            0 => assert_eq!(finished.buffer.unwrap().to_vec(0, 8 * 512).unwrap(), expected(lba as u64, 8)),
            _ => assert_eq!(&setup.fake.image.lock()[lba * 512..(lba + 8) * 512], [index as u8; 8 * 512]),
        }
    }
    let stats = setup.disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 8, 0));
}

#[test]
fn a_command_the_controller_never_answers_fails_alone_and_the_others_complete_after_a_reset() {
    let setup = setup_with(64, false);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let mut handles = (0..4u64)
        .map(|index| {
            let request = BlockRequest::new(BlockOperation::Read, index * 16, 8, buffer(&setup, 8), 0);
            setup.disk.submit(request).unwrap()
        })
        .collect::<Vec<_>>()
        .into_iter();
    let finished = setup.disk.wait(handles.next().unwrap());
    let failure = finished.result.unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    assert!(matches!(failure.cause(), Cause::TimedOut { .. }), "{failure}");
    assert!(finished.buffer.is_some(), "the controller was disabled: the buffer comes back");
    assert_eq!(setup.fake.held_commands(), [1, 2, 3], "the three others issued again");
    complete_held(&setup);
    for (index, handle) in handles.enumerate() {
        let finished = setup.disk.wait(handle);
        finished.result.unwrap_or_else(|failure| panic!("request {}: {failure}", index + 1));
        let lba = (index as u64 + 1) * 16;
        assert_eq!(finished.buffer.unwrap().to_vec(0, 8 * 512).unwrap(), expected(lba, 8));
    }
    let stats = setup.disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 4, 1));
}

#[test]
fn a_controller_that_dies_at_every_reset_is_stopped_after_the_limit() {
    let setup = setup_with(64, false);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles = mixed(&setup);
    setup.fake.fatal_on_io.store(true, Ordering::Relaxed);
    setup.fake.raise_fatal();
    for _ in 0..10 {
        setup.disk.run_work_loop();
    }
    let fatal = Cause::Nvme(NvmeCause::ControllerFatal);
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        assert_eq!(finished.result.unwrap_err().cause(), fatal, "request {index}");
        assert!(finished.buffer.is_some(), "disabled: the buffer comes back");
    }
    assert_eq!(setup.disk.stats().resets, MAX_RESETS_IN_A_ROW);
    let disables = setup.fake.disables.lock().clone();
    assert_eq!(disables.len() as u64, MAX_RESETS_IN_A_ROW + 1, "each reset, then the stop");
    assert!(disables.iter().all(|&allocated| allocated), "never a queue freed before the disable: {disables:?}");
    let refused = setup.disk.submit(BlockRequest::new(BlockOperation::Read, 0, 8, buffer(&setup, 8), 0)).unwrap_err();
    assert_eq!(refused.failure.cause(), Cause::DriverStopped);
}

#[test]
fn a_fatal_controller_that_will_not_disable_keeps_its_memory() {
    let setup = setup_with(64, false);
    setup.fake.hold.store(true, Ordering::Relaxed);
    setup.fake.stuck.store(true, Ordering::Relaxed);
    let handles = mixed(&setup);
    let free = setup.platform.free_frames_count();
    setup.fake.raise_fatal();
    setup.disk.run_work_loop();
    for handle in handles {
        let finished = setup.disk.wait(handle);
        assert_eq!(finished.result.unwrap_err().cause(), Cause::Nvme(NvmeCause::ControllerFatal));
        assert!(finished.buffer.is_none(), "abandoned: the controller may still use it");
    }
    assert_eq!(setup.platform.free_frames_count(), free, "nothing went back under a running controller");
    assert_eq!(setup.disk.stats().resets, 1, "a reset was tried, and ended as a stop");
}
