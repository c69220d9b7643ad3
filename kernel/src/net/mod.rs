//! The network layer: a NIC whose receive and transmit buffers are prepared
//! once and recycled, the CPU and the device taking turns on them through
//! `synchronize_range` (see `nic.rs` for one packet's life, and docs/net.md).

mod hardware;
#[cfg(test)]
mod interrupt_tests;
mod nic;
pub mod registry;
pub mod stack;
mod stats;
#[cfg(test)]
mod tests;

pub use crate::block::{DeviceHealth, Quiesced, Slot};
pub use hardware::{Interrupts, NetEvent, NetworkHardware, NicShape};
pub use nic::{Nic, NicState, Polled};
pub use stats::NicStats;
