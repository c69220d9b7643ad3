//! Flush on NVMe: opcode 0 on namespace 1 with no data pointer, only when the
//! controller has a volatile write cache; a failed Flush carries the decoded
//! status; a Flush the controller held is issued again after a reset.

use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, HardwareQueue, QueuedDisk, WriteCache};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, MediaStatus, NvmeCause, NvmeStatus};
use dmakit::pattern;

use super::super::fake::{BLOCK, FAKE_REGISTER_BYTES, FakeNvme, FakeRegisters};
use super::super::structures::{IO_FLUSH, IO_WRITE, PSDT_MASK, PSDT_PRP};
use super::super::{Controller, NvmeDisk, NvmeOptions};
use super::{BLOCKS, Setup, buffer};
use crate::test_support::WAITER;

/// A controller whose Identify Controller VWC byte is `vwc`, brought up.
fn setup_with_vwc(vwc: u8) -> Setup {
    let platform = SimulatedPlatform::leak(2048);
    let mut image = vec![0; (BLOCKS * BLOCK) as usize];
    pattern::fill(0, b'N', &mut image);
    let fake = FakeNvme::new(platform, image, 64, false);
    fake.controller.lock().volatile_write_cache = vwc;
    let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap();
    Setup { platform, fake, disk: QueuedDisk::new(disk, &WAITER).unwrap() }
}

#[test]
fn a_flush_is_opcode_0_on_namespace_1_with_no_data_pointer_after_the_write() {
    let setup = setup_with_vwc(1);
    assert_eq!(setup.disk.hardware().shape().write_cache, WriteCache::Volatile);
    let mut source = buffer(&setup, 8);
    source.write_bytes(0, &[0x3c; 8 * 512]).unwrap();
    setup.disk.write(64, 8, &mut source, 0).unwrap();
    setup.disk.flush().unwrap();
    let flushes = setup.fake.flushes.lock().clone();
    assert_eq!(flushes.len(), 1, "one Flush reached the controller");
    let flush = flushes[0];
    assert_eq!((flush.opcode, flush.namespace), (IO_FLUSH, 1));
    assert_eq!(flush.data, [0, 0], "no data pointer");
    assert_eq!(flush.flags & PSDT_MASK, PSDT_PRP, "no SGL either");
    assert_eq!(flush.command, [0; 6], "no LBA range");
    let log = setup.fake.log.lock();
    let io: vec::Vec<u8> = log.iter().filter(|entry| entry.0 == 1).map(|entry| entry.1).collect();
    assert_eq!(io, [IO_WRITE, IO_FLUSH], "the write, then the flush");
    assert_eq!(setup.disk.stats().flushes, 1);
}

#[test]
fn a_controller_without_a_volatile_write_cache_is_never_sent_a_flush() {
    let setup = setup_with_vwc(0);
    assert_eq!(setup.disk.hardware().shape().write_cache, WriteCache::WriteThrough);
    setup.disk.flush().unwrap();
    assert!(setup.fake.flushes.lock().is_empty(), "nothing to flush: the controller saw no Flush");
    assert_eq!(setup.disk.stats().flushes, 1, "still counted");
}

#[test]
fn a_flush_the_controller_fails_carries_the_decoded_status() {
    let setup = setup_with_vwc(1);
    let status = NvmeStatus::Media(MediaStatus::WriteFault);
    *setup.fake.flush_status.lock() = Some(status);
    let failure = setup.disk.flush().unwrap_err();
    assert_eq!(failure.cause(), Cause::Nvme(NvmeCause::Status { status, do_not_retry: true }));
    *setup.fake.flush_status.lock() = None;
    setup.disk.flush().unwrap();
}

#[test]
fn a_flush_the_controller_held_is_issued_again_after_a_fatal_error() {
    let setup = setup_with_vwc(1);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let mut data = buffer(&setup, 8);
    data.write_bytes(0, &[0x66; 8 * 512]).unwrap();
    let writing = setup.disk.submit(BlockRequest::new(BlockOperation::Write, 200, 8, data, 0)).unwrap();
    let flush = setup.disk.submit_flush().unwrap();
    assert_eq!(setup.fake.held_commands(), [0, 1]);
    setup.fake.raise_fatal();
    setup.disk.run_work_loop();
    assert_eq!(setup.fake.held_commands(), [0, 1], "the write and the flush issued again, in order");
    assert!(setup.fake.flushes.lock().is_empty(), "the reset forgot the first Flush before it ran");
    for id in setup.fake.held_commands() {
        setup.fake.complete(id);
    }
    setup.disk.wait(writing).result.unwrap();
    let finished = setup.disk.wait(flush);
    assert_eq!((finished.result, finished.buffer.is_none()), (Ok(()), true));
    assert_eq!(&setup.fake.image.lock()[200 * 512..208 * 512], [0x66; 8 * 512]);
    assert_eq!(setup.fake.flushes.lock().len(), 1);
    let stats = setup.disk.stats();
    assert_eq!((stats.resets, stats.finished, stats.failed), (1, 2, 0));
}
