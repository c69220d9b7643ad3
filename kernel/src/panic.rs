//! The panic handler: hand the panic to the test harness when tests run, else
//! report it and leave QEMU with a failure status.

use core::panic::PanicInfo;

use crate::arch::qemu::{ExitCode, exit};

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if crate::testing::is_running() {
        crate::testing::on_panic(info);
    }
    crate::serial::emergency_print(format_args!("\nKERNEL PANIC: {info}\n"));
    exit(ExitCode::Failure)
}
