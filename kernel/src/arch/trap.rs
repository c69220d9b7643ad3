//! Trap entry: one small naked stub per vector, one common path that saves the
//! registers, and [`trap_dispatch`] in Rust.
//!
//! Stable Rust has no `extern "x86-interrupt"`, so the entry is written with
//! `#[unsafe(naked)]` functions. Every stub makes the stack look the same: the CPU
//! pushes SS, RSP, RFLAGS, CS, RIP (and, for some exceptions, an error code); the
//! stub pushes a zero error code where the CPU did not, then the vector number, and
//! jumps to [`trap_common`], which pushes the 15 general registers. The result is a
//! [`TrapFrame`] at RSP, 16-byte aligned for the call into Rust.

use core::arch::naked_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{exceptions, pic};

/// The registers saved on trap entry, lowest address first.
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs, reason = "register names speak for themselves")]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU, or a zero pushed by the stub.
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);

/// How many breakpoints (`int3`) have been handled.
pub static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// Called by [`trap_common`] with the saved frame.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        exceptions::BREAKPOINT => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            log::debug!("breakpoint at {:#x}", frame.rip);
        }
        0..32 => exceptions::fatal(frame),
        vector @ pic::FIRST_VECTOR..pic::END_VECTOR => pic::handle(vector as u8),
        vector => log::warn!("unexpected trap vector {vector}"),
    }
}

#[unsafe(naked)]
extern "C" fn trap_common() {
    naked_asm!(
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",                  // vector and error code
        "iretq",
        dispatch = sym trap_dispatch,
    );
}

/// Defines a stub per vector and the table of their addresses.
macro_rules! stubs {
    ($($vector:literal => $name:ident),* $(,)?) => {
        $(
            #[unsafe(naked)]
            extern "C" fn $name() {
                naked_asm!(
                    ".if {has_error_code} == 0",
                    "push 0",
                    ".endif",
                    "push {vector}",
                    "jmp {common}",
                    has_error_code = const exceptions::has_error_code($vector) as u8,
                    vector = const $vector,
                    common = sym trap_common,
                );
            }
        )*
        /// The entry stub of each vector from 0 to 47, by vector.
        pub(super) const STUBS: [extern "C" fn(); 48] = [$($name),*];
    };
}

stubs!(
    0 => stub_0, 1 => stub_1, 2 => stub_2, 3 => stub_3, 4 => stub_4, 5 => stub_5, 6 => stub_6,
    7 => stub_7, 8 => stub_8, 9 => stub_9, 10 => stub_10, 11 => stub_11, 12 => stub_12,
    13 => stub_13, 14 => stub_14, 15 => stub_15, 16 => stub_16, 17 => stub_17, 18 => stub_18,
    19 => stub_19, 20 => stub_20, 21 => stub_21, 22 => stub_22, 23 => stub_23, 24 => stub_24,
    25 => stub_25, 26 => stub_26, 27 => stub_27, 28 => stub_28, 29 => stub_29, 30 => stub_30,
    31 => stub_31, 32 => stub_32, 33 => stub_33, 34 => stub_34, 35 => stub_35, 36 => stub_36,
    37 => stub_37, 38 => stub_38, 39 => stub_39, 40 => stub_40, 41 => stub_41, 42 => stub_42,
    43 => stub_43, 44 => stub_44, 45 => stub_45, 46 => stub_46, 47 => stub_47,
);
