//! virtio-net's interrupt through the real register code, on both interfaces
//! (`net_interrupt_tests::legacy::*`, `net_interrupt_tests::modern::*`): the
//! register fake raises ISR bit 0 after it uses buffers on a queue unless that
//! queue's available ring says `VIRTQ_AVAIL_F_NO_INTERRUPT` (virtio 1.0,
//! 2.4.7; QEMU honours it without `EVENT_IDX`), and reading ISR (legacy: at
//! 0x13 of the I/O block; modern: the ISR structure) returns and clears it.

use alloc::sync::Arc;

use dmakit::dma::TransferOptions;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::net::{Interrupts, NetworkHardware, Nic};

use super::fake::FakeVirtioNet;
use super::net::VirtioNet;
use super::transport::{DmaPlatforms, Interface, Transport};

on_both_transports!(
    a_started_interface_raises_no_interrupt_while_suppressed,
    a_received_frame_interrupts_once_wanted_and_acknowledging_clears_it,
    a_transmit_completion_interrupts_once_wanted,
    suppressing_again_quiets_both_queues,
);

/// Runs `$scenario(&fake, nic)` on a fresh fake of `$interface`, with the
/// concrete transport the kernel builds for it.
macro_rules! with_transport {
    ($scenario:ident, $interface:expr) => {{
        let platform = SimulatedPlatform::leak(1024);
        let fake = FakeVirtioNet::new(platform, $interface);
        match fake.interface {
            Interface::Legacy => $scenario(&fake, start(platform, fake.legacy_transport())),
            Interface::Modern => $scenario(&fake, start(platform, fake.modern_transport())),
        }
    }};
}

/// The network layer around the driver over `transport`.
fn start<T: Transport>(platform: &'static SimulatedPlatform, transport: T) -> Nic<VirtioNet<T>> {
    let platforms = DmaPlatforms { physical: platform, function: platform };
    let driver = VirtioNet::new(transport, platforms).expect("bring-up");
    Nic::start(driver, &TransferOptions::default()).expect("the interface starts")
}

/// Polls once and returns the frames handed up.
fn poll<T: Transport>(nic: &mut Nic<VirtioNet<T>>) -> usize {
    nic.poll(&mut |_| {}).expect("the interface runs").received
}

fn a_started_interface_raises_no_interrupt_while_suppressed(interface: Interface) {
    with_transport!(suppressed, interface);
}

/// Brought up, a frame in and one out: the device used buffers on both
/// queues, and was asked not to interrupt for either.
fn suppressed<T: Transport>(fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    assert!(!fake.interrupt_pending(), "bring-up raises nothing");
    assert!(fake.inject(&[0x42; 60]));
    assert!(!fake.interrupt_pending(), "a frame received while suppressed raises nothing");
    assert_eq!(poll(&mut nic), 1, "the frame is there for whoever polls");
    nic.transmit(&[0x17; 60]).unwrap();
    assert_eq!(fake.sent.lock().len(), 1);
    assert!(!fake.interrupt_pending(), "a transmit completion while suppressed raises nothing");
    assert!(!nic.hardware().acknowledge_interrupt(), "nothing to acknowledge");
}

fn a_received_frame_interrupts_once_wanted_and_acknowledging_clears_it(interface: Interface) {
    with_transport!(received_interrupts, interface);
}

fn received_interrupts<T: Transport>(fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    nic.set_interrupts(Interrupts::Wanted).unwrap();
    assert!(!fake.interrupt_pending(), "asking for interrupts raises none by itself");
    assert!(fake.inject(&[0x42; 60]));
    assert!(fake.interrupt_pending(), "a frame received raises the interrupt");
    assert!(nic.hardware().acknowledge_interrupt(), "the interrupt was the device's");
    assert!(!fake.interrupt_pending(), "reading ISR lowered it");
    assert!(!nic.hardware().acknowledge_interrupt(), "and it is acknowledged once");
    assert_eq!(poll(&mut nic), 1);
    // Posting the buffer again is no use of a buffer: nothing raised.
    assert!(!fake.interrupt_pending(), "a poll that only posts buffers raises nothing");
    for round in 0..20 {
        assert!(fake.inject(&[round; 100]));
        assert!(nic.hardware().acknowledge_interrupt(), "round {round}");
        assert_eq!(poll(&mut nic), 1, "round {round}");
    }
}

fn a_transmit_completion_interrupts_once_wanted(interface: Interface) {
    with_transport!(transmit_interrupts, interface);
}

fn transmit_interrupts<T: Transport>(fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    nic.set_interrupts(Interrupts::Wanted).unwrap();
    nic.transmit(&[0x17; 60]).unwrap();
    assert_eq!(fake.sent.lock().len(), 1, "the fake sends at the notify");
    assert!(fake.interrupt_pending(), "the transmit buffer given back raises the interrupt");
    assert!(nic.hardware().acknowledge_interrupt());
    assert!(!nic.hardware().acknowledge_interrupt());
    assert_eq!(nic.poll(&mut |_| {}).unwrap().transmitted, 1);
}

fn suppressing_again_quiets_both_queues(interface: Interface) {
    with_transport!(suppressed_again, interface);
}

fn suppressed_again<T: Transport>(fake: &Arc<FakeVirtioNet>, mut nic: Nic<VirtioNet<T>>) {
    nic.set_interrupts(Interrupts::Wanted).unwrap();
    nic.set_interrupts(Interrupts::Suppressed).unwrap();
    assert!(fake.inject(&[0x42; 60]));
    nic.transmit(&[0x17; 60]).unwrap();
    assert!(!fake.interrupt_pending(), "neither queue interrupts once suppressed again");
    assert!(!nic.hardware().acknowledge_interrupt());
    let polled = nic.poll(&mut |_| {}).unwrap();
    assert_eq!((polled.received, polled.transmitted), (1, 1));
}
