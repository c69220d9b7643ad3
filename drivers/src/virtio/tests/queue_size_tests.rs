//! A legacy device's queue size is believed only when the ring arithmetic
//! holds for it: a power of two up to 32768.

use super::*;

#[test]
fn a_legacy_queue_size_that_is_no_power_of_two_or_too_large_is_refused_by_name() {
    let platform = SimulatedPlatform::leak(256);
    // (0 is refused before, as too small for a request: QueueTooSmall.)
    for size in [3, 100, 255, 65535] {
        let fake = adjusted_fake(platform, Interface::Legacy, |fake| fake.max_queue_size = size);
        let Err(failure) = start(&fake, platforms(platform), &WAITER) else { panic!("size {size} was taken") };
        let expected = VirtioCause::QueueSizeInvalid { size, max: 32768 };
        assert_eq!(failure.cause(), Cause::Virtio(expected), "size {size}: {failure}");
    }
    // The largest the interface allows, and a small one, are taken.
    for size in [4, 32768] {
        let fake = adjusted_fake(platform, Interface::Legacy, |fake| fake.max_queue_size = size);
        let disk = start(&fake, platforms(platform), &WAITER).unwrap();
        assert_eq!(disk.hardware().queue_size(), size);
    }
}
