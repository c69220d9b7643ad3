//! The serial console on COM1 (`uart_16550`), and `print!`/`println!`.
//!
//! Input comes by COM1's receive interrupt (IRQ 4) into a ring the shell reads
//! ([`crate::input_ring`]): the UART's FIFO holds only 16 bytes, and read only
//! when the shell looked (once per 10 ms timer tick when idle), a pasted line
//! came in at some 1600 bytes a second.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{Config, Uart16550Tty};
use x86_64::instructions::interrupts::without_interrupts;

use crate::input_ring::{CONSOLE_RING_BYTES, InputRing, Received};

/// The first serial port's I/O base.
const COM1: u16 = 0x3f8;
/// COM1's interrupt line on the legacy PIC.
const COM1_IRQ: u8 = 4;

/// The bytes received and not read yet. Its producer is [`drain_receiver`],
/// which runs only with interrupts off (in the interrupt handler, or in
/// [`read_input`]): on this one CPU, never two at once.
static RECEIVED: InputRing<CONSOLE_RING_BYTES> = InputRing::new();

/// Set once IRQ 4 reaches [`receive_interrupt`]: the shell need not look at the
/// UART on every read, and a console initialised after that (its first set-up
/// failed) enables the receive interrupt too.
static INPUT_ROUTED: AtomicBool = AtomicBool::new(false);

/// The timer tick at which [`read_input`] last looked at the UART itself.
static LAST_LOOK: AtomicU64 = AtomicU64::new(u64::MAX);

/// `None` until first use: the console initialises itself, so even a panic in the
/// boot code can print.
static CONSOLE: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);

/// The console, set up on first use (which also discards whatever the UART
/// had received before: the crate's initialisation resets the FIFOs).
fn console_of(console: &mut Option<Uart16550Tty<PioBackend>>) -> Option<&mut Uart16550Tty<PioBackend>> {
    if console.is_none() {
        let interrupts = match INPUT_ROUTED.load(Ordering::Relaxed) {
            true => IER::DATA_READY,
            false => IER::empty(),
        };
        let config = Config { interrupts, ..Config::default() };
        // SAFETY: COM1 is the standard PC serial port; this module is its only user.
        *console = unsafe { Uart16550Tty::new_port(COM1, config) }.ok();
    }
    console.as_mut()
}

fn write_to(console: &mut Option<Uart16550Tty<PioBackend>>, arguments: fmt::Arguments) {
    if let Some(uart) = console_of(console) {
        // A console has nowhere to report its own failure.
        let _ = uart.write_fmt(arguments);
    }
}

/// Moves every byte the UART holds into [`RECEIVED`] (a full ring drops and
/// counts them). Interrupts must be off. The UART's FIFO is emptied every time:
/// its interrupt line stays up until it is, and the PIC, edge-triggered, would
/// not see a new interrupt while it does.
fn drain_receiver(console: &mut Option<Uart16550Tty<PioBackend>>) {
    let Some(uart) = console.as_mut() else { return };
    // Bounded all the same: a port that always says "data ready" must not
    // keep the CPU here for ever.
    for _ in 0..CONSOLE_RING_BYTES + 16 {
        let Ok(byte) = uart.inner_mut().try_receive_byte() else { return };
        RECEIVED.push(byte);
    }
}

/// IRQ 4: COM1 received bytes (or its FIFO held some for 4 characters' time).
fn receive_interrupt() {
    // Interrupt handlers run with interrupts off, and every other user of the
    // console holds its lock with interrupts off too: on this one CPU, the
    // lock is always free here.
    drain_receiver(&mut CONSOLE.lock());
}

/// Takes console input by COM1's receive interrupt from now on. Called as soon
/// as the PICs are remapped: before that, IRQ 4 would arrive at the vector of a
/// CPU exception. Bytes typed earlier wait in the UART's FIFO (16 bytes) and
/// are taken at once.
pub fn enable_input_interrupt() {
    let routed = crate::arch::pic::register_handler(COM1_IRQ, alloc::sync::Arc::new(receive_interrupt));
    INPUT_ROUTED.store(routed, Ordering::Relaxed);
    without_interrupts(|| {
        let mut console = CONSOLE.lock();
        if let Some(uart) = console_of(&mut console) {
            uart.inner_mut().enable_interrupts(IER::DATA_READY);
        }
        // The interrupt for bytes already there may have been raised before
        // the line was unmasked: take them now rather than wait for more.
        drain_receiver(&mut console);
    });
    if !routed {
        log::warn!("serial: IRQ {COM1_IRQ} could not be routed; console input is read when the shell looks");
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

/// One byte from the console's input, if one has arrived, and whether bytes
/// were dropped just before it.
pub fn read_input() -> Option<Received> {
    without_interrupts(|| {
        // Looks at the UART itself only when its interrupt is not routed, and
        // otherwise once per timer tick, so input still arrives from a UART
        // that never raises it. Not on every call: each look is port I/O, which
        // under QEMU takes its global lock, and the shell's idle loop calls this
        // between network polls (it was a fifth of a busy TCP echo's time).
        // With interrupts off this is never at the same time as the handler, so
        // the ring keeps one producer at a time, and the bytes their order.
        let tick = crate::arch::pic::ticks();
        if !INPUT_ROUTED.load(Ordering::Relaxed) || LAST_LOOK.swap(tick, Ordering::Relaxed) != tick {
            drain_receiver(&mut CONSOLE.lock());
        }
        RECEIVED.pop()
    })
}

/// Whether input is waiting in the ring: news for a shell about to sleep.
pub fn input_waiting() -> bool {
    !RECEIVED.is_empty()
}

/// Input bytes dropped since boot because the ring was full.
pub fn dropped_input_bytes() -> u64 {
    RECEIVED.dropped()
}

/// The bytes of input the ring holds at most.
pub const INPUT_RING_BYTES: usize = CONSOLE_RING_BYTES;

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
