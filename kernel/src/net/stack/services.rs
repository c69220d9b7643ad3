//! The three services: a UDP echo and a TCP echo on port 7 (RFC 862), and a
//! report on TCP port 11 (port 11 was `systat`, "active users", in the old
//! list of well-known ports: a report of what the system is doing).

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Duration;

/// The echo port, UDP and TCP.
pub const ECHO_PORT: u16 = 7;
/// The report's TCP port.
pub const STATS_PORT: u16 = 11;
/// TCP echo connections served at once (a new one is accepted while an old
/// one closes).
const TCP_ECHO_SOCKETS: usize = 2;
/// Bytes of each TCP socket's receive and transmit buffer: 64 KiB, the
/// largest window without window scaling.
const TCP_BUFFER: usize = 64 * 1024;
/// How long the report's connection waits for a word from its client: once
/// the report is sent and acknowledged, a client that never closes its side
/// would otherwise keep the one report socket in FIN-WAIT-2 for ever.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle echo connection asks its client whether it is still there this
/// often (a keep-alive), and is given up when the client has said nothing
/// for `ECHO_TIMEOUT`: a client whose host went away without a FIN or an RST
/// would otherwise hold one of the echo sockets for ever.
const ECHO_KEEP_ALIVE: Duration = Duration::from_secs(30);
const ECHO_TIMEOUT: Duration = Duration::from_secs(120);
/// Datagrams the UDP socket keeps each way, and their bytes.
const UDP_DATAGRAMS: usize = 64;
const UDP_BYTES: usize = UDP_DATAGRAMS * 1500;

/// What the services did since they started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// Datagrams echoed.
    pub udp_echoed: u64,
    /// Datagrams that could not be echoed (a sender that cannot be answered).
    pub udp_not_echoed: u64,
    /// TCP echo connections accepted.
    pub tcp_connections: u64,
    /// Bytes the TCP echo sent back.
    pub tcp_echoed_bytes: u64,
    /// Reports sent on port 11.
    pub reports: u64,
}

/// One connection to the report port: the text being sent.
struct Report {
    handle: SocketHandle,
    text: Option<(Vec<u8>, usize)>,
}

/// The services' sockets.
pub struct Services {
    udp_echo: SocketHandle,
    tcp_echo: Vec<(SocketHandle, bool)>,
    report: Report,
    /// Where bytes wait between a receive and a send.
    scratch: Vec<u8>,
    counts: ServiceCounts,
}

fn tcp_socket(bytes: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(tcp::SocketBuffer::new(vec![0; bytes]), tcp::SocketBuffer::new(vec![0; bytes]))
}

impl Services {
    /// Adds the sockets to `sockets` and opens them.
    pub fn open(sockets: &mut SocketSet<'static>) -> Services {
        let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_DATAGRAMS], vec![0; UDP_BYTES]);
        let mut udp_socket = udp::Socket::new(buffer(), buffer());
        // Binding a fresh socket to a non-zero port cannot fail.
        let _ = udp_socket.bind(ECHO_PORT);
        let udp_echo = sockets.add(udp_socket);
        let echo_socket = || {
            let mut socket = tcp_socket(TCP_BUFFER);
            socket.set_keep_alive(Some(ECHO_KEEP_ALIVE));
            socket.set_timeout(Some(ECHO_TIMEOUT));
            socket
        };
        let tcp_echo = (0..TCP_ECHO_SOCKETS).map(|_| (sockets.add(echo_socket()), false)).collect();
        let mut report_socket = tcp_socket(4096);
        report_socket.set_timeout(Some(REPORT_TIMEOUT));
        let report = Report { handle: sockets.add(report_socket), text: None };
        Services { udp_echo, tcp_echo, report, scratch: vec![0; TCP_BUFFER], counts: ServiceCounts::default() }
    }

    /// What the services did.
    pub fn counts(&self) -> ServiceCounts {
        self.counts
    }

    /// Serves what the sockets hold; `report` writes the text for port 11.
    /// Returns whether anything moved.
    pub fn serve(&mut self, sockets: &mut SocketSet<'static>, report: &dyn Fn() -> alloc::string::String) -> bool {
        let mut moved = self.echo_datagrams(sockets);
        for index in 0..self.tcp_echo.len() {
            moved |= self.echo_stream(sockets, index);
        }
        moved | self.send_report(sockets, report)
    }

    /// Every datagram waiting goes back to its sender, byte for byte. One the
    /// send buffer has no room for stays in the receive buffer until it has
    /// (the transmit ring full): taken off only once its echo is queued.
    fn echo_datagrams(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let socket = sockets.get_mut::<udp::Socket>(self.udp_echo);
        let mut moved = false;
        while socket.can_recv() {
            let Ok((length, metadata)) = socket.peek_slice(&mut self.scratch) else { break };
            let endpoint = metadata.endpoint;
            match socket.send_slice(&self.scratch[..length], endpoint) {
                Ok(()) => self.counts.udp_echoed += 1,
                Err(udp::SendError::BufferFull) => break,
                // A sender it cannot answer (port 0, say): dropped.
                Err(udp::SendError::Unaddressable) => self.counts.udp_not_echoed += 1,
            }
            let _ = socket.recv();
            moved = true;
        }
        moved
    }

    /// Moves what one TCP echo connection received into its send buffer;
    /// closes once the client closed and everything went back; listens again
    /// once closed.
    fn echo_stream(&mut self, sockets: &mut SocketSet<'static>, index: usize) -> bool {
        let (handle, counted) = &mut self.tcp_echo[index];
        let socket = sockets.get_mut::<tcp::Socket>(*handle);
        if !socket.is_open() {
            // A fresh socket, or one whose connection ended: listen again.
            let _ = socket.listen(ECHO_PORT);
            *counted = false;
            return false;
        }
        match (socket.may_send(), socket.is_listening(), *counted) {
            // Established (or the client already closed its side): counted once.
            (true, _, false) => {
                *counted = true;
                self.counts.tcp_connections += 1;
            }
            // Back to LISTEN (an RST during the handshake, which is not
            // counted): the next connection on this socket is a new one.
            (_, true, true) => *counted = false,
            _ => {}
        }
        let mut moved = false;
        while socket.can_recv() && socket.can_send() {
            let room = (socket.send_capacity() - socket.send_queue()).min(self.scratch.len());
            let Ok(length) = socket.recv_slice(&mut self.scratch[..room]) else { break };
            if length == 0 {
                break;
            }
            let sent = socket.send_slice(&self.scratch[..length]).unwrap_or(0);
            self.counts.tcp_echoed_bytes += sent as u64;
            moved = true;
        }
        if !socket.may_recv() && socket.may_send() && socket.send_queue() == 0 && socket.recv_queue() == 0 {
            // The client closed its side and has everything back.
            socket.close();
            moved = true;
        }
        moved
    }

    /// A connection to port 11 gets the report, then the server closes.
    fn send_report(&mut self, sockets: &mut SocketSet<'static>, report: &dyn Fn() -> alloc::string::String) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.report.handle);
        if !socket.is_open() {
            let _ = socket.listen(STATS_PORT);
            self.report.text = None;
            return false;
        }
        if !socket.may_send() {
            return false;
        }
        let (text, sent) = self.report.text.get_or_insert_with(|| {
            self.counts.reports += 1;
            (report().into_bytes(), 0)
        });
        let before = *sent;
        if *sent < text.len() {
            *sent += socket.send_slice(&text[*sent..]).unwrap_or(0);
        }
        if *sent == text.len() {
            socket.close();
        }
        *sent != before
    }
}
