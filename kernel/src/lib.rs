//! dmakit: a small x86_64 teaching kernel for DMA.
//!
//! This library holds everything but the entry point, so that the bootable kernel
//! (`src/main.rs`) and every test kernel in `tests/` share it. Modules that touch
//! the machine are built only for `x86_64-unknown-none`; the pure logic (memory
//! allocators, and later the DMA planner) also builds on the host for unit tests.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub use bootloader_api;
#[cfg(target_os = "none")]
pub use dmakit_boot as boot;

pub mod acpi;
#[cfg(target_os = "none")]
pub mod arch;
pub mod bench;
pub mod block;
#[cfg(target_os = "none")]
pub mod boot_info;
#[cfg(target_os = "none")]
pub mod clock;
pub mod command_line;
pub mod digest;
pub mod dma;
pub mod driver;
#[cfg(target_os = "none")]
mod init;
pub mod input_ring;
pub mod io;
pub mod iommu;
pub mod logger;
pub mod memory;
pub mod net;
#[cfg(target_os = "none")]
mod panic;
pub mod pattern;
pub mod pci;
#[cfg(target_os = "none")]
pub mod serial;
pub mod shell;
#[cfg(test)]
mod test_support;
#[cfg(target_os = "none")]
pub mod testing;
pub mod time;

#[cfg(target_os = "none")]
pub use init::{InitError, init};

/// dmakit's version, as the banner prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The boot configuration every dmakit kernel uses: all physical memory mapped (at
/// the boot code's default offset) and a 128 KiB kernel stack.
pub const BOOTLOADER_CONFIG: bootloader_api::BootloaderConfig = {
    let mut config = bootloader_api::BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(bootloader_api::config::Mapping::Dynamic);
    config.kernel_stack_size = 128 * 1024;
    config
};
