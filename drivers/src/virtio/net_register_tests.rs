//! virtio-net through the real register code: `VirtioNet<LegacyTransport<..>>`
//! and `VirtioNet<ModernTransport<..>>` over the register fake's virtio-net
//! personality (`fake/nic.rs`), inside the network layer, on both interfaces
//! (`net_register_tests::legacy::*`, `net_register_tests::modern::*`).
//!
//! The fake's two queues differ in everything a transport could mix up: the
//! receive queue (0) offers 64 entries and is notified at 2 * 4 bytes, the
//! transmit queue (1) 128 entries at 5 * 4 bytes. A transport that selects,
//! sizes, places or notifies the wrong queue fails these tests.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaPlatform, TransferOptions};
use dmakit::net::Nic;

use super::fake::{FakeVirtioNet, QueueOffer};
use super::net::{FEATURE_MAC, HEADER_LEGACY, HEADER_VERSION_1, RECEIVE_QUEUE, TRANSMIT_QUEUE, VirtioNet};
use super::net_tests::Frames;
use super::registers::{FEATURE_ACCESS_PLATFORM, FEATURE_VERSION_1, QUEUE_ALIGNMENT, STATUS_DRIVER_OK};
use super::transport::{DmaPlatforms, Interface, Transport};

on_both_transports!(
    bring_up_reads_the_mac_and_gives_each_queue_its_own_size_and_place,
    frames_of_random_sizes_go_both_ways_byte_exact_through_the_registers,
    frames_go_both_ways_byte_exact_on_a_noncoherent_machine,
    receive_buffers_are_recycled_thousands_of_times_without_a_prepare,
    each_notify_names_the_queue_that_has_news,
    stopping_resets_the_device_while_both_rings_and_the_waiting_buffers_are_allocated,
);

/// Runs the generic scenario `$scenario(platform, &fake, nic)` over the
/// fake's interface, with the concrete transport the kernel builds for it.
macro_rules! with_transport {
    ($scenario:ident, $platform:expr, $fake:expr) => {{
        let (platform, fake): (&'static SimulatedPlatform, &Arc<FakeVirtioNet>) = ($platform, $fake);
        match fake.interface {
            Interface::Legacy => $scenario(platform, fake, start(platform, fake.legacy_transport())),
            Interface::Modern => $scenario(platform, fake, start(platform, fake.modern_transport())),
        }
    }};
}

/// The network layer around the driver over `transport`.
fn start<T: Transport>(platform: &'static SimulatedPlatform, transport: T) -> Nic<VirtioNet<T>> {
    let platforms = DmaPlatforms { physical: platform, function: platform };
    let driver = VirtioNet::new(transport, platforms).expect("bring-up");
    Nic::start(driver, &TransferOptions::default()).expect("the interface starts")
}

fn poll<T: Transport>(nic: &mut Nic<VirtioNet<T>>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    nic.poll(&mut |frame| frames.push(frame.to_vec())).unwrap();
    frames
}

/// Whether `[a, a + a_bytes)` and `[b, b + b_bytes)` overlap.
fn overlap((a, a_bytes): (u64, u64), (b, b_bytes): (u64, u64)) -> bool {
    a < b + b_bytes && b < a + a_bytes
}

fn bring_up_reads_the_mac_and_gives_each_queue_its_own_size_and_place(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(bring_up, platform, &fake);
}

fn bring_up<T: Transport>(platform: &'static SimulatedPlatform, fake: &Arc<FakeVirtioNet>, nic: Nic<VirtioNet<T>>) {
    let interface = fake.interface;
    assert_eq!(nic.mac(), fake.mac, "the MAC, read from the device configuration through the registers");
    let (header, modern) = match interface {
        Interface::Legacy => (HEADER_LEGACY, 0),
        Interface::Modern => (HEADER_VERSION_1, FEATURE_VERSION_1 | FEATURE_ACCESS_PLATFORM),
    };
    assert_eq!(fake.accepted(), FEATURE_MAC | modern, "the MAC, and no offload or mergeable buffers");
    assert_ne!(fake.device_status() & STATUS_DRIVER_OK, 0);
    let receive = fake.ring(RECEIVE_QUEUE).expect("the device has the receive queue");
    let transmit = fake.ring(TRANSMIT_QUEUE).expect("the device has the transmit queue");
    assert_eq!((receive.size, transmit.size), (64, 128), "each queue at the size the device offers for it");
    let shape = nic.shape();
    assert_eq!((shape.header_bytes, shape.receive_depth, shape.transmit_depth), (header, 16, 32));
    for (queue, ring) in [(RECEIVE_QUEUE, receive), (TRANSMIT_QUEUE, transmit)] {
        for part in ring.parts() {
            assert!(platform.is_allocated(part.0), "queue {queue}: the device's addresses are the driver's memory");
        }
        if interface == Interface::Legacy {
            assert!(ring.descriptors.is_multiple_of(QUEUE_ALIGNMENT), "a legacy queue is given by its page");
        }
    }
    for mine in receive.parts() {
        for theirs in transmit.parts() {
            assert!(!overlap(mine, theirs), "the two queues lie apart: {receive:?} {transmit:?}");
        }
    }
    assert_eq!(fake.waiting(), 16, "the device took every receive buffer off queue 0");
    assert_eq!(*fake.notified_queues.lock(), [RECEIVE_QUEUE; 16], "one notify of queue 0 per receive buffer");
    assert_eq!(nic.stats().prepares, 48, "one prepare per buffer");
}

fn frames_of_random_sizes_go_both_ways_byte_exact_through_the_registers(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(frames_both_ways, platform, &fake);
}

fn frames_go_both_ways_byte_exact_on_a_noncoherent_machine(interface: Interface) {
    let platform = SimulatedPlatform::leak_noncoherent(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(frames_both_ways, platform, &fake);
}

/// 400 rounds of one frame in, one frame out, each byte compared on the
/// other side, then a stop.
fn frames_both_ways<T: Transport>(
    platform: &'static SimulatedPlatform,
    fake: &Arc<FakeVirtioNet>,
    mut nic: Nic<VirtioNet<T>>,
) {
    let rounds = 400;
    let mut frames = Frames(0x9e37_79b9_7f4a_7c15);
    let mut sent = Vec::new();
    for round in 0..rounds {
        let incoming = frames.next();
        assert!(fake.inject(&incoming), "round {round}: a receive buffer is posted");
        assert_eq!(poll(&mut nic), [incoming], "round {round}");
        let outgoing = frames.next();
        nic.transmit(&outgoing).unwrap();
        sent.push(outgoing);
    }
    poll(&mut nic);
    assert_eq!(*fake.sent.lock(), sent, "every frame reached the wire byte-exact");
    let stats = nic.stats();
    assert_eq!((stats.packets_received, stats.packets_transmitted), (rounds as u64, rounds as u64));
    nic.stop().unwrap();
    assert_eq!(platform.accounting().stats().prepared_commands, 0);
}

fn receive_buffers_are_recycled_thousands_of_times_without_a_prepare(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(recycled, platform, &fake);
}

fn recycled<T: Transport>(platform: &'static SimulatedPlatform, fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    let prepared = platform.accounting().stats();
    let mut frames = Frames(7);
    let mut received = 0;
    while received < 5000 {
        // Up to all 16 buffers filled before the CPU looks.
        let batch: Vec<Vec<u8>> = (0..1 + received % 16).map(|_| frames.next()).collect();
        batch.iter().for_each(|frame| assert!(fake.inject(frame)));
        assert_eq!(poll(&mut nic), batch);
        received += batch.len();
    }
    let now = platform.accounting().stats();
    assert_eq!(nic.stats().prepares, 48, "the start-up prepares, and none since");
    assert_eq!(
        (now.bounced_transfers + now.direct_transfers, now.prepared_commands),
        (prepared.bounced_transfers + prepared.direct_transfers, prepared.prepared_commands),
        "no prepare on the platform either"
    );
    // 5000 frames through a 64-entry ring: the indices wrapped many times.
    assert_eq!(fake.waiting(), 16, "every buffer went back to the device");
}

fn each_notify_names_the_queue_that_has_news(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(notifies, platform, &fake);
}

/// Every transmit notifies queue 1 and every receive buffer posted again
/// notifies queue 0; on the modern interface each at its own offset.
fn notifies<T: Transport>(_: &'static SimulatedPlatform, fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    fake.notified_queues.lock().clear();
    fake.notify_offsets.lock().clear();
    let mut frames = Frames(3);
    for _ in 0..3 {
        nic.transmit(&frames.next()).unwrap();
    }
    assert_eq!(fake.sent.lock().len(), 3, "the transmit queue was told");
    assert_eq!(*fake.notified_queues.lock(), [TRANSMIT_QUEUE; 3]);
    assert!(fake.inject(&frames.next()));
    assert_eq!(poll(&mut nic).len(), 1);
    assert_eq!(*fake.notified_queues.lock(), [1, 1, 1, 0], "the receive buffer went back on queue 0");
    let expected: &[u16] = match fake.interface {
        Interface::Legacy => &[],
        Interface::Modern => &[20, 20, 20, 8],
    };
    assert_eq!(*fake.notify_offsets.lock(), expected, "queue 1 at 5 * 4 bytes, queue 0 at 2 * 4");
}

fn stopping_resets_the_device_while_both_rings_and_the_waiting_buffers_are_allocated(interface: Interface) {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeVirtioNet::new(platform, interface);
    with_transport!(stopping, platform, &fake);
}

fn stopping<T: Transport>(platform: &'static SimulatedPlatform, fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    let receive = fake.ring(RECEIVE_QUEUE).unwrap();
    let transmit = fake.ring(TRANSMIT_QUEUE).unwrap();
    nic.stop().unwrap();
    let reset = *fake.resets.lock().last().unwrap();
    assert_eq!(reset.queue_address, receive.descriptors, "the device still had queue 0 when it was reset");
    assert!(reset.queue_memory_allocated, "reset while both rings were allocated");
    assert_eq!(reset.chains_forgotten, 16, "the 16 receive buffers it was holding");
    assert!(reset.chain_memory_allocated, "reset before any buffer was freed");
    assert!(!platform.is_allocated(receive.descriptors) && !platform.is_allocated(transmit.descriptors));
    assert_eq!(platform.accounting().stats().prepared_commands, 0, "then every buffer and both rings went back");
    assert!(!fake.inject(&[1]), "the device holds nothing after its reset");
}

#[test]
fn a_modern_device_with_multiplier_zero_tells_the_queues_apart_by_the_value_written() {
    let platform = SimulatedPlatform::leak(1024);
    let mut fake = FakeVirtioNet::new(platform, Interface::Modern);
    Arc::get_mut(&mut fake).unwrap().notify_off_multiplier = 0;
    let mut nic = start(platform, fake.modern_transport());
    let outgoing = [0x17; 64];
    nic.transmit(&outgoing).unwrap();
    assert!(fake.inject(&[0x42; 60]));
    assert_eq!(poll(&mut nic), [[0x42; 60]]);
    assert_eq!(*fake.sent.lock(), [outgoing], "queue 1 was notified, at the same place as queue 0");
    assert!(fake.notify_offsets.lock().iter().all(|&offset| offset == 0));
    assert_eq!(fake.notified_queues.lock()[16..], [1, 0]);
}

#[test]
fn a_modern_driver_lowers_only_the_queue_whose_maximum_is_above_its_limit() {
    let platform = SimulatedPlatform::leak(1024);
    let mut fake = FakeVirtioNet::new(platform, Interface::Modern);
    Arc::get_mut(&mut fake).unwrap().more_queues[0] = QueueOffer { max_size: 1024, notify_off: 9 };
    let mut nic = start(platform, fake.modern_transport());
    let sizes = (fake.ring(RECEIVE_QUEUE).unwrap().size, fake.ring(TRANSMIT_QUEUE).unwrap().size);
    assert_eq!(sizes, (64, 256), "queue 1 written down to the driver's 256, queue 0 left at its 64");
    assert_eq!(nic.shape().transmit_depth, 64);
    let mut frames = Frames(9);
    let sent: Vec<Vec<u8>> = (0..200).map(|_| frames.next()).collect();
    for frame in &sent {
        nic.transmit(frame).unwrap();
        poll(&mut nic);
    }
    assert_eq!(*fake.sent.lock(), sent);
    assert_eq!(fake.notify_offsets.lock().last(), Some(&36), "9 * 4 bytes");
}
