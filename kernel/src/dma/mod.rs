//! The DMA subsystem, after IOKit: `IoMemoryDescriptor` says where memory is,
//! `IoDmaCommand` makes it usable by one device (segments, bouncing,
//! synchronize); `DmaBuffer` and `DmaTransfer` put buffer ownership in the
//! types; `TransferSlots` keeps the life cycle of many transfers in one place and
//! lends drivers only what they program. The contract is `docs/dma-contract.md`;
//! the learner's guide is `docs/dma.md`.

mod accounting;
mod address;
mod bounce;
mod bounce_option;
mod budget;
mod buffer;
mod coherent;
mod command;
mod cpu_cache;
mod descriptor;
mod device_cause;
mod direction;
mod entry;
pub mod experiment;
mod failure;
mod fault;
pub mod hooks;
mod io_return;
mod iommu_cause;
mod iova;
#[cfg(target_os = "none")]
pub mod kernel_platform;
mod mapped_platform;
mod mapper;
mod mapping;
mod misuse;
mod nvme_cause;
mod options;
mod plan;
mod platform;
mod realization;
mod segments;
pub mod simulated;
pub mod simulated_mapper;
mod slots;
mod specification;
mod statistics;
pub mod trace;
mod transfer;
#[cfg(test)]
pub(crate) mod watched_platform;
mod with_transfer;

pub use accounting::Accounting;
pub use address::{DmaAddr, Endian, OutputFormat, Segment};
pub use bounce::BounceBuffer;
pub use bounce_option::{BouncePagesOption, Refusal as BouncePagesRefusal, bounce_pages_option, bounce_pages_report};
pub use budget::BounceBudget;
pub use buffer::DmaBuffer;
pub use coherent::CoherentMemory;
pub use command::IoDmaCommand;
pub use descriptor::IoMemoryDescriptor;
pub use device_cause::{AhciCause, AtaCause, DeviceStatus, NetCause, PciCause, VirtioCause};
pub use direction::{IoDirection, SyncOptions};
pub use entry::{FromSegment, SegmentPosition, entries_for};
pub use failure::{Cause, IoFailure};
pub use fault::{FaultAccess, FaultLoss, IommuFault, fault_meaning};
pub use io_return::IoReturn;
pub use iommu_cause::{IommuCause, IommuTable, UnitStep};
pub use iova::IovaSpace;
pub use mapped_platform::MappedPlatform;
pub use mapper::{IoMapper, MappedRange, Mapping};
pub use misuse::{Misuse, MisuseLog, MisuseReport};
pub use nvme_cause::{ControllerField, GenericStatus, MediaStatus, NvmeCause, NvmeStatus, PrpRule};
pub use options::TransferOptions;
pub use platform::{Coherence, DmaPlatform, FrameFill};
pub use slots::{LentTransfer, NotPrepared, SlotCompleted, TransferSlots};
pub use specification::{Rules, Specification};
pub use statistics::{BounceStats, Statistics};
pub use transfer::{ByteCount, Completed, DmaTransfer, Refused};

#[cfg(test)]
mod tests;
