//! The bootable dmakit kernel that `make run` starts: banner, memory map and
//! allocator state, the driver registry, the first sector of each disk, one
//! narrated bounced transfer, then the shell. With `bench` on the command line
//! it runs the benchmark instead and powers off.
#![no_std]
#![no_main]

extern crate alloc;

use dmakit::arch::pic;
use dmakit::arch::qemu::{ExitCode, exit};
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{DmaBuffer, IoDirection};
use dmakit::memory::{Constraints, heap, physical};
use dmakit::shell;
use dmakit::{boot_info, driver, println};

bootloader_api::entry_point!(kernel_main, config = &dmakit::BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut bootloader_api::BootInfo) -> ! {
    println!("\ndmakit {} - a teaching kernel for DMA", dmakit::VERSION);
    if let Err(error) = dmakit::init(boot_info) {
        panic!("kernel initialisation failed: {error}");
    }
    println!("command line: {:?}", dmakit::boot::command_line());
    boot_info::print_memory_map();
    print_allocator();
    driver::attach(&dmakit_drivers::all());
    println!("Registry:");
    driver::print_registry();
    read_first_sectors();
    if dmakit::boot::command_line().split_whitespace().any(|word| word == "bench") {
        dmakit::bench::full();
        exit(ExitCode::Success);
    }
    shell::narrate_one_transfer();
    start_network();
    println!();
    println!("dmakit is up (timer {} Hz). Type help; poweroff or Ctrl-A X leaves QEMU.", pic::TIMER_HZ);
    shell::run(&mut shell::SerialInput);
    // The input ended (a piped script): leave QEMU cleanly.
    exit(ExitCode::Success);
}

/// The TCP/IP stack on the first network interface, if there is one.
fn start_network() {
    if let Some(address) = dmakit::net::stack::start(shell::reports::report) {
        let [a, b, c, d] = address.address;
        println!(
            "Network: {a}.{b}.{c}.{d}/{}: UDP and TCP echo on port {}, a report (net, stats) on TCP port {}",
            address.prefix,
            dmakit::net::stack::ECHO_PORT,
            dmakit::net::stack::STATS_PORT
        );
    }
}

fn print_allocator() {
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
}

fn read_first_sectors() {
    for (name, disk) in driver::block_devices() {
        let mut buffer = match DmaBuffer::allocate(platform(), 512, IoDirection::In, Constraints::NONE) {
            Ok(buffer) => buffer,
            Err(error) => {
                println!("{name}: no buffer: {error}");
                continue;
            }
        };
        let mut first = [0u8; 16];
        let result = disk.read(0, 1, &mut buffer, 0).and_then(|()| buffer.read_bytes(0, &mut first));
        match result {
            Ok(_) => println!("{name}: sector 0 begins {first:02x?}"),
            Err(error) => println!("{name}: reading sector 0 failed: {error}"),
        }
    }
}
