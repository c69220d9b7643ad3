//! Test kernel: what the boot code hands over (BootInfo, command line, RSDP).
#![no_std]
#![no_main]

use dmakit::bootloader_api::info::MemoryRegionKind;
use dmakit::memory::physical;
use x86_64::PhysAddr;

dmakit::test_kernel!(
    regions_are_sorted_and_disjoint,
    kernel_image_is_not_usable,
    memory_above_4_gib_is_usable,
    page_zero_is_never_usable,
    physical_memory_is_mapped_at_the_offset,
    command_line_reaches_the_kernel,
    rsdp_is_found,
    the_initrd_is_handed_over_as_the_ramdisk,
);

fn info() -> &'static dmakit::bootloader_api::BootInfo {
    dmakit::boot_info::get().expect("kernel initialised")
}

fn regions_are_sorted_and_disjoint() {
    let regions = &info().memory_regions;
    assert!(regions.len() > 2, "a real machine has several regions");
    for pair in regions.windows(2) {
        assert!(pair[0].start < pair[0].end, "empty region {:?}", pair[0]);
        assert!(pair[0].end <= pair[1].start, "overlap or disorder: {:?} / {:?}", pair[0], pair[1]);
    }
}

fn kernel_image_is_not_usable() {
    let info = info();
    let (start, end) = (info.kernel_addr, info.kernel_addr + info.kernel_len);
    assert!(info.kernel_len > 0);
    for region in info.memory_regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
        assert!(region.end <= start || region.start >= end, "usable {region:?} overlaps the kernel");
    }
    let covered =
        info.memory_regions.iter().any(|r| r.kind == MemoryRegionKind::Bootloader && r.start <= start && end <= r.end);
    assert!(covered, "the kernel image is reported as boot memory");
}

fn memory_above_4_gib_is_usable() {
    let above: u64 = info()
        .memory_regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable && r.end > 1 << 32)
        .map(|r| r.end - r.start.max(1 << 32))
        .sum();
    assert!(above >= 1 << 30, "QEMU -m 6G puts at least 1 GiB above 4 GiB, found {above:#x}");
}

fn page_zero_is_never_usable() {
    let usable_zero = info().memory_regions.iter().any(|r| r.kind == MemoryRegionKind::Usable && r.start == 0);
    assert!(!usable_zero);
}

fn physical_memory_is_mapped_at_the_offset() {
    let offset = info().physical_memory_offset.into_option().expect("offset");
    assert_eq!(physical::offset().as_u64(), offset);
    // The boot code's start info lives in low memory; the BIOS data area's first
    // word (the COM1 port, 0x3f8) is a known value to read through the mapping.
    let com1 = physical::to_virtual(PhysAddr::new(0x400)).as_ptr::<u16>();
    // SAFETY: physical 0x400 is mapped (all RAM is) and is plain memory.
    let value = unsafe { com1.read_volatile() };
    assert_eq!(value, 0x3f8, "BIOS data area through the physical map");
}

fn command_line_reaches_the_kernel() {
    let line = dmakit::boot::command_line();
    assert!(line.split_whitespace().any(|w| w == "test.kernel=boot"), "command line was {line:?}");
}

fn rsdp_is_found() {
    let address = info().rsdp_addr.into_option().expect("QEMU's pc machine has ACPI");
    let signature = physical::to_virtual(PhysAddr::new(address)).as_ptr::<[u8; 8]>();
    // SAFETY: the RSDP lies in low, mapped memory; reading 8 bytes is harmless.
    assert_eq!(unsafe { signature.read_volatile() }, *b"RSD PTR ");
}

fn the_initrd_is_handed_over_as_the_ramdisk() {
    let info = info();
    let address = info.ramdisk_addr.into_option().expect("the runner passes -initrd");
    assert_eq!(info.ramdisk_len, 19 + 5000, "the runner's initrd is 5019 bytes");
    let start = address - physical::offset().as_u64();
    let reserved = info
        .memory_regions
        .iter()
        .any(|r| r.kind == MemoryRegionKind::Bootloader && r.start <= start && start + info.ramdisk_len <= r.end);
    assert!(reserved, "the ramdisk's memory is not handed to the allocator");
    let magic = address as *const [u8; 19];
    // SAFETY: the ramdisk is mapped through the physical map and reserved for it.
    assert_eq!(unsafe { magic.read_volatile() }, *b"dmakit test initrd\n");
}
