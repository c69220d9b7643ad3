//! The services when the world misbehaves, on the bench of `tests.rs`: a
//! sender faster than the stack, a transmit ring that stays full, clients
//! that vanish or never close.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::tests::{Bench, SERVER, report};
use super::*;

/// A UDP socket on the client at `port`, with room for `datagrams` each way.
fn udp_client(bench: &mut Bench, port: u16, datagrams: usize) -> SocketHandle {
    let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; datagrams], vec![0; datagrams * 1500]);
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(port).unwrap();
    bench.sockets.add(socket)
}

/// Every datagram the client's socket holds.
fn datagrams_received(bench: &mut Bench, handle: SocketHandle) -> Vec<Vec<u8>> {
    let socket = bench.sockets.get_mut::<udp::Socket>(handle);
    let mut received = Vec::new();
    while let Ok((bytes, _)) = socket.recv() {
        received.push(bytes.to_vec());
    }
    received
}

/// Runs both stacks for `seconds` of the clock, a second at a time.
fn wait(bench: &mut Bench, seconds: usize) {
    for _ in 0..seconds {
        bench.now += 1000;
        bench.settle();
    }
}

#[test]
fn one_poll_takes_a_bounded_number_of_frames_from_an_interface_that_never_runs_dry() {
    let mut bench = Bench::new();
    let handle = udp_client(&mut bench, 4000, 64);
    let server = IpEndpoint::new(SERVER, ECHO_PORT);
    // One echo first: both stacks know each other's Ethernet address.
    bench.sockets.get_mut::<udp::Socket>(handle).send_slice(b"hello", server).unwrap();
    bench.settle();
    assert_eq!(datagrams_received(&mut bench, handle), [b"hello"]);
    // The client's next datagram, as it goes on the wire, is what floods.
    bench.sockets.get_mut::<udp::Socket>(handle).send_slice(b"flood", server).unwrap();
    bench.client.poll(smoltcp::time::Instant::from_millis(bench.now), &mut bench.device, &mut bench.sockets);
    let frame = bench.device.to_server.lock().pop_front().expect("the datagram on the wire");
    // 16 frames at each poll of the interface, for the next 1000 polls.
    *bench.wire.flood.lock() = Some((frame, 16, 1000));
    *bench.wire.polls.lock() = 0;
    bench.now += 1;
    let moved = bench.service.poll(bench.now, &report);
    let polls = *bench.wire.polls.lock();
    assert!(polls <= 4, "one poll of the service polled the interface {polls} times: the flood kept it inside");
    assert!(moved, "it moved something, so the caller polls again (after its own work)");
    assert!(!bench.device.to_client.lock().is_empty(), "the service echoed during the flood");
}

#[test]
fn datagrams_wait_while_the_send_buffer_is_full_and_are_all_echoed_later() {
    let mut bench = Bench::new();
    let handle = udp_client(&mut bench, 4001, 128);
    let server = IpEndpoint::new(SERVER, ECHO_PORT);
    bench.sockets.get_mut::<udp::Socket>(handle).send_slice(b"hello", server).unwrap();
    bench.settle();
    assert_eq!(datagrams_received(&mut bench, handle).len(), 1);
    // The transmit ring stays full: echoes pile up in the service's send
    // buffer (64 datagrams) until it is full.
    *bench.wire.ring_full.lock() = true;
    let sent: Vec<Vec<u8>> = (0..80u8).map(|seed| vec![seed; 1000]).collect();
    for batch in sent.chunks(40) {
        for datagram in batch {
            bench.sockets.get_mut::<udp::Socket>(handle).send_slice(datagram, server).unwrap();
        }
        bench.settle();
    }
    *bench.wire.ring_full.lock() = false;
    wait(&mut bench, 2);
    let echoed = datagrams_received(&mut bench, handle);
    let counts = bench.service.stats().counts;
    assert_eq!(
        echoed.len(),
        80,
        "{} echoed, {} not echoed: datagrams received while the send buffer was full were lost",
        counts.udp_echoed - 1,
        counts.udp_not_echoed
    );
    assert_eq!(echoed, sent);
}
