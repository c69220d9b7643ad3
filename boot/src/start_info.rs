//! The PVH `hvm_start_info` structure QEMU hands over in `%ebx`, and its readers.
//!
//! Layouts follow Xen's public `arch-x86/hvm/start_info.h`, which QEMU's PVH
//! option ROM fills in. Everything here is read through the boot identity map
//! (physical address = virtual address) before the kernel runs.

/// `hvm_start_info.magic`: the value that proves the structure is real.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info` (version 1, which added the memory map).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmStartInfo {
    /// 0x00: [`START_INFO_MAGIC`].
    pub magic: u32,
    /// 0x04: structure version; 1 or later has `memmap_*`.
    pub version: u32,
    /// 0x08: `SIF_*` flags.
    pub flags: u32,
    /// 0x0c: number of entries at `modlist_paddr`.
    pub module_count: u32,
    /// 0x10: physical address of the module list (QEMU's `-initrd` is module 0).
    pub module_list_address: u64,
    /// 0x18: physical address of the NUL-terminated command line (`-append`).
    pub command_line_address: u64,
    /// 0x20: physical address of the ACPI RSDP, or 0.
    pub rsdp_address: u64,
    /// 0x28: physical address of the memory map.
    pub memory_map_address: u64,
    /// 0x30: number of memory map entries.
    pub memory_map_entries: u32,
    /// 0x34: reserved.
    pub reserved: u32,
}
const _: () = assert!(size_of::<HvmStartInfo>() == 56);

/// `struct hvm_memmap_table_entry`: one E820-style range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemoryMapEntry {
    /// 0x00: physical start.
    pub address: u64,
    /// 0x08: length in bytes.
    pub size: u64,
    /// 0x10: E820 type (1 = RAM).
    pub kind: u32,
    /// 0x14: reserved.
    pub reserved: u32,
}
const _: () = assert!(size_of::<HvmMemoryMapEntry>() == 24);

/// `struct hvm_modlist_entry`: one module (an initrd).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmModule {
    /// 0x00: physical start.
    pub address: u64,
    /// 0x08: length in bytes.
    pub size: u64,
    /// 0x10: physical address of the module's command line, or 0.
    pub command_line_address: u64,
    /// 0x18: reserved.
    pub reserved: u64,
}
const _: () = assert!(size_of::<HvmModule>() == 32);

/// E820 type of ordinary RAM.
pub const E820_RAM: u32 = 1;

/// The highest physical address the boot identity map reaches.
#[cfg(target_os = "none")]
pub(crate) const IDENTITY_LIMIT: u64 = 1 << 30;

#[cfg(target_os = "none")]
/// Reads a `T` at physical address `address` through the boot identity map.
///
/// # Safety
/// The identity map of the first GiB must be active, and `[address, address +
/// size_of::<T>())` must be memory QEMU initialised with a `T`.
pub(crate) unsafe fn read_physical<T: Copy>(address: u64) -> T {
    assert!(
        address + size_of::<T>() as u64 <= IDENTITY_LIMIT,
        "boot structure at {address:#x} lies above the boot identity map"
    );
    // SAFETY: the caller guarantees the mapping and the contents; unaligned reads
    // are used because nothing promises the structures' alignment.
    unsafe { core::ptr::read_unaligned(address as *const T) }
}
