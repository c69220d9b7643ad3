//! The DMA subsystem, after IOKit: `IoMemoryDescriptor` says where memory is,
//! `IoDmaCommand` makes it usable by one device (segments, bouncing,
//! synchronize). The contract is `../shared/design/dma-contract.md`; the learner's
//! guide is `docs/dma.md`.

mod accounting;
mod address;
mod command;
mod descriptor;
mod direction;
mod io_return;
#[cfg(target_os = "none")]
pub mod kernel_platform;
mod options;
mod plan;
mod platform;
pub mod simulated;
mod specification;
pub mod trace;

pub use accounting::{Accounting, BounceStats, Misuse, MisuseReport};
pub use address::{DmaAddr, Endian, OutputFormat, Segment};
pub use command::{BounceBuffer, IoDmaCommand};
pub use descriptor::IoMemoryDescriptor;
pub use direction::{IoDirection, SyncOptions};
pub use io_return::IoReturn;
pub use options::TransferOptions;
pub use platform::DmaPlatform;
pub use specification::{Rules, Specification};

#[cfg(test)]
mod tests;
