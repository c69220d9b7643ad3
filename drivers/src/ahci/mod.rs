//! SATA disks on an AHCI host bus adapter (QEMU's ICH9), with native command
//! queuing: up to 32 requests in flight per port.

mod completion;
mod hba;
pub mod identify;
mod memory;
mod port;
mod recovery;
pub mod registers;
pub mod structures;

#[cfg(target_os = "none")]
mod driver;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

#[cfg(target_os = "none")]
pub use driver::AhciDriver;
pub use hba::{Capabilities, Hba};
pub use port::AhciPort;
