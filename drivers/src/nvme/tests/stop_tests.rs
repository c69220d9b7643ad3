//! Stopping an NVMe controller: a controller that did not confirm its disable
//! is reported as still running until a later disable is confirmed, and only
//! then does what it was given go back.

use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, HardwareQueue, Quiesced};
use dmakit::dma::{Cause, NvmeCause};

use super::{buffer, expected, setup_with};

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
