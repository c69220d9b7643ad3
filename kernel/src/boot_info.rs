//! The `BootInfo` the boot code handed over, kept for the rest of the kernel, and
//! the summary `make run` prints.

use bootloader_api::BootInfo;
use bootloader_api::info::MemoryRegionKind;
use spin::Once;

struct Shared(&'static BootInfo);

// SAFETY: after `init` the BootInfo is never written again, so shared references
// to it may cross into interrupt handlers (the only other context on one CPU).
unsafe impl Sync for Shared {}
// SAFETY: as above; it is only ever read.
unsafe impl Send for Shared {}

static BOOT_INFO: Once<Shared> = Once::new();

/// Keeps the boot info for [`get`].
pub(crate) fn init(boot_info: &'static BootInfo) {
    BOOT_INFO.call_once(|| Shared(boot_info));
}

/// The boot info, once the kernel has been initialised.
pub fn get() -> Option<&'static BootInfo> {
    BOOT_INFO.get().map(|shared| shared.0)
}

/// A region kind as a short word.
pub fn kind_name(kind: MemoryRegionKind) -> &'static str {
    match kind {
        MemoryRegionKind::Usable => "usable",
        MemoryRegionKind::Bootloader => "kernel/boot",
        MemoryRegionKind::UnknownBios(_) => "reserved",
        MemoryRegionKind::UnknownUefi(_) => "uefi",
        _ => "other",
    }
}

/// Prints the memory map, one region a line.
pub fn print_memory_map() {
    let Some(info) = get() else { return };
    crate::println!("Memory map ({} regions):", info.memory_regions.len());
    for region in info.memory_regions.iter() {
        let size = region.end - region.start;
        crate::println!(
            "  {:#014x}-{:#014x} {:>10} KiB  {}",
            region.start,
            region.end,
            size / 1024,
            kind_name(region.kind)
        );
    }
}
