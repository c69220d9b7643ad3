//! dmakit's boot path: QEMU's PVH entry, the trip into long mode, and the hand-off
//! to the kernel through `bootloader_api`'s `BootInfo`.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod frames;
#[cfg(target_os = "none")]
mod handoff;
pub mod memory_map;
pub mod start_info;

#[cfg(target_os = "none")]
pub use entry::KERNEL_VMA;
#[cfg(target_os = "none")]
pub use handoff::{DEFAULT_PHYSICAL_MEMORY_OFFSET, command_line};
