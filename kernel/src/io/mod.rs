//! Device registers as drivers see them: a small trait over "read or write a
//! register at this offset", and I/O port ranges that the kernel hands out one
//! owner at a time.
//!
//! Drivers are written against [`RegisterIo`], so they run unchanged on the host
//! against a fake device (see `drivers/`), and never need `unsafe`: the only unsafe
//! step, touching a port, happens inside [`PortRange`].

#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod ports;
mod register;

#[cfg(target_os = "none")]
pub use mmio::{MmioRange, map_mmio};
#[cfg(target_os = "none")]
pub use ports::{PortRange, claim_ports};
pub use register::RegisterIo;
