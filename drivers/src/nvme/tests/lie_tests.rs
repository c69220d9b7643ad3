//! Values a controller reports that cannot be, each refused with a typed
//! cause that names it: a completion posted before its command was rung in,
//! a status field that cannot occur, and CAP and Identify values no
//! controller has (NN 0, entry sizes other than 64/16, MQES 0, NCAP above
//! NSZE, a namespace of more bytes than 64 bits count), and an MDTS whose
//! transfer size overflows 64 bits, which means no limit rather than none.

use dmakit::dma::ControllerField;

use super::super::fake::{Answer, Forged};
use super::super::identify::{ControllerIdentity, NamespaceIdentity};
use super::hostile_tests::lent_ranges;
use super::*;

fn refusal(max_entries: u16, change: impl Fn(&FakeNvme)) -> Cause {
    let platform = SimulatedPlatform::leak(64);
    let fake = FakeNvme::new(platform, vec![0; (64 * BLOCK) as usize], max_entries, true);
    change(&fake);
    let free = platform.free_frames_count();
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let refused = Controller::new(registers, FAKE_REGISTER_BYTES, &WAITER)
        .and_then(|controller| NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT))
        .err()
        .expect("refused");
    assert_eq!(platform.free_frames_count(), free, "everything bring-up took went back");
    refused.cause()
}

fn impossible(field: ControllerField, value: u64) -> Cause {
    Cause::Nvme(NvmeCause::ImpossibleValue { field, value })
}

#[test]
fn identify_and_cap_values_that_cannot_be_are_refused_by_name() {
    let with = |change: fn(&mut ControllerIdentity)| move |fake: &FakeNvme| change(&mut fake.controller.lock());
    assert_eq!(refusal(8, with(|c| c.namespaces = 0)), impossible(ControllerField::Namespaces, 0));
    assert_eq!(
        refusal(8, with(|c| c.submission_entry_sizes = 0)),
        impossible(ControllerField::SubmissionEntrySizes, 0)
    );
    assert_eq!(
        refusal(8, with(|c| c.completion_entry_sizes = 0x33)),
        impossible(ControllerField::CompletionEntrySizes, 0x33)
    );
    assert_eq!(refusal(1, |_| {}), impossible(ControllerField::MaximumQueueEntries, 0));
    let namespace = |identity: NamespaceIdentity| move |fake: &FakeNvme| *fake.namespace.lock() = Some(identity);
    let honest = NamespaceIdentity { blocks: 64, capacity: 64, block_shift: 9, metadata: 0 };
    assert_eq!(
        refusal(8, namespace(NamespaceIdentity { capacity: 65, ..honest })),
        impossible(ControllerField::NamespaceCapacity, 65)
    );
    let huge = NamespaceIdentity { blocks: 1 << 60, capacity: 1, block_shift: 12, metadata: 0 };
    assert_eq!(refusal(8, namespace(huge)), impossible(ControllerField::NamespaceSize, 1 << 60));
}

/// MDTS 52 and up: 2^MDTS pages of 4 KiB is 2^64 bytes or more, which
/// wrapped to 0: the disk took requests of no bytes at all.
#[test]
fn an_mdts_past_64_bits_of_bytes_is_no_limit() {
    for shift in [52, 53, 63, 64, 255] {
        let platform = SimulatedPlatform::leak(64);
        let mut image = vec![0; (64 * BLOCK) as usize];
        pattern::fill(0, b'N', &mut image);
        let fake = FakeNvme::new(platform, image, 8, false);
        fake.controller.lock().max_transfer_shift = shift;
        let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
        let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap();
        assert_eq!(disk.link().max_request_bytes, NvmeOptions::DEFAULT.max_request_bytes, "MDTS {shift}");
        let disk = QueuedDisk::new(disk, &WAITER).unwrap();
        let mut target = DmaBuffer::allocate(platform, 8 * BLOCK, IoDirection::InOut, Constraints::NONE).unwrap();
        disk.read(0, 8, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(0, 8), "MDTS {shift}");
    }
}

/// A completion for command 1 posted while the controller fetched command 0,
/// before 1 was rung in. Without the check the driver took it for 1's and
/// handed 1's buffer back; the controller then ran 1 into memory no longer
/// lent to it.
#[test]
fn a_completion_posted_before_its_command_was_rung_in_stops_the_controller() {
    let setup = setup_with(64, false);
    setup.fake.turn_hostile();
    setup.fake.forge_at_next_doorbell(Forged { command_id: 1, head: None, status: 0 });
    let buffers = [buffer(&setup, 8), buffer(&setup, 8)];
    let lent: Vec<_> = buffers.iter().flat_map(|buffer| lent_ranges(buffer, 0, 8 * BLOCK)).collect();
    setup.fake.lend(lent);
    let requests = buffers.into_iter().map(|buffer| BlockRequest::new(BlockOperation::Read, 0, 8, buffer, 0));
    let handles: Vec<_> = setup.disk.submit_together(requests.collect()).into_iter().map(Result::unwrap).collect();
    setup.disk.run_work_loop();
    let still_lent: Vec<_> = handles.iter().map(|handle| !handle.is_finished()).collect();
    // Whatever the driver still lends, the controller may now run.
    if still_lent.iter().all(|&lent| !lent) {
        setup.fake.lend(Vec::new());
    }
    while setup.fake.run_held(0, Answer::Honest) {}
    let results: Vec<_> = handles.into_iter().map(|handle| setup.disk.wait(handle).result).collect();
    let cause = NvmeCause::CompletionBeforeFetch { queue: 1, command: 1, head: 1 };
    assert_eq!(results[1].as_ref().map_err(|failure| failure.cause()), Err(Cause::Nvme(cause)));
    assert_eq!(setup.fake.violations(), Vec::<String>::new());
    assert_eq!(setup.fake.disables.lock().last(), Some(&true), "disabled before memory went back");
}

#[test]
fn a_status_that_cannot_occur_fails_its_request_by_name() {
    // A reserved status code type (4), and a success with Do Not Retry.
    for status in [4 << 9 | 1 << 1, 1 << 15] {
        let setup = setup_with(64, false);
        setup.fake.turn_hostile();
        let target = buffer(&setup, 8);
        setup.fake.lend(lent_ranges(&target, 0, 8 * BLOCK));
        let handle = setup.disk.submit(BlockRequest::new(BlockOperation::Read, 0, 8, target, 0)).unwrap();
        setup.fake.run_held(0, Answer::Status(status));
        let failure = setup.disk.wait(handle).result.unwrap_err();
        let cause = NvmeCause::StatusImpossible { queue: 1, command: 0, status: status | 1 };
        assert_eq!(failure.cause(), Cause::Nvme(cause), "status {status:#x}");
    }
}
