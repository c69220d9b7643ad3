//! virtio-blk over virtio-PCI, legacy (I/O BAR 0) or modern (virtio 1.0, memory
//! BARs found through capabilities), with a hand-written split virtqueue.

mod block;
mod bring_up;
#[cfg(target_os = "none")]
mod driver;
#[cfg(test)]
mod fake;
mod layout;
pub mod legacy;
pub mod modern;
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
pub use transport::{DmaPlatforms, DmaRoute, Interface, Transport};
