//! Stopping an NVMe controller: a stop shuts it down normally (CC.SHN, then
//! CSTS.SHST awaited) before disabling it, a reset only disables it; a
//! controller that did not confirm its disable is reported as still running
//! until a later disable is confirmed, and only then does what it was given
//! go back.

use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, HardwareQueue, Quiesced};
use dmakit::dma::{Cause, NvmeCause};

use super::super::Shutdown;
use super::super::fake::FakeShutdown;
use super::super::registers::ShutdownStatus;
use super::{buffer, expected, setup_with};

#[test]
fn a_stop_shuts_the_controller_down_before_it_disables_it_and_a_reset_does_not() {
    let setup = setup_with(64, true);
    let hardware = setup.disk.hardware();
    // A reset: disabled without a shutdown, and brought up again.
    assert!(matches!(hardware.quiesce(), Quiesced::Stopped));
    hardware.reopen().unwrap();
    assert_eq!(hardware.last_shutdown(), None, "a reset asks for no shutdown");
    let free = setup.platform.free_frames_count();
    setup.disk.stop().unwrap();
    assert_eq!(hardware.last_shutdown(), Some(Ok(Shutdown::Complete)));
    assert_eq!(
        *setup.fake.shutdown_at_disable.lock(),
        [ShutdownStatus::Normal, ShutdownStatus::Complete],
        "the reset's disable came without a shutdown, the stop's after SHST said complete"
    );
    assert_eq!(*setup.fake.disables.lock(), [true, true], "disabled while its memory was allocated");
    assert!(setup.platform.free_frames_count() > free, "its memory went back after the disable");
    // The reset at the next start clears SHST: it takes commands again.
    setup.disk.start().unwrap();
    let mut target = buffer(&setup, 8);
    setup.disk.read(5, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(5, 8));
}

#[test]
fn a_controller_that_never_reports_its_shutdown_gets_a_typed_cause_and_is_disabled_all_the_same() {
    let setup = setup_with(64, false);
    *setup.fake.shutdown.lock() = FakeShutdown::NeverReports;
    let hardware = setup.disk.hardware();
    let free = setup.platform.free_frames_count();
    setup.disk.stop().unwrap();
    let cause = NvmeCause::ShutdownIncomplete { milliseconds: 500, shutdown_status: 0b01 };
    let shutdown = hardware.last_shutdown().expect("a stop asks for a shutdown");
    assert_eq!(shutdown.map_err(|failure| failure.cause()), Err(Cause::Nvme(cause)));
    assert_eq!(*setup.fake.shutdown_at_disable.lock(), [ShutdownStatus::Processing], "disabled after the wait");
    assert_eq!(*setup.fake.disables.lock(), [true], "disabled while its memory was allocated");
    assert!(setup.platform.free_frames_count() > free, "CSTS.RDY 0 was seen: its memory went back");
    // Stuck as well: it neither shuts down nor stops, so nothing goes back.
    let stuck = setup_with(64, false);
    *stuck.fake.shutdown.lock() = FakeShutdown::NeverReports;
    stuck.fake.stuck.store(true, Ordering::Relaxed);
    let free = stuck.platform.free_frames_count();
    assert!(matches!(stuck.disk.hardware().quiesce_to_stop(), Quiesced::StillRunning(_)));
    assert!(matches!(stuck.disk.hardware().last_shutdown(), Some(Err(_))));
    assert_eq!(stuck.platform.free_frames_count(), free, "nothing went back under a running controller");
}

#[test]
fn a_second_quiesce_after_a_failed_stop_still_says_the_controller_may_run() {
    let setup = setup_with(64, false);
    setup.fake.stuck.store(true, Ordering::Relaxed);
    let free = setup.platform.free_frames_count();
    let hardware = setup.disk.hardware();
    for attempt in 0..2 {
        match hardware.quiesce() {
            Quiesced::StillRunning(failure) => {
                assert!(matches!(failure.cause(), Cause::Nvme(NvmeCause::DidNotStop { .. })), "{failure}")
            }
            Quiesced::Stopped => panic!("quiesce {attempt}: reported stopped, yet CSTS.RDY is still 1"),
        }
        assert_eq!(setup.platform.free_frames_count(), free, "quiesce {attempt}: nothing goes back under it");
    }
    setup.fake.unstick();
    assert!(matches!(hardware.quiesce(), Quiesced::Stopped), "the disable is confirmed now");
    assert!(setup.platform.free_frames_count() > free, "its queues and lists went back once it stopped");
    assert!(matches!(hardware.quiesce(), Quiesced::Stopped), "and it stays stopped");
    hardware.reopen().unwrap();
    let mut target = buffer(&setup, 8);
    setup.disk.read(5, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(5, 8));
}
