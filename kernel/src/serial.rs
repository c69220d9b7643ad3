//! The serial console on COM1 (`uart_16550`), and `print!`/`println!`.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};
use x86_64::instructions::interrupts::without_interrupts;

/// The first serial port's I/O base.
const COM1: u16 = 0x3f8;

/// `None` until first use: the console initialises itself, so even a panic in the
/// boot code can print.
static CONSOLE: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);

fn write_to(console: &mut Option<Uart16550Tty<PioBackend>>, arguments: fmt::Arguments) {
    if console.is_none() {
        // SAFETY: COM1 is the standard PC serial port; this module is its only user.
        *console = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.ok();
    }
    if let Some(uart) = console {
        // A console has nowhere to report its own failure.
        let _ = uart.write_fmt(arguments);
    }
}

/// When `Some`, everything printed is also kept here (for tests of the shell).
static CAPTURE: Mutex<Option<alloc::string::String>> = Mutex::new(None);

/// Writes formatted text to the console (what `print!` calls).
pub fn print(arguments: fmt::Arguments) {
    without_interrupts(|| {
        write_to(&mut CONSOLE.lock(), arguments);
        if let Some(capture) = CAPTURE.lock().as_mut() {
            // Writing to a String cannot fail.
            let _ = capture.write_fmt(arguments);
        }
    });
}

/// Starts keeping a copy of everything printed.
pub fn start_capture() {
    without_interrupts(|| *CAPTURE.lock() = Some(alloc::string::String::new()));
}

/// Stops keeping a copy and returns what was printed since `start_capture`.
pub fn take_capture() -> alloc::string::String {
    without_interrupts(|| CAPTURE.lock().take().unwrap_or_default())
}

/// Writes even if the console lock is held: for panics and fatal exceptions, where
/// the holder will never run again.
pub fn emergency_print(arguments: fmt::Arguments) {
    without_interrupts(|| {
        if CONSOLE.is_locked() {
            // SAFETY: called only on the way to a panic on this single CPU: whoever
            // holds the lock was interrupted for good and will not touch the port again.
            unsafe { CONSOLE.force_unlock() };
        }
        write_to(&mut CONSOLE.lock(), arguments);
    });
}

/// One byte from the console's input, if one has arrived.
pub fn try_read_byte() -> Option<u8> {
    without_interrupts(|| {
        let mut console = CONSOLE.lock();
        console.as_mut()?.inner_mut().try_receive_byte().ok()
    })
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => { $crate::serial::print(format_args!($($argument)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($argument:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($argument)*))) };
}
