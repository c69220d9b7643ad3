//! A bring-up that fails part-way, at each step: every frame it took comes
//! back, and only after the controller was confirmed disabled; one that cannot
//! be confirmed disabled keeps them.

use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::Ordering;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, GenericStatus, IoFailure, NvmeCause, NvmeStatus};

use super::super::fake::{AdminStep, BLOCK, FAKE_REGISTER_BYTES, Failing, FakeNvme, FakeRegisters};
use super::super::{Controller, NvmeDisk, NvmeOptions};
use super::BLOCKS;
use crate::test_support::WAITER;

/// What a bring-up against a fake set up by `configure` came to, with the
/// free frames before it and after it.
struct Attempt {
    fake: Arc<FakeNvme>,
    result: Result<(), IoFailure>,
    free_before: usize,
    free_after: usize,
}

fn attempt(configure: impl FnOnce(&FakeNvme)) -> Attempt {
    let platform = SimulatedPlatform::leak(64);
    let fake = FakeNvme::new(platform, vec![0; (BLOCKS * BLOCK) as usize], 64, true);
    configure(&fake);
    let free_before = platform.free_frames_count();
    let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT);
    // Counted before a disk that came up is dropped (and stopped).
    let free_after = platform.free_frames_count();
    Attempt { fake, result: disk.map(drop), free_before, free_after }
}

#[test]
fn a_bring_up_that_fails_at_any_step_gives_back_every_frame_once_the_controller_is_disabled() {
    let refused =
        Cause::Nvme(NvmeCause::Status { status: NvmeStatus::Generic(GenericStatus::InvalidField), do_not_retry: true });
    let steps = [
        AdminStep::IdentifyController,
        AdminStep::IdentifyNamespace,
        AdminStep::CreateCompletionQueue,
        AdminStep::CreateSubmissionQueue,
    ];
    for step in steps {
        for how in [Failing::Status, Failing::NoCompletion] {
            let attempt = attempt(|fake| *fake.fail_admin.lock() = Some((step, how)));
            let failure = attempt.result.expect_err("the bring-up fails");
            match how {
                Failing::Status => assert_eq!(failure.cause(), refused, "{step:?}"),
                Failing::NoCompletion => {
                    assert!(matches!(failure.cause(), Cause::TimedOut { .. }), "{step:?}: {failure}")
                }
            }
            assert_eq!(attempt.free_after, attempt.free_before, "{step:?}, {how:?}: every frame came back");
            // The initial disable found it off (no record); the one after the
            // failure found every queue page still allocated.
            assert_eq!(*attempt.fake.disables.lock(), [true], "{step:?}, {how:?}: disabled before the release");
        }
    }
    let never_ready = attempt(|fake| fake.never_ready.store(true, Ordering::Relaxed));
    let failure = never_ready.result.expect_err("CSTS.RDY never came");
    assert_eq!(failure.cause(), Cause::Nvme(NvmeCause::DidNotBecomeReady { milliseconds: 500 }));
    assert_eq!(never_ready.free_after, never_ready.free_before, "the admin queues came back");
    // And a bring-up that works does take frames, which it keeps.
    let working = attempt(|_| {});
    assert!(working.result.is_ok() && working.free_after < working.free_before);
}

#[test]
fn a_failed_bring_up_whose_controller_will_not_stop_keeps_what_it_took() {
    for step in [AdminStep::IdentifyController, AdminStep::CreateSubmissionQueue] {
        let attempt = attempt(|fake| {
            *fake.fail_admin.lock() = Some((step, Failing::NoCompletion));
            fake.stuck.store(true, Ordering::Relaxed);
        });
        assert!(matches!(attempt.result.map_err(|failure| failure.cause()), Err(Cause::TimedOut { .. })));
        assert!(attempt.free_after < attempt.free_before, "{step:?}: kept, not freed under a running controller");
    }
}
