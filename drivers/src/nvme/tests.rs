//! The NVMe driver against the fake controller on a simulated machine: bring-up,
//! requests through the block layer's `QueuedDisk` on both data paths, deep
//! queues, error statuses, completions that lie, and stop.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, DeviceHealth, HardwareQueue, QueuedDisk};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, DmaBuffer, IoDirection, MediaStatus, NvmeCause, NvmeStatus};
use dmakit::memory::Constraints;
use dmakit::pattern;

use super::data_pointer::DataPointerChoice;
use super::fake::{BLOCK, FAKE_REGISTER_BYTES, FakeNvme, FakeRegisters, Lie};
use super::structures::{IO_READ, IO_WRITE, PSDT_PRP, PSDT_SGL};
use super::{Controller, NvmeDisk, NvmeOptions};
use crate::test_support::WAITER;

mod bring_up_lie_tests;
mod bring_up_tests;
mod doorbell_tests;
mod flush_tests;
mod hostile_tests;
mod lie_tests;
mod limits_tests;
mod prp_offset_tests;
mod reset_tests;
mod stop_tests;
mod walk_tests;

const BLOCKS: u64 = 16384;

struct Setup {
    platform: &'static SimulatedPlatform,
    fake: Arc<FakeNvme>,
    disk: QueuedDisk<NvmeDisk<FakeRegisters>>,
}

fn setup_with(max_entries: u16, sgl: bool) -> Setup {
    let platform = SimulatedPlatform::leak(2048);
    let mut image = vec![0; (BLOCKS * BLOCK) as usize];
    pattern::fill(0, b'N', &mut image);
    let fake = FakeNvme::new(platform, image, max_entries, sgl);
    let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap();
    Setup { platform, fake, disk: QueuedDisk::new(disk, &WAITER).unwrap() }
}

fn expected(first: u64, blocks: u64) -> Vec<u8> {
    let mut bytes = vec![0; (blocks * BLOCK) as usize];
    pattern::fill(first, b'N', &mut bytes);
    bytes
}

fn buffer(setup: &Setup, blocks: u64) -> DmaBuffer {
    DmaBuffer::allocate(setup.platform, blocks * BLOCK, IoDirection::InOut, Constraints::NONE).unwrap()
}

#[test]
fn bring_up_identifies_the_namespace_and_makes_the_queue_as_deep_as_mqes_allows() {
    let setup = setup_with(128, true);
    let link = setup.disk.hardware().link();
    assert_eq!((link.blocks, link.block_size), (BLOCKS, 512));
    assert_eq!((link.entries, link.depth), (65, 64), "MQES allows 128, the driver's limit is 64 slots");
    assert_eq!(link.choice, DataPointerChoice::SglFrom(32 * 1024));
    assert_eq!(setup.disk.queue_depth(), 64);
    let shallow = setup_with(16, false);
    let link = shallow.disk.hardware().link();
    assert_eq!((link.entries, link.depth, link.choice), (16, 15, DataPointerChoice::PrpOnly));
    assert!(setup.disk.description().contains("FAKE NVME"), "{}", setup.disk.description());
}

#[test]
fn reads_and_writes_are_byte_exact_on_the_prp_and_the_sgl_path() {
    let setup = setup_with(64, true);
    for (blocks, path) in [(8, PSDT_PRP), (200, PSDT_SGL)] {
        let mut source = buffer(&setup, blocks);
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i % 251) as u8).collect();
        source.write_bytes(0, &data).unwrap();
        setup.disk.write(100, blocks, &mut source, 0).unwrap();
        assert_eq!(&setup.fake.image.lock()[100 * 512..(100 + blocks as usize) * 512], data.as_slice());
        let mut target = buffer(&setup, blocks);
        setup.disk.read(3000, blocks, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, (blocks * BLOCK) as usize).unwrap(), expected(3000, blocks));
        let log = setup.fake.log.lock();
        let io: Vec<_> = log.iter().filter(|entry| entry.0 == 1).rev().take(2).collect();
        assert_eq!((io[0].1, io[0].2, io[0].3), (IO_READ, path, None), "{blocks} blocks");
        assert_eq!((io[1].1, io[1].2), (IO_WRITE, path));
    }
    // Larger than one request (1 MiB): split by the block layer.
    let mut large = buffer(&setup, 5000);
    setup.disk.read(1000, 5000, &mut large, 0).unwrap();
    assert_eq!(large.to_vec(0, 5000 * 512).unwrap(), expected(1000, 5000));
}

#[test]
fn sixty_four_requests_in_flight_complete_out_of_order() {
    let setup = setup_with(128, false);
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handles: Vec<_> = (0..64u64)
        .map(|index| {
            let request = BlockRequest::new(BlockOperation::Read, index * 40, 24, buffer(&setup, 24), 0);
            setup.disk.submit(request).unwrap()
        })
        .collect();
    assert_eq!(*setup.fake.most_held.lock(), 64, "the controller held all 64 at once");
    let mut ids = setup.fake.held_commands();
    ids.reverse();
    for id in ids {
        setup.fake.complete(id);
        setup.disk.run_work_loop();
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let finished = setup.disk.wait(handle);
        finished.result.unwrap();
        assert_eq!(finished.buffer.unwrap().to_vec(0, 24 * 512).unwrap(), expected(index as u64 * 40, 24));
    }
    assert!(setup.disk.stats().out_of_order > 0);
}

#[test]
fn an_error_status_fails_only_its_request_with_the_decoded_cause() {
    let setup = setup_with(64, false);
    *setup.fake.bad_lba.lock() = Some(50);
    let mut target = buffer(&setup, 8);
    let failure = setup.disk.read(48, 8, &mut target, 0).unwrap_err();
    let status = NvmeStatus::Media(MediaStatus::UnrecoveredReadError);
    assert_eq!(failure.cause(), Cause::Nvme(NvmeCause::Status { status, do_not_retry: true }));
    setup.disk.read(0, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(0, 8), "the controller keeps running");
}

#[test]
fn a_completion_that_lies_is_a_typed_cause_and_stops_the_controller_before_memory_goes_back() {
    for (lie, cause) in [
        (Lie::UnknownCommand(40), NvmeCause::CompletionNotInFlight { queue: 1, command: 40 }),
        (Lie::WrongQueue(3), NvmeCause::CompletionWrongQueue { queue: 1, named: 3 }),
        (Lie::HeadPastTail, NvmeCause::HeadOutOfOrder { queue: 1, head: 2 }),
        // Far past the queue: the check must not overflow on the way.
        (Lie::Head(0xfff0), NvmeCause::HeadOutOfOrder { queue: 1, head: 0xfff0 }),
    ] {
        let setup = setup_with(64, false);
        *setup.fake.lie.lock() = Some(lie);
        setup.fake.hold.store(true, Ordering::Relaxed);
        let request = BlockRequest::new(BlockOperation::Read, 0, 8, buffer(&setup, 8), 0);
        let handle = setup.disk.submit(request).unwrap();
        setup.fake.complete(0);
        let mut outcomes = Vec::new();
        let health = setup.disk.hardware().collect(&mut |slot, outcome| outcomes.push((slot, outcome)));
        let DeviceHealth::MustStop(failure) = health else { panic!("{lie:?}: {health:?}") };
        assert_eq!(failure.cause(), Cause::Nvme(cause), "{lie:?}");
        assert!(outcomes.is_empty(), "nothing completed on a lie");
        setup.disk.stop().unwrap();
        assert_eq!(setup.fake.disables.lock().last(), Some(&true), "disabled while its memory was allocated");
        assert!(setup.disk.wait(handle).result.is_err());
    }
}

#[test]
fn stop_disables_before_the_queues_go_back_and_start_brings_it_up_again() {
    let setup = setup_with(64, true);
    let free = setup.platform.free_frames_count();
    setup.disk.stop().unwrap();
    assert_eq!(*setup.fake.disables.lock(), vec![true], "disabled at stop while its memory was still allocated");
    assert!(setup.platform.free_frames_count() > free, "the queues and lists went back");
    setup.disk.start().unwrap();
    let mut target = buffer(&setup, 8);
    setup.disk.read(5, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(5, 8));
}

#[test]
fn a_controller_that_will_not_stop_keeps_its_memory() {
    let setup = setup_with(64, false);
    setup.fake.stuck.store(true, Ordering::Relaxed);
    let free = setup.platform.free_frames_count();
    let stopped = setup.disk.stop();
    log::info!("stop of a stuck controller: {stopped:?}");
    let _ = stopped;
    assert_eq!(setup.platform.free_frames_count(), free, "nothing went back under a running controller");
    let again = setup.disk.hardware().quiesce();
    assert!(matches!(again, dmakit::block::Quiesced::StillRunning(_)), "still not stopped: {again:?}");
    assert_eq!(setup.platform.free_frames_count(), free, "nor after a second try");
}

#[test]
fn interrupts_are_masked_in_the_handler_and_unmasked_after_collect() {
    let setup = setup_with(64, false);
    let hardware = setup.disk.hardware();
    assert!(!hardware.acknowledge_interrupt(), "not enabled yet");
    hardware.enable_interrupts();
    setup.fake.hold.store(true, Ordering::Relaxed);
    let handle = setup.disk.submit(BlockRequest::new(BlockOperation::Read, 0, 8, buffer(&setup, 8), 0)).unwrap();
    setup.fake.complete(0);
    assert!(setup.fake.interrupt_pending());
    assert!(hardware.acknowledge_interrupt());
    assert!(!setup.fake.interrupt_pending(), "masked by INTMS");
    setup.disk.run_work_loop();
    setup.disk.wait(handle).result.unwrap();
    assert!(!setup.fake.interrupt_pending(), "the completion was released, vector 0 unmasked");
}

/// A shared line (AHCI and NVMe on IRQ 10 under `pc`) makes the handler and
/// `collect` run when the controller posted nothing. QEMU counts every head
/// doorbell that leaves a queue empty as one queue drained, so a needless one
/// drives its count below zero and vector 0 then never drops: the driver must
/// ring the head doorbell only when it consumed a completion.
#[test]
fn a_collect_that_finds_nothing_leaves_the_line_able_to_drop() {
    let setup = setup_with(64, false);
    let hardware = setup.disk.hardware();
    hardware.enable_interrupts();
    setup.fake.hold.store(true, Ordering::Relaxed);
    for round in 0..3 {
        // Another device's interrupt on the same line: nothing to collect.
        hardware.acknowledge_interrupt();
        setup.disk.run_work_loop();
        assert!(!setup.fake.interrupt_pending(), "round {round}: asserted with nothing posted");
        let handle = setup.disk.submit(BlockRequest::new(BlockOperation::Read, 0, 8, buffer(&setup, 8), 0)).unwrap();
        setup.fake.complete(0);
        assert!(setup.fake.interrupt_pending(), "round {round}: the completion raises the line");
        assert!(hardware.acknowledge_interrupt());
        setup.disk.run_work_loop();
        setup.disk.wait(handle).result.unwrap();
        assert!(!setup.fake.interrupt_pending(), "round {round}: everything released, yet the line stays up");
    }
}
