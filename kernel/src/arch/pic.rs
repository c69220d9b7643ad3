//! The legacy 8259 interrupt controllers (through `pic8259`) and the 8254 timer.
//!
//! The PICs are remapped so IRQ 0-15 arrive at vectors 32-47, clear of the CPU
//! exceptions. The timer (IRQ 0) ticks at [`TIMER_HZ`].

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use pic8259::ChainedPics;
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::instructions::port::Port;

/// Vector of IRQ 0.
pub const FIRST_VECTOR: u64 = 32;
/// One past the vector of IRQ 15.
pub const END_VECTOR: u64 = FIRST_VECTOR + 16;
/// Timer interrupts per second.
pub const TIMER_HZ: u32 = 100;
/// The 8254's input clock.
const PIT_INPUT_HZ: u32 = 1_193_182;

// SAFETY: 32 and 40 are free vectors (above the 32 exceptions) for the two PICs.
static PICS: Mutex<ChainedPics> = Mutex::new(unsafe { ChainedPics::new(32, 40) });
static TICKS: AtomicU64 = AtomicU64::new(0);
static IRQ_COUNTS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// A driver's interrupt handler: runs with interrupts off; must acknowledge its
/// device (so a level-triggered line drops) and return quickly.
pub type IrqHandler = Arc<dyn Fn() + Send + Sync>;

/// Handlers one line can have: PCI interrupt lines are shared (on q35 both
/// virtio disks, the AHCI controller and the SMBus controller share IRQ 10), and
/// each device's handler checks its own device.
const HANDLERS_PER_LINE: usize = 4;

static HANDLERS: Mutex<[[Option<IrqHandler>; HANDLERS_PER_LINE]; 16]> =
    Mutex::new([const { [const { None }; HANDLERS_PER_LINE] }; 16]);

/// Adds `handler` to IRQ `line` (a line is shared: every handler of the line
/// runs on each interrupt) and unmasks the line. Lines 0 (timer) and 2
/// (cascade) belong to the kernel and are refused, as is a fifth handler.
pub fn register_handler(line: u8, handler: IrqHandler) -> bool {
    if line >= 16 || line == 0 || line == 2 {
        return false;
    }
    without_interrupts(|| {
        let mut handlers = HANDLERS.lock();
        let Some(free) = handlers[usize::from(line)].iter_mut().find(|slot| slot.is_none()) else {
            return false;
        };
        *free = Some(handler);
        let mut pics = PICS.lock();
        // SAFETY: reading and writing the PIC mask registers only changes which lines
        // are delivered; every line has an IDT entry.
        unsafe {
            let [master, slave] = pics.read_masks();
            let (master, slave) =
                if line < 8 { (master & !(1 << line), slave) } else { (master, slave & !(1 << (line - 8))) };
            pics.write_masks(master, slave);
        }
        true
    })
}

/// Timer ticks since [`init`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Interrupts seen on IRQ line `line`.
pub fn irq_count(line: u8) -> u64 {
    IRQ_COUNTS[usize::from(line & 15)].load(Ordering::Relaxed)
}

/// Remaps and unmasks the PICs (timer and cascade only) and starts the timer.
pub fn init() {
    let mut pics = PICS.lock();
    // SAFETY: the PIC ports are the legacy ones every PC has; the new vectors do not
    // collide with exceptions, and the IDT has entries for all of them.
    unsafe {
        pics.initialize();
        // Bit set = masked. Unmask IRQ 0 (timer) and IRQ 2 (the cascade).
        pics.write_masks(!0b0000_0101, 0xff);
    }
    let divisor = (PIT_INPUT_HZ / TIMER_HZ) as u16;
    // SAFETY: programming channel 0 of the PIT: mode 3 (square wave), low then high
    // byte of the divisor. No other code owns the PIT.
    unsafe {
        Port::<u8>::new(0x43).write(0x36);
        let mut data = Port::<u8>::new(0x40);
        data.write(divisor as u8);
        data.write((divisor >> 8) as u8);
    }
}

/// Handles IRQ vector `vector` and acknowledges it.
pub(super) fn handle(vector: u8) {
    let line = vector - FIRST_VECTOR as u8;
    IRQ_COUNTS[usize::from(line)].fetch_add(1, Ordering::Relaxed);
    if line == 0 {
        TICKS.fetch_add(1, Ordering::Relaxed);
    } else {
        // Clones (no allocation) so that no lock is held while handlers run.
        let handlers = HANDLERS.lock()[usize::from(line)].clone();
        for handler in handlers.iter().flatten() {
            handler();
        }
    }
    // SAFETY: `vector` is the PIC interrupt being handled now.
    unsafe { PICS.lock().notify_end_of_interrupt(vector) };
}
