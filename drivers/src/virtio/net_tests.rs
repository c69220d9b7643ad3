//! virtio-net inside the network layer (`dmakit::net::Nic`), against the fake
//! device of `fake_net.rs` on a simulated machine, on both interfaces
//! (`net_tests::legacy::*`, `net_tests::modern::*`): what a device that lies
//! does, and bouncing. Frames both ways, recycling and stopping go through the
//! real registers in `net_register_tests.rs`.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, DmaPlatform, Specification, TransferOptions, VirtioCause};
use dmakit::net::{Nic, NicState};

use super::fake_net::{FakeNet, FakeNetTransport, Lie, Notifications};
use super::net::{FEATURE_MAC, HEADER_LEGACY, HEADER_VERSION_1, MAX_FRAME, VirtioNet};
use super::registers::{FEATURE_ACCESS_PLATFORM, FEATURE_VERSION_1, STATUS_DRIVER_OK};
use super::transport::{DmaPlatforms, Interface};

on_both_transports!(
    a_used_index_ahead_of_the_buffers_posted_stops_the_device_before_any_buffer_goes_back,
    bring_up_takes_the_mac_and_no_offloads,
    bounced_buffers_move_exactly_the_frames_bytes_through_synchronize,
    a_length_above_the_chain_drops_the_frame_and_the_ring_goes_on,
    an_id_that_heads_no_chain_stops_the_device_before_any_buffer_goes_back,
    a_chain_given_back_twice_stops_the_device_and_no_buffer_goes_back_twice,
    no_notify_is_sent_while_the_device_says_it_needs_none,
);

/// The interface as the kernel will build it: the network layer around the driver.
type NetInterface = Nic<VirtioNet<FakeNetTransport>>;

/// A 64-entry queue each way: 16 buffers each.
fn start(
    platform: &'static SimulatedPlatform,
    interface: Interface,
    options: &TransferOptions,
) -> (Arc<FakeNet>, NetInterface) {
    let fake = FakeNet::new(platform, interface, 64);
    let platforms = DmaPlatforms { physical: platform, function: platform };
    let driver = VirtioNet::new(FakeNetTransport(fake.clone()), platforms).unwrap();
    (fake, Nic::start(driver, options).unwrap())
}

/// Deterministic sizes and bytes (xorshift); `net_register_tests.rs` uses it too.
pub(super) struct Frames(pub(super) u64);

impl Frames {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A frame of 1 to `MAX_FRAME` bytes.
    pub(super) fn next(&mut self) -> Vec<u8> {
        let length = 1 + (self.next_u64() % MAX_FRAME) as usize;
        let seed = self.next_u64();
        (0..length).map(|i| (seed >> (i % 7 * 8)) as u8 ^ i as u8).collect()
    }
}

fn poll(nic: &mut NetInterface) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    nic.poll(&mut |frame| frames.push(frame.to_vec())).unwrap();
    frames
}

fn bring_up_takes_the_mac_and_no_offloads(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, nic) = start(platform, interface, &TransferOptions::default());
    assert_eq!(nic.mac(), fake.mac);
    let (header, modern) = match interface {
        Interface::Legacy => (HEADER_LEGACY, 0),
        Interface::Modern => (HEADER_VERSION_1, FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM),
    };
    assert_eq!(fake.accepted(), FEATURE_MAC | modern, "the MAC, and no offload or mergeable buffers");
    let shape = nic.shape();
    assert_eq!((shape.header_bytes, shape.receive_depth, shape.transmit_depth), (header, 16, 16));
    assert_ne!(fake.device_status() & STATUS_DRIVER_OK, 0);
    assert_eq!(nic.stats().prepares, 32, "one prepare per buffer");
}

fn bounced_buffers_move_exactly_the_frames_bytes_through_synchronize(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let restrict = TransferOptions { restrict: Some(Specification::UNLIMITED_32), ..TransferOptions::default() };
    let (fake, mut nic) = start(platform, interface, &restrict);
    let before = platform.accounting().stats();
    assert_eq!(before.bounced_transfers, 32, "the buffers lie above 4 GiB: every one bounces");
    let header = nic.shape().header_bytes;
    let mut frames = Frames(11);
    let mut expected = 0;
    for round in 0..2000 {
        let incoming = frames.next();
        assert!(fake.inject(&incoming));
        assert_eq!(poll(&mut nic), core::slice::from_ref(&incoming), "round {round}");
        let outgoing = frames.next();
        nic.transmit(&outgoing).unwrap();
        expected += 2 * header + (incoming.len() + outgoing.len()) as u64;
    }
    let stats = nic.stats();
    assert_eq!(stats.bytes_copied_by_synchronize, expected, "each frame and its header copied once, nothing more");
    let after = platform.accounting().stats();
    assert_eq!(
        after.bytes_to_bounce + after.bytes_from_bounce - before.bytes_to_bounce - before.bytes_from_bounce,
        expected
    );
    assert_eq!(after.bounced_transfers, before.bounced_transfers, "no prepare since the start");
    assert_eq!(stats.prepares, 32);
}

fn a_length_above_the_chain_drops_the_frame_and_the_ring_goes_on(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, mut nic) = start(platform, interface, &TransferOptions::default());
    *fake.lie.lock() = Lie::LengthAboveChain;
    assert!(fake.inject(&[1, 2, 3]));
    assert!(poll(&mut nic).is_empty(), "the frame is dropped");
    let buffer = nic.shape().buffer_bytes();
    let cause = VirtioCause::UsedLengthAboveChain { queue: 0, length: buffer as u32 + 100, writable: buffer };
    assert_eq!(nic.stats().last_drop.map(|failure| failure.cause()), Some(Cause::Virtio(cause)));
    assert_eq!(nic.stats().dropped, 1);
    *fake.lie.lock() = Lie::Honest;
    for round in 0..40u8 {
        assert!(fake.inject(&[round; 60]), "round {round}: the buffer was posted again");
        assert_eq!(poll(&mut nic), [[round; 60]]);
    }
}

fn an_id_that_heads_no_chain_stops_the_device_before_any_buffer_goes_back(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, mut nic) = start(platform, interface, &TransferOptions::default());
    *fake.lie.lock() = Lie::IdNotAHead;
    assert!(fake.inject(&[9; 100]));
    let failure = nic.poll(&mut |_| panic!("no frame from a broken ring")).unwrap_err();
    assert_eq!(failure.cause(), Cause::Virtio(VirtioCause::UsedIdNotAHead { queue: 0, id: 1 }));
    assert_eq!(nic.state(), NicState::Stopped);
    assert_eq!(fake.resets.lock().last(), Some(&true), "reset while every buffer was still allocated");
    assert_eq!(platform.accounting().stats().prepared_commands, 0, "then every buffer completed");
    assert!(!fake.inject(&[1]), "the device holds nothing after its reset");
}

/// Stale elements naming buffers the device still holds, then the frame's
/// twice: the used index runs ahead of the buffers posted, and nothing of
/// that ring is believed (no buffer the device holds comes back early).
fn a_used_index_ahead_of_the_buffers_posted_stops_the_device_before_any_buffer_goes_back(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, mut nic) = start(platform, interface, &TransferOptions::default());
    let depth = nic.shape().receive_depth as u16;
    *fake.lie.lock() = Lie::StaleReplay;
    assert!(fake.inject(&[7; 80]));
    let mut frames = Vec::new();
    let failure = nic.poll(&mut |frame| frames.push(frame.to_vec())).unwrap_err();
    let ahead = VirtioCause::UsedIndexAhead { queue: 0, index: depth + 1, last_seen: 0, in_flight: depth };
    assert_eq!(failure.cause(), Cause::Virtio(ahead));
    assert!(frames.is_empty(), "no element of that ring is believed");
    assert_eq!(nic.stats().dropped, 0, "no buffer the device held came back as a dropped frame");
    assert_eq!(nic.state(), NicState::Stopped);
    assert_eq!(fake.resets.lock().last(), Some(&true), "reset while every buffer was still allocated");
    assert_eq!(platform.accounting().stats().prepared_commands, 0, "then every buffer completed");
    assert!(platform.accounting().misuse_log().is_empty(), "no transfer ended twice or leaked");
}

fn a_chain_given_back_twice_stops_the_device_and_no_buffer_goes_back_twice(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, mut nic) = start(platform, interface, &TransferOptions::default());
    *fake.lie.lock() = Lie::IdTwice;
    assert!(fake.inject(&[5; 200]));
    let mut frames = Vec::new();
    let failure = nic.poll(&mut |frame| frames.push(frame.to_vec())).unwrap_err();
    assert_eq!(frames, [[5; 200]], "the first element was true");
    assert_eq!(failure.cause(), Cause::Virtio(VirtioCause::UsedIdNotInFlight { queue: 0, id: 0 }));
    assert_eq!(nic.state(), NicState::Stopped);
    assert_eq!(platform.accounting().stats().prepared_commands, 0);
    assert!(platform.accounting().misuse_log().is_empty(), "no transfer ended twice or leaked");
}

/// `VIRTQ_USED_F_NO_NOTIFY`: QEMU sets it while it still has receive buffers
/// and while its transmit bottom half is pending. Each notify is a register
/// write the emulator must serve under its big lock, so a driver that ignores
/// the flag pays for one per frame for nothing.
fn no_notify_is_sent_while_the_device_says_it_needs_none(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let (fake, mut nic) = start(platform, interface, &TransferOptions::default());
    let mut frames = Frames(5);
    fake.set_notifications(Notifications::NotNeeded);
    let before = fake.notifies.each_ref().map(|count| count.load(core::sync::atomic::Ordering::Relaxed));
    let outgoing: Vec<Vec<u8>> = (0..3).map(|_| frames.next()).collect();
    for frame in &outgoing {
        nic.transmit(frame).unwrap();
    }
    for _ in 0..3 {
        let incoming = frames.next();
        assert!(fake.inject(&incoming));
        assert_eq!(poll(&mut nic), core::slice::from_ref(&incoming), "the buffer went back to the device");
    }
    assert_eq!(fake.needless_notifies.load(core::sync::atomic::Ordering::Relaxed), 0, "notified anyway");
    assert!(fake.sent.lock().is_empty(), "the device has not looked yet");
    fake.run_transmit();
    assert_eq!(*fake.sent.lock(), outgoing, "the device found every frame by itself");
    fake.set_notifications(Notifications::Wanted);
    let last = frames.next();
    nic.transmit(&last).unwrap();
    let after = fake.notifies.each_ref().map(|count| count.load(core::sync::atomic::Ordering::Relaxed));
    assert_eq!(after[1], before[1] + 1, "a device that wants notifications gets one");
    assert_eq!(fake.sent.lock().last(), Some(&last));
}
