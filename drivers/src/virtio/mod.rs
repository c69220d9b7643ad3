//! virtio-blk over legacy virtio-PCI, with a hand-written split virtqueue.

mod block;
#[cfg(target_os = "none")]
mod driver;
#[cfg(test)]
mod fake;
pub mod queue;
pub mod registers;
#[cfg(test)]
mod tests;

pub use block::VirtioBlock;
#[cfg(target_os = "none")]
pub use driver::VirtioBlockDriver;
