//! x86_64 machine set-up: segments, traps and interrupts, the legacy interrupt
//! controller and timer, and the QEMU exit device.

pub mod exceptions;
pub mod gdt;
pub mod idt;
pub mod pic;
pub mod qemu;
pub mod trap;
