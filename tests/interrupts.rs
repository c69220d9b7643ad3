//! Test kernel: exceptions and hardware interrupts.
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use dmakit::arch::{pic, trap};

dmakit::test_kernel!(
    breakpoint_returns,
    timer_interrupts_arrive,
    #[should_panic(expected = "page fault at 0x5eed00000000")]
    page_fault_is_reported,
    harness_continues_after_a_panic,
    #[should_panic(expected = "invalid opcode")]
    invalid_opcode_is_reported,
);

fn breakpoint_returns() {
    let before = trap::BREAKPOINTS.load(Ordering::Relaxed);
    x86_64::instructions::interrupts::int3();
    assert_eq!(trap::BREAKPOINTS.load(Ordering::Relaxed), before + 1);
}

fn timer_interrupts_arrive() {
    let start = pic::ticks();
    // hlt wakes on any interrupt; bounded so a dead timer fails instead of hanging.
    for _ in 0..10_000 {
        if pic::ticks() >= start + 3 {
            break;
        }
        x86_64::instructions::hlt();
    }
    assert!(pic::ticks() >= start + 3, "timer ticks: {} -> {}", start, pic::ticks());
}

fn page_fault_is_reported() {
    let address = 0x5eed_0000_0000_u64 as *const u64;
    // SAFETY: not sound on purpose: the address is unmapped, and the test checks that
    // the page fault is caught and reported (it never returns from this read).
    let value = unsafe { address.read_volatile() };
    panic!("read {value:#x} from an unmapped address without a fault");
}

fn harness_continues_after_a_panic() {
    // Runs on the fresh stack the harness resumed on, with interrupts back on.
    assert!(x86_64::instructions::interrupts::are_enabled());
    let start = pic::ticks();
    while pic::ticks() == start {
        x86_64::instructions::hlt();
    }
}

fn invalid_opcode_is_reported() {
    // SAFETY: ud2 raises #UD, which the kernel reports and turns into a panic.
    unsafe { core::arch::asm!("ud2") };
}
