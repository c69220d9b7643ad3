//! What both network test kernels check, on the device their runner attached:
//! the interface starts with every buffer prepared once, and frames go out
//! and come back through buffers that are never prepared again. The frames
//! are ARP requests to QEMU's own virtual gateway (10.0.2.2) on its restricted
//! user-mode network: nothing leaves QEMU.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::net::registry::{self, NetInterface};
use dmakit::{driver, println};
use spin::Once;

/// QEMU's default MAC for the first NIC.
const QEMU_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The guest's and the gateway's addresses on QEMU's user-mode network.
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];
/// Round trips: more than the receive ring holds, so buffers are recycled.
const ROUND_TRIPS: usize = 300;

static ATTACHED: Once<Arc<dyn NetInterface>> = Once::new();

/// The interface the runner's device became.
pub fn interface() -> Arc<dyn NetInterface> {
    ATTACHED
        .call_once(|| {
            driver::attach(&dmakit_drivers::all());
            registry::find("net0").expect("the virtio-net device became net0")
        })
        .clone()
}

/// An ARP request from `mac` for the gateway's address, padded to Ethernet's
/// 60-byte minimum.
fn arp_request(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&GUEST_IP);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&GATEWAY_IP);
    frame.resize(60, 0);
    frame
}

/// Whether `frame` is the gateway's ARP reply to `mac`.
fn is_gateway_reply(frame: &[u8], mac: [u8; 6]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == GATEWAY_IP
        && frame[32..38] == mac
}

/// Sends one request and polls for the reply, for at most two seconds.
fn round_trip(interface: &dyn NetInterface, mac: [u8; 6]) -> bool {
    interface.transmit(&arp_request(mac)).expect("the request went out");
    let deadline = pic::ticks() + 2 * u64::from(pic::TIMER_HZ);
    let mut answered = false;
    while !answered && pic::ticks() < deadline {
        interface.poll(&mut |frame| answered |= is_gateway_reply(frame, mac)).expect("poll");
        core::hint::spin_loop();
    }
    answered
}

pub fn the_interface_starts_with_its_mac_and_every_buffer_prepared_once() {
    let interface = interface();
    assert_eq!(interface.mac(), QEMU_MAC, "the MAC from config space");
    let stats = interface.stats();
    assert!(stats.prepares > 0, "{stats:?}");
    assert_eq!(stats.packets_received + stats.packets_transmitted, 0, "nothing moved yet: {stats:?}");
}

pub fn arp_round_trips_recycle_the_buffers_without_a_fresh_prepare() {
    let interface = interface();
    let mac = interface.mac();
    let prepares = interface.stats().prepares;
    for trip in 0..ROUND_TRIPS {
        assert!(round_trip(&*interface, mac), "round trip {trip}: no ARP reply from the gateway");
    }
    let stats = interface.stats();
    println!("{}: {stats:?}", interface.name());
    assert_eq!(stats.prepares, prepares, "no buffer was prepared again");
    assert!(stats.packets_received >= ROUND_TRIPS as u64, "{stats:?}");
    assert!(stats.packets_transmitted >= ROUND_TRIPS as u64 - 1, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
}
