//! Leaving QEMU through the `isa-debug-exit` device (port 0xf4).
//!
//! Writing `v` makes QEMU exit with status `(v << 1) | 1`: success (0x10) gives 33,
//! failure (0x11) gives 35. The runner maps 33 to 0. Without the device the write
//! is ignored and the CPU halts.

use x86_64::instructions::port::Port;

/// The `iobase` given to `-device isa-debug-exit`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the kernel tells QEMU on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything passed: QEMU exits with 33.
    Success = 0x10,
    /// Something failed: QEMU exits with 35.
    Failure = 0x11,
}

/// Asks QEMU to exit, then halts: under TCG the exit is not immediate.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device or nothing; writing it has no other effect.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    halt_forever()
}

/// Halts with interrupts off, for ever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
