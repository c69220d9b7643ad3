//! ATA disks on QEMU's PIIX3 IDE controller, with bus-master DMA.

mod channel;
#[cfg(target_os = "none")]
mod driver;
#[cfg(test)]
pub(crate) mod fake;
pub mod identify;
pub mod prd;
pub mod registers;
#[cfg(test)]
mod tests;

pub use channel::{AtaDisk, Channel, Interrupts, PIIX_SPECIFICATION};
#[cfg(target_os = "none")]
pub use driver::PiixAtaDriver;
