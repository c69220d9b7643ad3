//! `NetService`: smoltcp's interface and sockets over one network interface,
//! polled by whoever has time (the shell, while it waits for a key).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use super::device::InterfaceDevice;
use super::services::{ServiceCounts, Services};
use crate::dma::IoFailure;
use crate::net::registry::NetInterface;

/// Where the stack sits: QEMU's user-mode network gives the guest 10.0.2.15
/// in 10.0.2.0/24 and is itself 10.0.2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The interface's IPv4 address.
    pub address: [u8; 4],
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: [u8; 4],
}

impl Address {
    /// QEMU's user-mode network.
    pub const QEMU_USER: Address = Address { address: [10, 0, 2, 15], prefix: 24, gateway: [10, 0, 2, 2] };
}

/// What the stack did, for `net` and the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Polls that moved something.
    pub busy_polls: u64,
    /// The services' counts.
    pub counts: ServiceCounts,
    /// Frames smoltcp built that the interface refused (lost, as on a wire).
    pub transmit_failures: u64,
    /// Frames the interface handed up while too many waited for smoltcp
    /// (lost, as on a wire).
    pub receive_overflows: u64,
    /// Why the interface last failed, if it did.
    pub last_failure: Option<IoFailure>,
}

/// A TCP/IP stack serving echo and a report on one interface.
pub struct NetService {
    interface: Interface,
    device: InterfaceDevice,
    sockets: SocketSet<'static>,
    services: Services,
    address: Address,
    busy_polls: u64,
}

impl NetService {
    /// The stack on `interface` at `address`, its services open; `now_ms` is
    /// the time in milliseconds (any origin, never going back).
    pub fn new(interface: Arc<dyn NetInterface>, address: Address, now_ms: i64) -> NetService {
        let mac = interface.mac();
        let mut device = InterfaceDevice::new(interface);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // TCP's initial sequence numbers and ports: unpredictable enough here.
        config.random_seed =
            u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x5a, 0xa5]) ^ now_ms as u64;
        let mut stack = Interface::new(config, &mut device, Instant::from_millis(now_ms));
        let [a, b, c, d] = address.address;
        stack.update_ip_addrs(|addresses| {
            // A fresh interface has room for one address.
            let _ = addresses.push(IpCidr::new(Ipv4Address::new(a, b, c, d).into(), address.prefix));
        });
        let [a, b, c, d] = address.gateway;
        // A fresh route table has room for a default route.
        let _ = stack.routes_mut().add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        let mut sockets = SocketSet::new(Vec::new());
        let services = Services::open(&mut sockets);
        NetService { interface: stack, device, sockets, services, address, busy_polls: 0 }
    }

    /// Where the stack sits.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The interface under the stack.
    pub fn interface(&self) -> &Arc<dyn NetInterface> {
        self.device.interface()
    }

    /// Takes what arrived, serves it, sends what the services wrote. Returns
    /// whether anything moved (then the caller should poll again before it
    /// sleeps). `report` writes the text port 11 sends.
    pub fn poll(&mut self, now_ms: i64, report: &dyn Fn() -> String) -> bool {
        let now = Instant::from_millis(now_ms);
        // Each poll of smoltcp's interface looks at the device once: frames
        // that keep coming wait for the next call, and the caller gets to do
        // its own work (and the services theirs) in between.
        self.device.new_round();
        let mut moved = self.interface.poll(now, &mut self.device, &mut self.sockets) == PollResult::SocketStateChanged;
        moved |= self.services.serve(&mut self.sockets, report);
        // What the services wrote goes out now, not at the next poll.
        self.device.new_round();
        moved |= self.interface.poll(now, &mut self.device, &mut self.sockets) == PollResult::SocketStateChanged;
        moved |= self.device.take_activity() > 0;
        if moved {
            self.busy_polls += 1;
        }
        moved
    }

    /// What the stack did.
    pub fn stats(&self) -> ServiceStats {
        ServiceStats {
            busy_polls: self.busy_polls,
            counts: self.services.counts(),
            transmit_failures: self.device.transmit_failures(),
            receive_overflows: self.device.overflowed(),
            last_failure: self.device.last_failure(),
        }
    }
}
