//! NVMe controllers (QEMU's `-device nvme`): one admin queue pair and one I/O
//! queue pair as deep as the controller allows, data described by PRPs (with
//! chained PRP list pages) or SGLs built from the transfer's typed segments.

pub mod data_pointer;
pub mod identify;
pub mod queue;
pub mod registers;
pub mod structures;
