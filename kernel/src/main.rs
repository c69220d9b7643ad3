//! The bootable dmakit kernel that `make run` starts: banner, memory map, allocator
//! state, then it idles with interrupts on.
#![no_std]
#![no_main]

use dmakit::arch::pic;
use dmakit::memory::{heap, physical};
use dmakit::{boot_info, println};

bootloader_api::entry_point!(kernel_main, config = &dmakit::BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut bootloader_api::BootInfo) -> ! {
    println!("\ndmakit {} - a teaching kernel for DMA", dmakit::VERSION);
    if let Err(error) = dmakit::init(boot_info) {
        panic!("kernel initialisation failed: {error}");
    }
    println!("command line: {:?}", dmakit::boot::command_line());
    boot_info::print_memory_map();
    println!("Frame allocator:");
    for zone in physical::zone_stats().into_iter().flatten() {
        println!(
            "  zone {:<6} {:>8} frames ({:>5} MiB), {:>8} free",
            zone.kind.name(),
            zone.total,
            (zone.total * 4096) >> 20,
            zone.free
        );
    }
    let (used, free) = heap::usage();
    println!("Heap: {} KiB used, {} KiB free", used / 1024, free / 1024);
    println!(
        "Timer: {} Hz; dmakit is up. Leave QEMU with Ctrl-A then X.",
        pic::TIMER_HZ
    );
    loop {
        x86_64::instructions::hlt();
    }
}
