//! The services when the world misbehaves, on the bench of `tests.rs`: a
//! sender faster than the stack, a transmit ring that stays full, clients
//! that vanish or never close.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpEndpoint;

use super::tests::{Bench, SERVER, read_to_close, report};
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

/// A TCP connection from the client's `local_port` to the server's `port`.
fn connect(bench: &mut Bench, port: u16, local_port: u16) -> SocketHandle {
    let socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 8192]), tcp::SocketBuffer::new(vec![0; 8192]));
    let handle = bench.sockets.add(socket);
    let context = bench.client.context();
    bench.sockets.get_mut::<tcp::Socket>(handle).connect(context, (SERVER, port), local_port).unwrap();
    handle
}

/// Runs both stacks for `seconds` of the clock, a second at a time.
fn wait(bench: &mut Bench, seconds: usize) {
    for _ in 0..seconds {
        bench.now += 1000;
        bench.settle();
    }
}

/// Whether `bytes` sent on the connection come back (within 5 s).
fn echoes(bench: &mut Bench, handle: SocketHandle, bytes: &[u8]) -> bool {
    bench.settle();
    let socket = bench.sockets.get_mut::<tcp::Socket>(handle);
    if !socket.may_send() || socket.send_slice(bytes) != Ok(bytes.len()) {
        return false;
    }
    let mut back = Vec::new();
    for _ in 0..100 {
        bench.now += 50;
        bench.settle();
        let socket = bench.sockets.get_mut::<tcp::Socket>(handle);
        while socket.can_recv() {
            socket.recv(|received| (received.len(), back.extend_from_slice(received))).unwrap();
        }
        if back.len() >= bytes.len() {
            break;
        }
    }
    back == bytes
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

#[test]
fn a_report_client_that_never_closes_does_not_keep_port_11_for_ever() {
    let mut bench = Bench::new();
    let first = connect(&mut bench, STATS_PORT, 50000);
    assert_eq!(String::from_utf8(read_to_close(&mut bench, first)).unwrap(), report());
    // The client has the report and the server's FIN, and never closes its side.
    assert!(bench.sockets.get_mut::<tcp::Socket>(first).may_send(), "the client's side is still open");
    wait(&mut bench, 60);
    let second = connect(&mut bench, STATS_PORT, 50001);
    let text = read_to_close(&mut bench, second);
    assert_eq!(String::from_utf8(text).unwrap(), report(), "a minute later, port 11 serves the next client");
}

#[test]
fn echo_connections_whose_client_vanished_are_given_up() {
    let mut bench = Bench::new();
    let vanishing: Vec<SocketHandle> = (0..2).map(|at| connect(&mut bench, ECHO_PORT, 50010 + at)).collect();
    for &handle in &vanishing {
        assert!(echoes(&mut bench, handle, b"still here"));
    }
    // The client's host goes away without a word: no FIN, no RST.
    bench.unplugged = true;
    for handle in vanishing {
        bench.sockets.remove(handle);
    }
    wait(&mut bench, 300);
    bench.unplugged = false;
    let next = connect(&mut bench, ECHO_PORT, 50020);
    assert!(echoes(&mut bench, next, b"a new client"), "five minutes later, port 7 serves a new client");
}

#[test]
fn an_idle_echo_connection_whose_client_answers_stays_open() {
    let mut bench = Bench::new();
    let handle = connect(&mut bench, ECHO_PORT, 50030);
    assert!(echoes(&mut bench, handle, b"before"));
    wait(&mut bench, 600);
    assert!(echoes(&mut bench, handle, b"ten minutes later"), "an idle but answering client keeps its connection");
}

#[test]
fn the_report_connection_acknowledges_its_clients_close_before_it_listens_again() {
    let mut bench = Bench::new();
    let client = connect(&mut bench, STATS_PORT, 50040);
    assert_eq!(String::from_utf8(read_to_close(&mut bench, client)).unwrap(), report());
    bench.sockets.get_mut::<tcp::Socket>(client).close();
    // 100 ms: well inside the client's first retransmission of its FIN.
    for _ in 0..10 {
        bench.now += 10;
        bench.settle();
    }
    let state = bench.sockets.get_mut::<tcp::Socket>(client).state();
    assert_eq!(state, tcp::State::Closed, "the server acknowledged the client's FIN (a LAST-ACK client was not)");
}

/// A report of 100 000 bytes: 24 times the report socket's send buffer.
fn long_report() -> String {
    (0..100_000).map(|at| char::from(b'a' + (at % 23) as u8)).collect()
}

#[test]
fn a_report_longer_than_the_send_buffer_arrives_whole() {
    let mut bench = Bench::new();
    bench.report = long_report;
    let client = connect(&mut bench, STATS_PORT, 50050);
    let mut text = Vec::new();
    for _ in 0..1000 {
        bench.settle();
        let socket = bench.sockets.get_mut::<tcp::Socket>(client);
        while socket.can_recv() {
            socket.recv(|bytes| (bytes.len(), text.extend_from_slice(bytes))).unwrap();
        }
        if !socket.may_recv() {
            break;
        }
        bench.now += 50;
    }
    assert!(text == long_report().into_bytes(), "{} bytes of 100000", text.len());
    assert_eq!(bench.service.stats().counts.reports, 1, "written once, sent in pieces");
}

#[test]
fn a_handshake_the_client_resets_does_not_hide_the_next_connection_from_the_count() {
    let mut bench = Bench::new();
    // One echo connection first, so that both stacks know each other's
    // Ethernet address and the next SYN goes out at once.
    let first = connect(&mut bench, ECHO_PORT, 50060);
    assert!(echoes(&mut bench, first, b"one"));
    let reset = connect(&mut bench, ECHO_PORT, 50061);
    let now = smoltcp::time::Instant::from_millis(bench.now);
    bench.client.poll(now, &mut bench.device, &mut bench.sockets);
    bench.now += 1;
    bench.service.poll(bench.now, &report);
    // The server is in SYN-RECEIVED; the client gives up with an RST, which
    // puts the server's socket back to LISTEN.
    bench.sockets.get_mut::<tcp::Socket>(reset).abort();
    bench.settle();
    let counted = bench.service.stats().counts.tcp_connections;
    let next = connect(&mut bench, ECHO_PORT, 50062);
    assert!(echoes(&mut bench, next, b"three"));
    assert_eq!(bench.service.stats().counts.tcp_connections, counted + 1, "the next connection is counted");
}
