//! Bringing the kernel up, in dependency order.

use core::fmt;

use bootloader_api::BootInfo;

use crate::arch::{gdt, idt, pic};
use crate::memory::{MemoryError, heap, paging, physical};
use crate::{boot_info, logger};

/// Why the kernel could not start.
#[derive(Debug)]
pub enum InitError {
    /// The boot code did not map physical memory (the kernel's config asks it to).
    NoPhysicalMemoryMapping,
    /// Setting up memory failed.
    Memory(MemoryError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NoPhysicalMemoryMapping => f.write_str("boot info has no physical memory offset"),
            InitError::Memory(error) => write!(f, "memory set-up failed: {error}"),
        }
    }
}

impl From<MemoryError> for InitError {
    fn from(error: MemoryError) -> Self {
        InitError::Memory(error)
    }
}

/// Initialises the kernel: logger, GDT/TSS, IDT, frame allocator, paging, heap,
/// interrupt controller and timer, the serial console's receive interrupt;
/// then enables interrupts.
pub fn init(boot_info: &'static mut BootInfo) -> Result<(), InitError> {
    let boot_info: &'static BootInfo = boot_info;
    let command_line = crate::boot::command_line();
    let level = logger::level_option(command_line);
    logger::init(level.level());
    // A value the kernel does not know is said out loud, with what is in force
    // instead, like `dma.bounce_pages=`: a silent default hides a typo.
    if let logger::LevelOption::NotALevel(value) = level {
        log::warn!("log={value}: not a level (off, error, warn, info, debug, trace); the level stays info");
    }
    crate::dma::trace::set_sink(|arguments| crate::println!("{arguments}"));
    // The DMA debugging mode is on unless the command line says `dma.debug=off`.
    let debug = logger::dma_debug_option(command_line);
    if let logger::DmaDebugOption::NotOnOrOff(value) = debug {
        log::warn!("dma.debug={value}: not `on` or `off`; DMA debugging stays on");
    }
    let accounting = crate::dma::DmaPlatform::accounting(crate::dma::kernel_platform::platform());
    accounting.set_debug(debug != logger::DmaDebugOption::Off);
    gdt::init();
    idt::init();
    let offset = boot_info.physical_memory_offset.into_option().ok_or(InitError::NoPhysicalMemoryMapping)?;
    physical::init(&boot_info.memory_regions, offset)?;
    boot_info::init(boot_info);
    paging::init();
    heap::init()?;
    // `dma.bounce_pages=N` shrinks (or grows) the bounce budget, so that
    // deferred loads can be seen with a few requests in flight. A bad value is
    // refused out loud: the log says what is in force instead. After the heap
    // (the log line is a String), before any DMA memory exists.
    let budget = crate::dma::bounce_pages_option(command_line);
    let report = crate::dma::bounce_pages_report(budget, crate::dma::kernel_platform::DEFAULT_BOUNCE_PAGES);
    match (budget, report) {
        (crate::dma::BouncePagesOption::Taken(pages), Some(line)) => {
            accounting.set_page_limit(pages);
            log::info!("{line}");
        }
        (crate::dma::BouncePagesOption::Rejected { .. }, Some(line)) => log::warn!("{line}"),
        _ => {}
    }
    // `dma.coherence=noncoherent` plays a machine whose DMA does not snoop the
    // CPU's caches (see `dma/kernel_platform.rs`); before any DMA memory exists.
    let coherence = crate::command_line::option(command_line, "dma.coherence");
    match coherence {
        Some("noncoherent") => {
            crate::dma::kernel_platform::play_noncoherent();
            log::info!("DMA: playing a machine whose DMA does not snoop the CPU's caches (dma.coherence=noncoherent)");
        }
        None | Some("coherent") => {}
        Some(other) => log::warn!("dma.coherence={other}: not `coherent` or `noncoherent`; DMA stays coherent"),
    }
    pic::init();
    // As early as the PIC allows: typed input waits in the UART's 16-byte FIFO
    // until then.
    crate::serial::enable_input_interrupt();
    x86_64::instructions::interrupts::enable();
    Ok(())
}
