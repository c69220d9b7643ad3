//! NVMe controllers (QEMU's `-device nvme`): one admin queue pair and one I/O
//! queue pair as deep as the controller allows, data described by PRPs (with
//! chained PRP list pages) or SGLs built from the transfer's typed segments.

mod bring_up;
mod controller;
pub mod data_pointer;
mod disk;
#[cfg(target_os = "none")]
mod driver;
pub mod identify;
pub mod queue;
pub mod registers;
pub mod structures;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use controller::{Controller, Shutdown};
pub use disk::{Link, MAX_DEPTH, NvmeDisk, NvmeOptions, SGL_THRESHOLD};
#[cfg(target_os = "none")]
pub use driver::NvmeDriver;
