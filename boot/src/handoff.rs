//! `boot_main`: from the PVH start info to a `bootloader_api::BootInfo` and the
//! kernel's `_start`.
//!
//! Steps, in order:
//! 1. read `hvm_start_info` (memory map, command line, initrd, RSDP) through the
//!    boot identity map and read the kernel's `BootloaderConfig` from its section;
//! 2. take a few frames just above the image for the boot info, the kernel stack
//!    and the page tables of the physical-memory mapping;
//! 3. map all physical memory at the configured offset (2 MiB pages);
//! 4. drop the identity map, so that a null pointer faults from now on;
//! 5. build the memory regions, fill `BootInfo` and call `_start` on the new stack.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bootloader_api::config::Mapping;
use bootloader_api::info::{MemoryRegion, Optional};
use bootloader_api::{BootInfo, BootloaderConfig};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags, PhysFrame, Size2MiB,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::entry::{KERNEL_VMA, bootloader_config_bytes, image_physical_range};
use crate::frames::BootFrames;
use crate::memory_map::{self, MAX_FIRMWARE_ENTRIES, Reservation};
use crate::start_info::{
    E820_RAM, HvmMemoryMapEntry, HvmModule, HvmStartInfo, IDENTITY_LIMIT, START_INFO_MAGIC, read_physical,
};

const PAGE_SIZE: u64 = 4096;
/// Where physical memory is mapped when the kernel asks for `Mapping::Dynamic`:
/// the start of the higher half (PML4 entry 256).
pub const DEFAULT_PHYSICAL_MEMORY_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Pages for `BootInfo` and its memory-region array.
const BOOT_INFO_PAGES: u64 = 3;
/// Where the region array starts inside the boot-info pages.
const REGIONS_OFFSET: u64 = 512;
/// The longest command line kept; QEMU's PVH loader accepts less than this anyway.
const MAX_COMMAND_LINE: usize = 4095;

static COMMAND_LINE_ADDRESS: AtomicU64 = AtomicU64::new(0);
static COMMAND_LINE_LENGTH: AtomicUsize = AtomicUsize::new(0);

/// The PVH command line (QEMU's `-append`), or `""` when there was none.
pub fn command_line() -> &'static str {
    let address = COMMAND_LINE_ADDRESS.load(Ordering::Acquire);
    let length = COMMAND_LINE_LENGTH.load(Ordering::Acquire);
    if address == 0 {
        return "";
    }
    // SAFETY: boot_main copied a validated UTF-8 string of `length` bytes to
    // `address` in Bootloader memory, which nothing writes or frees afterwards.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, length) };
    core::str::from_utf8(bytes).unwrap_or("")
}

#[allow(improper_ctypes, reason = "both sides are Rust: entry_point! defines `_start` with this very signature")]
unsafe extern "C" {
    /// Defined by `bootloader_api::entry_point!` in the kernel binary.
    fn _start(boot_info: &'static mut BootInfo) -> !;
}

/// Called by the trampoline in 64-bit mode on the boot stack.
pub(crate) extern "C" fn boot_main(start_info_address: u32) -> ! {
    reload_gdt_in_higher_half();

    // SAFETY: QEMU passes the structure's address in %ebx and the identity map of
    // the first GiB is active; the magic is checked before any field is trusted.
    let start_info: HvmStartInfo = unsafe { read_physical(u64::from(start_info_address)) };
    assert!(start_info.magic == START_INFO_MAGIC, "no PVH start info (bad magic)");
    assert!(start_info.version >= 1, "PVH start info version 0 has no memory map");

    let mut firmware = [HvmMemoryMapEntry::default(); MAX_FIRMWARE_ENTRIES];
    let firmware_count = (start_info.memory_map_entries as usize).min(MAX_FIRMWARE_ENTRIES);
    for (index, entry) in firmware[..firmware_count].iter_mut().enumerate() {
        let address = start_info.memory_map_address + (index * size_of::<HvmMemoryMapEntry>()) as u64;
        // SAFETY: entry `index` of the memory map QEMU described; identity map active.
        *entry = unsafe { read_physical(address) };
    }
    let firmware = &firmware[..firmware_count];

    let config =
        BootloaderConfig::deserialize(bootloader_config_bytes()).unwrap_or_else(|_| BootloaderConfig::new_default());

    let (image_start, image_end) = image_physical_range();
    let stack_pages = config.kernel_stack_size.div_ceil(PAGE_SIZE).max(1);
    let ram_end = firmware.iter().filter(|e| e.kind == E820_RAM).map(|e| e.address + e.size).max().unwrap_or(0);
    // Map at least the 32-bit space so that MMIO below 4 GiB is reachable too.
    let map_end = ram_end.max(1 << 32).next_multiple_of(Size2MiB::SIZE);
    let table_pages = map_end.div_ceil(1 << 30) + map_end.div_ceil(1 << 39) + 1;
    let command_line_pages = 1;
    let needed = BOOT_INFO_PAGES + stack_pages + table_pages + command_line_pages;
    let mut frames = boot_frames(firmware, image_end, needed);

    let info_address = frames.allocate(BOOT_INFO_PAGES).expect("sized above");
    let command_line_address = frames.allocate(command_line_pages).expect("sized above");
    copy_command_line(&start_info, command_line_address);
    let stack_bottom = frames.allocate(stack_pages).expect("sized above");

    let physical_memory_offset = config.mappings.physical_memory.map(|mapping| match mapping {
        Mapping::Dynamic => DEFAULT_PHYSICAL_MEMORY_OFFSET,
        Mapping::FixedAddress(address) => address,
    });
    if let Some(offset) = physical_memory_offset {
        map_physical_memory(offset, map_end, &mut frames);
    }
    let rsdp = match start_info.rsdp_address {
        0 => find_rsdp(),
        address => Some(address),
    };
    let ramdisk = (start_info.module_count > 0).then(|| {
        // SAFETY: module 0 of the list QEMU described; identity map still active.
        unsafe { read_physical::<HvmModule>(start_info.module_list_address) }
    });
    remove_identity_map();

    let (boot_start, boot_end) = frames.used();
    let mut reservations = [
        // Page 0 stays out of the allocator: a DMA or physical address of 0 is always a bug.
        Reservation { start: 0, end: PAGE_SIZE },
        Reservation { start: image_start, end: image_end },
        Reservation { start: boot_start, end: boot_end },
        Reservation { start: 0, end: 0 },
    ];
    if let Some(module) = ramdisk {
        reservations[3] = Reservation {
            start: module.address / PAGE_SIZE * PAGE_SIZE,
            end: (module.address + module.size).next_multiple_of(PAGE_SIZE),
        };
    }

    let info_virtual = KERNEL_VMA + info_address;
    let regions_virtual = info_virtual + REGIONS_OFFSET;
    let capacity = ((BOOT_INFO_PAGES * PAGE_SIZE - REGIONS_OFFSET) / size_of::<MemoryRegion>() as u64) as usize;
    // SAFETY: the boot-info pages are zeroed frames this code owns for ever (reported
    // as Bootloader memory), mapped at KERNEL_VMA; the region array follows BootInfo
    // without overlapping it, and MemoryRegion is valid for any initialised bytes we write.
    let regions: &'static mut [MemoryRegion] =
        unsafe { core::slice::from_raw_parts_mut(regions_virtual as *mut MemoryRegion, capacity) };
    regions.fill(MemoryRegion::empty());
    let count = memory_map::build(firmware, &reservations, regions).expect("too many memory regions");
    let regions = &mut regions[..count];

    let mut boot_info = BootInfo::new(regions.into());
    boot_info.physical_memory_offset = physical_memory_offset.into();
    boot_info.rsdp_addr = rsdp.into();
    boot_info.kernel_addr = image_start;
    boot_info.kernel_len = image_end - image_start;
    boot_info.kernel_image_offset = KERNEL_VMA;
    boot_info.kernel_stack_bottom = KERNEL_VMA + stack_bottom;
    boot_info.kernel_stack_len = stack_pages * PAGE_SIZE;
    if let (Some(module), Some(offset)) = (ramdisk, physical_memory_offset) {
        boot_info.ramdisk_addr = Optional::Some(offset + module.address);
        boot_info.ramdisk_len = module.size;
    }
    const _: () = assert!(size_of::<BootInfo>() as u64 <= REGIONS_OFFSET);
    let info_pointer = info_virtual as *mut BootInfo;
    // SAFETY: the first bytes of the boot-info pages are reserved for BootInfo (the
    // assertion above), suitably aligned (page-aligned) and owned by nobody else.
    let boot_info: &'static mut BootInfo = unsafe {
        info_pointer.write(boot_info);
        &mut *info_pointer
    };

    let stack_top = KERNEL_VMA + stack_bottom + stack_pages * PAGE_SIZE;
    // SAFETY: the new stack is fresh, mapped, 16-byte aligned memory; `_start` never
    // returns, so abandoning the boot stack loses nothing. The System V ABI wants
    // rsp + 8 to be 16-aligned at function entry, which the `call` provides.
    unsafe {
        core::arch::asm!(
            "mov rsp, {stack_top}",
            "xor ebp, ebp",
            "call {entry}",
            "ud2",
            stack_top = in(reg) stack_top,
            entry = sym _start,
            in("rdi") boot_info,
            options(noreturn),
        )
    }
}

/// The trampoline loaded the GDT by its low, identity-mapped address; point GDTR at
/// the same table through the higher half before the identity map goes away.
fn reload_gdt_in_higher_half() {
    let current = x86_64::instructions::tables::sgdt();
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: current.limit,
        base: VirtAddr::new(KERNEL_VMA + current.base.as_u64()),
    };
    // SAFETY: the same descriptors, read through the KERNEL_VMA alias of the first GiB,
    // which stays mapped for the life of the kernel.
    unsafe { x86_64::instructions::tables::lgdt(&pointer) };
}

/// A bump allocator over the first usable RAM above the image with `pages` free
/// below the identity-map limit.
fn boot_frames(firmware: &[HvmMemoryMapEntry], image_end: u64, pages: u64) -> BootFrames {
    for entry in firmware.iter().filter(|e| e.kind == E820_RAM) {
        let start = entry.address.max(image_end).next_multiple_of(PAGE_SIZE);
        let end = (entry.address + entry.size).min(IDENTITY_LIMIT) / PAGE_SIZE * PAGE_SIZE;
        if end > start && (end - start) / PAGE_SIZE >= pages {
            return BootFrames::new(start, start + pages * PAGE_SIZE);
        }
    }
    panic!("no {pages} free pages below 1 GiB for the boot structures");
}

/// Copies the PVH command line into kernel-owned memory and publishes it.
fn copy_command_line(start_info: &HvmStartInfo, destination: u64) {
    if start_info.command_line_address == 0 {
        return;
    }
    let mut length = 0;
    while length < MAX_COMMAND_LINE {
        // SAFETY: QEMU wrote a NUL-terminated string there; we stop at the NUL.
        let byte: u8 = unsafe { read_physical(start_info.command_line_address + length as u64) };
        if byte == 0 {
            break;
        }
        // SAFETY: `destination` is a fresh page of our own, and `length` < 4096.
        unsafe { ((KERNEL_VMA + destination) as *mut u8).add(length).write(byte) };
        length += 1;
    }
    // SAFETY: the `length` bytes just written.
    let bytes = unsafe { core::slice::from_raw_parts((KERNEL_VMA + destination) as *const u8, length) };
    if core::str::from_utf8(bytes).is_ok() {
        COMMAND_LINE_LENGTH.store(length, Ordering::Release);
        COMMAND_LINE_ADDRESS.store(KERNEL_VMA + destination, Ordering::Release);
    }
}

/// Maps `[0, end)` physical at `offset` with writable, non-executable 2 MiB pages.
fn map_physical_memory(offset: u64, end: u64, frames: &mut BootFrames) {
    assert!(offset.is_multiple_of(Size2MiB::SIZE), "physical memory offset must be 2 MiB aligned");
    let (level_4, _) = Cr3::read();
    // SAFETY: the active level-4 table is in the identity-mapped first GiB, and with
    // offset 0 the mapper reads every table through the identity map, where the boot
    // frame allocator also puts new tables. Nothing else touches the tables now.
    let mut mapper = unsafe {
        let table = &mut *(level_4.start_address().as_u64() as *mut PageTable);
        OffsetPageTable::new(table, VirtAddr::new(0))
    };
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for physical in (0..end).step_by(Size2MiB::SIZE as usize) {
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(offset + physical));
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(physical));
        // SAFETY: a fresh alias of physical memory in an otherwise unused part of the
        // address space; creating an alias does not by itself touch any memory.
        let mapping = unsafe { mapper.map_to(page, frame, flags, frames) };
        // The whole TLB is flushed when the identity map goes away.
        mapping.expect("mapping physical memory").ignore();
    }
}

/// Clears PML4 entry 0 (the identity map) and flushes the TLB by reloading CR3.
fn remove_identity_map() {
    let (level_4, cr3_flags) = Cr3::read();
    let table = (KERNEL_VMA + level_4.start_address().as_u64()) as *mut PageTable;
    // SAFETY: the level-4 table is in the first GiB, mapped at KERNEL_VMA; from here on
    // only higher-half addresses are used, so dropping the low half is sound.
    unsafe {
        (&mut *table)[0].set_unused();
        Cr3::write(level_4, cr3_flags);
    }
}

/// Looks for the ACPI "RSD PTR " signature in the BIOS read-only area, on 16-byte
/// boundaries, as the ACPI specification describes.
fn find_rsdp() -> Option<u64> {
    (0xe_0000u64..0x10_0000).step_by(16).find(|&address| {
        // SAFETY: the BIOS area lies in the identity-mapped first MiB.
        let signature: [u8; 8] = unsafe { read_physical(address) };
        &signature == b"RSD PTR "
    })
}
