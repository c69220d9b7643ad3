//! Flush on AHCI: FLUSH CACHE EXT as a non-queued command FIS with no PRDT,
//! issued only once the NCQ commands before it are done, and holding back the
//! queued commands after it until it is; a failed flush carries the task
//! file; a drive without a write cache is never sent one.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, HardwareQueue, RequestHandle, WriteCache};
use dmakit::dma::{AhciCause, Cause, IoReturn};
use dmakit::memory::Constraints;

use super::{CacheFlush, Setup, buffer, expected, read_request, setup_drive, setup_with};
use crate::ata::registers::{COMMAND_FLUSH_CACHE, COMMAND_FLUSH_CACHE_EXT};

/// `count` reads of 8 sectors at `first + 8 * index`.
fn reads(setup: &Setup, first: u64, count: u64) -> Vec<RequestHandle> {
    (0..count)
        .map(|index| {
            let request = read_request(first + index * 8, 8, buffer(setup, 8, Constraints::NONE));
            setup.disk.submit(request).unwrap()
        })
        .collect()
}

#[test]
fn a_flush_waits_for_the_queued_commands_and_the_commands_after_it_wait_for_the_flush() {
    let setup = setup_with(true, true);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let before = reads(&setup, 0, 3);
    let flush = setup.disk.submit_flush().unwrap();
    let after = reads(&setup, 100, 2);
    assert_eq!(setup.fake.queued_tags(), [0, 1, 2], "the three reads are queued, the flush is not issued");
    assert!(setup.fake.flushes.lock().is_empty());
    for tag in [2, 0, 1] {
        setup.fake.complete(tag);
        setup.disk.run_work_loop();
    }
    assert_eq!(*setup.fake.flushes.lock(), [(COMMAND_FLUSH_CACHE_EXT, 0, false)], "no PRDT, no W bit");
    assert!(setup.fake.queued_tags().is_empty(), "the reads after the flush wait for it");
    assert!(!flush.is_finished());
    setup.fake.complete_flush();
    setup.disk.run_work_loop();
    assert!(flush.is_finished());
    assert_eq!(setup.fake.queued_tags().len(), 2, "then the two reads after it are queued");
    for tag in setup.fake.queued_tags() {
        setup.fake.complete(tag);
    }
    for (index, handle) in before.into_iter().enumerate() {
        let buffer = setup.disk.wait(handle).buffer.unwrap();
        assert_eq!(buffer.to_vec(0, 8 * 512).unwrap(), expected(index as u64 * 8, 8), "read {index} before");
    }
    let finished = setup.disk.wait(flush);
    assert_eq!((finished.result, finished.buffer.is_none()), (Ok(()), true));
    for (index, handle) in after.into_iter().enumerate() {
        let buffer = setup.disk.wait(handle).buffer.unwrap();
        assert_eq!(buffer.to_vec(0, 8 * 512).unwrap(), expected(100 + index as u64 * 8, 8), "read {index} after");
    }
    let commands = setup.fake.commands.lock().clone();
    let flush_at = commands.iter().position(|&command| command == COMMAND_FLUSH_CACHE_EXT).unwrap();
    assert_eq!(commands[flush_at + 1..].len(), 2, "two reads after the flush");
    assert_eq!(setup.disk.stats().failed, 0);
}

#[test]
fn without_ncq_the_flush_follows_the_write_and_uses_flush_cache_when_that_is_all_the_drive_has() {
    let setup = setup_drive(true, false, CacheFlush::FlushCache);
    let mut source = buffer(&setup, 4, Constraints::NONE);
    source.write_bytes(0, &[0x42; 4 * 512]).unwrap();
    setup.disk.write(30, 4, &mut source, 0).unwrap();
    setup.disk.flush().unwrap();
    assert_eq!(*setup.fake.flushes.lock(), [(COMMAND_FLUSH_CACHE, 0, false)]);
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_FLUSH_CACHE));
}

#[test]
fn a_failed_flush_carries_the_task_file_and_the_port_runs_on() {
    for ncq in [true, false] {
        let setup = setup_with(true, ncq);
        setup.fake.flush_fails.store(true, Ordering::Relaxed);
        let failure = setup.disk.flush().unwrap_err();
        assert_eq!(failure.code(), IoReturn::IoError, "NCQ {ncq}");
        assert!(matches!(failure.cause(), Cause::Ahci(AhciCause::CommandFailed { .. })), "{failure}");
        setup.fake.flush_fails.store(false, Ordering::Relaxed);
        let mut target = buffer(&setup, 8, Constraints::NONE);
        setup.disk.read(8, 8, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(8, 8), "NCQ {ncq}: the port runs on");
        setup.disk.flush().unwrap();
    }
}

#[test]
fn a_drive_without_a_write_cache_is_never_sent_a_flush() {
    let setup = setup_drive(true, true, CacheFlush::NoCache);
    assert_eq!(setup.disk.hardware().shape().write_cache, WriteCache::WriteThrough);
    setup.disk.flush().unwrap();
    assert!(setup.fake.flushes.lock().is_empty());
    let request = BlockRequest::new(BlockOperation::Read, 0, 1, buffer(&setup, 1, Constraints::NONE), 0);
    let handle = setup.disk.submit(request).unwrap();
    setup.disk.wait(handle).result.unwrap();
}
