//! The stack and its services against a second smoltcp stack, the client,
//! joined by a wire of frame queues: what the client sends is what the
//! interface hands up, what the interface is given to transmit the client
//! receives.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use spin::Mutex;

use super::*;
use crate::dma::{Cause, IoFailure, IoReturn, NetCause};
use crate::net::registry::NetInterface;
use crate::net::{Interrupts, NicStats, Polled};

type Frames = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// The interface under the service: frames in from the client, out to it.
pub(super) struct WireInterface {
    to_server: Frames,
    to_client: Frames,
    /// Transmits refused from now on, as by a full ring.
    pub(super) refuse: Mutex<usize>,
    /// While set, every transmit buffer is the device's: no free one, and a
    /// transmit is refused.
    pub(super) ring_full: Mutex<bool>,
    /// A frame every poll hands up this many times more, as from a sender
    /// faster than the stack, and for how many more polls.
    pub(super) flood: Mutex<Option<(Vec<u8>, usize, usize)>>,
    /// Polls of the interface.
    pub(super) polls: Mutex<usize>,
}

impl NetInterface for WireInterface {
    fn name(&self) -> &str {
        "wire0"
    }
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 0x15]
    }
    fn poll(&self, deliver: &mut dyn FnMut(&[u8])) -> Result<Polled, IoFailure> {
        let mut polled = Polled::default();
        *self.polls.lock() += 1;
        if let Some((frame, per_poll, polls_left)) = self.flood.lock().as_mut()
            && *polls_left > 0
        {
            *polls_left -= 1;
            for _ in 0..*per_poll {
                deliver(frame);
                polled.received += 1;
            }
        }
        while let Some(frame) = self.to_server.lock().pop_front() {
            deliver(&frame);
            polled.received += 1;
        }
        Ok(polled)
    }
    fn transmit(&self, frame: &[u8]) -> Result<(), IoFailure> {
        let mut refuse = self.refuse.lock();
        if *self.ring_full.lock() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Net(NetCause::TransmitRingFull { depth: 16 })));
        }
        if *refuse > 0 {
            *refuse -= 1;
            return Err(IoFailure::new(IoReturn::Busy, Cause::Net(NetCause::TransmitRingFull { depth: 1 })));
        }
        self.to_client.lock().push_back(frame.to_vec());
        Ok(())
    }
    fn transmit_free(&self) -> usize {
        match *self.ring_full.lock() {
            true => 0,
            false => 16,
        }
    }
    fn stats(&self) -> NicStats {
        NicStats::default()
    }
    fn interrupt(&self) {}
    fn interrupts(&self) -> (u64, Interrupts) {
        (0, Interrupts::Suppressed)
    }
    fn set_interrupts(&self, _interrupts: Interrupts) -> Result<(), IoFailure> {
        Ok(())
    }
}

/// The client's end of the wire.
pub(super) struct ClientDevice {
    pub(super) to_server: Frames,
    pub(super) to_client: Frames,
}

pub(super) struct ClientRx(Vec<u8>);
pub(super) struct ClientTx(Frames);

impl phy::RxToken for ClientRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for ClientTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, length: usize, f: F) -> R {
        let mut frame = vec![0; length];
        let result = f(&mut frame);
        self.0.lock().push_back(frame);
        result
    }
}

impl phy::Device for ClientDevice {
    type RxToken<'a> = ClientRx;
    type TxToken<'a> = ClientTx;
    fn receive(&mut self, _: Instant) -> Option<(ClientRx, ClientTx)> {
        let frame = self.to_client.lock().pop_front()?;
        Some((ClientRx(frame), ClientTx(self.to_server.clone())))
    }
    fn transmit(&mut self, _: Instant) -> Option<ClientTx> {
        Some(ClientTx(self.to_server.clone()))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = 1514;
        capabilities
    }
}

/// A service and a client at 10.0.2.2 on one wire, and a clock.
pub(super) struct Bench {
    pub(super) service: NetService,
    pub(super) wire: Arc<WireInterface>,
    pub(super) client: Interface,
    pub(super) device: ClientDevice,
    pub(super) sockets: SocketSet<'static>,
    pub(super) now: i64,
    /// While set, the wire loses every frame both ways (the client's host
    /// gone, a cable pulled).
    pub(super) unplugged: bool,
    /// What port 11 sends.
    pub(super) report: fn() -> String,
}

pub(super) const SERVER: IpAddress = IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 15));

pub(super) fn report() -> String {
    String::from("the report\nof port 11\n")
}

impl Bench {
    pub(super) fn new() -> Bench {
        let to_server: Frames = Arc::default();
        let to_client: Frames = Arc::default();
        let wire = Arc::new(WireInterface {
            to_server: to_server.clone(),
            to_client: to_client.clone(),
            refuse: Mutex::new(0),
            ring_full: Mutex::new(false),
            flood: Mutex::new(None),
            polls: Mutex::new(0),
        });
        let service = NetService::new(wire.clone(), Address::QEMU_USER, 0);
        let mut device = ClientDevice { to_server, to_client };
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 2])));
        let mut client = Interface::new(config, &mut device, Instant::from_millis(0));
        client.update_ip_addrs(|addresses| {
            addresses.push(IpCidr::new(IpAddress::v4(10, 0, 2, 2), 24)).unwrap();
        });
        Bench { service, wire, client, device, sockets: SocketSet::new(Vec::new()), now: 0, unplugged: false, report }
    }

    /// Both stacks run until nothing moves, the clock a millisecond further each round.
    pub(super) fn settle(&mut self) {
        for _ in 0..10_000 {
            self.now += 1;
            let client = self.client.poll(Instant::from_millis(self.now), &mut self.device, &mut self.sockets);
            let server = self.service.poll(self.now, &self.report);
            if self.unplugged {
                self.device.to_server.lock().clear();
                self.device.to_client.lock().clear();
            }
            let quiet = self.device.to_server.lock().is_empty() && self.device.to_client.lock().is_empty();
            if client == smoltcp::iface::PollResult::None && !server && quiet {
                return;
            }
        }
        panic!("the stacks never settled");
    }
}

pub(super) fn datagram(seed: u64) -> Vec<u8> {
    let length = 1 + (seed.wrapping_mul(2_654_435_761) % 1472) as usize;
    (0..length).map(|i| (seed as usize * 31 + i * 7) as u8).collect()
}

#[test]
fn datagrams_to_port_7_come_back_byte_for_byte() {
    let mut bench = Bench::new();
    let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 16 * 1024]);
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(4000).unwrap();
    let handle = bench.sockets.add(socket);
    let server = IpEndpoint::new(SERVER, ECHO_PORT);
    for round in 0..300u64 {
        let sent = datagram(round);
        bench.sockets.get_mut::<udp::Socket>(handle).send_slice(&sent, server).unwrap();
        bench.settle();
        let socket = bench.sockets.get_mut::<udp::Socket>(handle);
        let mut echoed = vec![0; 2048];
        let (length, from) = socket.recv_slice(&mut echoed).expect("an echo");
        assert_eq!(&echoed[..length], &sent[..], "round {round}");
        assert_eq!(from.endpoint, server);
        assert!(!socket.can_recv(), "one echo per datagram");
    }
    assert_eq!(bench.service.stats().counts.udp_echoed, 300);
}

/// Sends `total` bytes through the TCP echo and returns what came back.
pub(super) fn tcp_round_trip(bench: &mut Bench, total: usize) -> (Vec<u8>, Vec<u8>) {
    let socket =
        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 32 * 1024]), tcp::SocketBuffer::new(vec![0; 32 * 1024]));
    let handle = bench.sockets.add(socket);
    let context = bench.client.context();
    bench.sockets.get_mut::<tcp::Socket>(handle).connect(context, (SERVER, ECHO_PORT), 49152).unwrap();
    let stream: Vec<u8> = (0..total).map(|i| (i * 131 + i / 977) as u8).collect();
    let (mut sent, mut echoed) = (0, Vec::new());
    for _ in 0..20_000 {
        bench.settle();
        let socket = bench.sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_send() && sent < total {
            sent += socket.send_slice(&stream[sent..]).unwrap();
            if sent == total {
                socket.close();
            }
        }
        while socket.can_recv() {
            socket.recv(|bytes| (bytes.len(), echoed.extend_from_slice(bytes))).unwrap();
        }
        if echoed.len() == total && !socket.is_open() {
            break;
        }
        bench.now += 50;
    }
    (stream, echoed)
}

#[test]
fn a_stream_to_port_7_comes_back_byte_for_byte_and_the_server_closes() {
    let mut bench = Bench::new();
    let (stream, echoed) = tcp_round_trip(&mut bench, 300_000);
    assert!(echoed == stream, "{} bytes back of {}", echoed.len(), stream.len());
    let counts = bench.service.stats().counts;
    assert_eq!((counts.tcp_connections, counts.tcp_echoed_bytes), (1, 300_000));
}

#[test]
fn frames_the_interface_refuses_are_lost_and_tcp_sends_them_again() {
    let mut bench = Bench::new();
    *bench.wire.refuse.lock() = 3;
    let (stream, echoed) = tcp_round_trip(&mut bench, 100_000);
    assert!(echoed == stream, "{} bytes back of {}", echoed.len(), stream.len());
    let stats = bench.service.stats();
    assert_eq!(stats.transmit_failures, 3);
    assert_eq!(stats.last_failure.map(|failure| failure.code()), Some(IoReturn::Busy));
}

#[test]
fn port_11_sends_the_report_and_closes() {
    let mut bench = Bench::new();
    let socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
    let handle = bench.sockets.add(socket);
    let context = bench.client.context();
    bench.sockets.get_mut::<tcp::Socket>(handle).connect(context, (SERVER, STATS_PORT), 49153).unwrap();
    let text = read_to_close(&mut bench, handle);
    assert_eq!(String::from_utf8(text).unwrap(), report());
    assert!(!bench.sockets.get_mut::<tcp::Socket>(handle).may_recv(), "the server closed");
    assert_eq!(bench.service.stats().counts.reports, 1);
}

/// What the connection received until the server closed it (within 5 s).
pub(super) fn read_to_close(bench: &mut Bench, handle: SocketHandle) -> Vec<u8> {
    let mut text = Vec::new();
    for _ in 0..100 {
        bench.settle();
        let socket = bench.sockets.get_mut::<tcp::Socket>(handle);
        while socket.can_recv() {
            socket.recv(|bytes| (bytes.len(), text.extend_from_slice(bytes))).unwrap();
        }
        if !socket.may_recv() {
            break;
        }
        bench.now += 50;
    }
    text
}
