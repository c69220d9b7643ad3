//! Intel VT-d DMA remapping: the IOMMU behind the DMA layer's [`IoMapper`].
//!
//! Each remapping unit the DMAR table lists is brought up with an empty root
//! table and translation on; each device behind it gets a domain of its own on
//! first use ([`mapper_for`]): a context entry, a second-level page table and an
//! IOVA space. The DMA layer maps every prepared page there and unmaps it at
//! complete; a DMA anywhere else faults, and the fault is read from the unit's
//! fault records and handed to the transfer that caused it.
//!
//! - `registers`: offsets and bits, CAP/ECAP decoders;
//! - `tables`: root and context entries;
//! - `page_table`: second-level page tables;
//! - `unit`: bring-up, invalidation, faults (generic over [`crate::io::RegisterIo`]);
//! - `domain`: [`VtdDomain`], the `IoMapper`;
//! - `experiment`: the teaching experiment, through the DMA layer's hooks;
//! - `scope`: which unit covers a device; `registry`: the kernel's units and domains.

pub mod domain;
pub mod experiment;
#[cfg(test)]
pub(crate) mod fake;
mod faults;
pub mod page_table;
pub mod registers;
pub mod tables;
pub mod unit;

#[cfg(target_os = "none")]
mod registry;
mod scope;

pub use domain::{DomainMode, VtdDomain};
pub use experiment::Experiment;
#[cfg(target_os = "none")]
pub use registry::{
    disarm_skip_invalidation, init, invalidate_stale, live_mappings, mapper_for, report, set_experiment,
    set_passthrough, stale_pages,
};
pub use scope::{UnitDescription, covering_unit};
pub use unit::Unit;
