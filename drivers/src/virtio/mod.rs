//! virtio-blk and virtio-net over virtio-PCI, legacy (I/O BAR 0) or modern (virtio 1.0, memory
//! BARs found through capabilities), with a hand-written split virtqueue.

#[cfg(test)]
#[macro_use]
mod both_transports;
mod block;
mod bring_up;
#[cfg(target_os = "none")]
mod driver;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod fake_net;
#[cfg(test)]
mod flush_tests;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod hostile_net_tests;
mod layout;
pub mod legacy;
pub mod modern;
pub mod net;
#[cfg(target_os = "none")]
mod net_driver;
#[cfg(test)]
mod net_interrupt_tests;
#[cfg(test)]
mod net_register_tests;
#[cfg(test)]
mod net_tests;
pub mod queue;
pub mod registers;
#[cfg(test)]
mod tests;
pub mod transport;
pub mod virtqueue;

pub use block::VirtioBlock;
#[cfg(target_os = "none")]
pub use driver::VirtioBlockDriver;
pub use layout::SlotLayout;
pub use legacy::LegacyTransport;
pub use modern::{ModernRegisters, ModernTransport, Structure};
pub use net::VirtioNet;
#[cfg(target_os = "none")]
pub use net_driver::VirtioNetDriver;
pub use transport::{DmaPlatforms, DmaRoute, Interface, Transport};
