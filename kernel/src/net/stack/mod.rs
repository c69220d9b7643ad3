//! A TCP/IP stack on a network interface: smoltcp (a well-kept no_std stack;
//! the protocols are not what dmakit teaches, the buffers under them are),
//! serving a UDP echo and a TCP echo on port 7 and a report on TCP port 11,
//! at a fixed 10.0.2.15/24 behind QEMU's user-mode gateway 10.0.2.2.

mod device;
#[cfg(test)]
mod robustness_tests;
mod service;
mod services;
#[cfg(test)]
mod tests;

pub use device::InterfaceDevice;
pub use service::{Address, NetService, ServiceStats};
pub use services::{ECHO_PORT, STATS_PORT};

#[cfg(target_os = "none")]
mod running;
#[cfg(target_os = "none")]
pub use running::{poll, sleep, sleep_share, start, stats};
