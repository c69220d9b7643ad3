//! The Linux guest's network services for `make bench`'s network phase: UDP and TCP echo on port 7, a report on TCP 11.
//!
//! Busybox has no UDP echo (its `nc` has no `-u`, and there is no `inetd`,
//! `udpsvd` or `tcpsvd` in Debian's busybox-static), so the guest runs this
//! instead. It is built on the host by tests/linux/build-guest as a static
//! binary (`rustc -C target-feature=+crt-static`, the host's glibc) and
//! started by tests/linux/init when the kernel command line has
//! `linuxbench.net=1`. Services, as dmakit's:
//!   UDP 7   each datagram back to its sender, as it came
//!   TCP 7   every byte back, until the client shuts down its side; then this side closes
//!   TCP 11  a text report (this program's counters, the kernel's interface and
//!           protocol counters), then the connection closes
//! It prints `LINUX_NET_READY` once the three sockets are bound.

use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

static DATAGRAMS_ECHOED: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS_ECHOED: AtomicU64 = AtomicU64::new(0);
static TCP_BYTES_ECHOED: AtomicU64 = AtomicU64::new(0);

fn bound<T>(what: &str, result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|error| {
        println!("LINUX_INFO net-echo: cannot bind {what}: {error}");
        exit(1)
    })
}

fn echo_datagrams(socket: UdpSocket) {
    // 64 KiB: the largest datagram, so that none is cut short.
    let mut buffer = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((length, sender)) => {
                if socket.send_to(&buffer[..length], sender).is_ok() {
                    DATAGRAMS_ECHOED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => println!("LINUX_INFO net-echo: udp: {error}"),
        }
    }
}

fn echo_stream(mut stream: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let length = match stream.read(&mut buffer) {
            Ok(0) => break, // the client shut down its side: close ours
            Ok(length) => length,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if stream.write_all(&buffer[..length]).is_err() {
            return;
        }
        TCP_BYTES_ECHOED.fetch_add(length as u64, Ordering::Relaxed);
    }
    CONNECTIONS_ECHOED.fetch_add(1, Ordering::Relaxed);
}

fn report() -> String {
    let mut text = format!(
        "linux net-echo\nudp_datagrams_echoed {}\ntcp_connections_echoed {}\ntcp_bytes_echoed {}\n",
        DATAGRAMS_ECHOED.load(Ordering::Relaxed),
        CONNECTIONS_ECHOED.load(Ordering::Relaxed),
        TCP_BYTES_ECHOED.load(Ordering::Relaxed),
    );
    // The kernel's own counters: packets per interface, and UDP/TCP (drops, retransmissions).
    for path in ["/proc/net/dev", "/proc/net/snmp"] {
        let _ = write!(text, "--- {path}\n{}", fs::read_to_string(path).unwrap_or_default());
    }
    text
}

fn main() {
    let udp = bound("udp 7", UdpSocket::bind("0.0.0.0:7"));
    let echo = bound("tcp 7", TcpListener::bind("0.0.0.0:7"));
    let stats = bound("tcp 11", TcpListener::bind("0.0.0.0:11"));
    println!("LINUX_NET_READY");
    thread::spawn(move || echo_datagrams(udp));
    thread::spawn(move || {
        for stream in echo.incoming().flatten() {
            thread::spawn(move || echo_stream(stream));
        }
    });
    for mut stream in stats.incoming().flatten() {
        let _ = stream.write_all(report().as_bytes());
    }
}
