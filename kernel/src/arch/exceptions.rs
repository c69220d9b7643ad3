//! The 32 CPU exception vectors: names, which push an error code, and the report
//! printed before a fatal exception panics.

use super::trap::TrapFrame;

/// Vector of the breakpoint exception (`int3`).
pub const BREAKPOINT: u64 = 3;
/// Vector of the page fault.
pub const PAGE_FAULT: u64 = 14;

/// The exception's name, as the Intel SDM gives it.
pub const fn name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt (NMI)",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point (#XM)",
        20 => "virtualization (#VE)",
        21 => "control protection (#CP)",
        28 => "hypervisor injection (#HV)",
        29 => "VMM communication (#VC)",
        30 => "security (#SX)",
        _ => "reserved exception",
    }
}

/// Whether the CPU pushes an error code for this vector.
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Prints the exception report and panics with a one-line summary, which the test
/// harness treats like any other panic.
pub fn fatal(frame: &TrapFrame) -> ! {
    let vector = frame.vector;
    crate::serial::emergency_print(format_args!(
        "\nEXCEPTION: {} (vector {vector})\n  error code: {:#x}\n  rip: {:#018x}  cs: {:#x}  rflags: {:#x}\n  rsp: {:#018x}  ss: {:#x}\n",
        name(vector),
        frame.error_code,
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss
    ));
    if vector == PAGE_FAULT {
        let address = x86_64::registers::control::Cr2::read_raw();
        crate::serial::emergency_print(format_args!(
            "  cr2 (faulting address): {address:#018x}\n  cause: {}\n",
            page_fault_cause(frame.error_code)
        ));
        panic!("page fault at {address:#x} (rip {:#x}, error {:#x})", frame.rip, frame.error_code);
    }
    panic!("{} at rip {:#x}, error code {:#x}", name(vector), frame.rip, frame.error_code);
}

/// The page-fault error code in words.
fn page_fault_cause(error: u64) -> &'static str {
    match (error & 1 != 0, error & 2 != 0, error & 16 != 0) {
        (false, _, true) => "instruction fetch from a non-present page",
        (false, false, false) => "read of a non-present page",
        (false, true, false) => "write to a non-present page",
        (true, _, true) => "instruction fetch from a no-execute page",
        (true, true, false) => "write to a read-only page",
        (true, false, false) => "read violating protection",
    }
}
