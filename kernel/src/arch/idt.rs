//! The IDT: every exception vector `x86_64` lets us set, and the 16 legacy IRQs,
//! all pointing at the naked stubs of [`super::trap`].
//!
//! The `x86_64` crate keeps the reserved vectors (15, 22-27, 31) private; the CPU
//! never raises them, so they stay empty.

use spin::LazyLock;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use super::gdt::{DOUBLE_FAULT_IST, MACHINE_CHECK_IST, NMI_IST};
use super::pic;
use super::trap::STUBS;

fn stub(vector: usize) -> VirtAddr {
    VirtAddr::new(STUBS[vector] as usize as u64)
}

static IDT: LazyLock<InterruptDescriptorTable> = LazyLock::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: for every set_handler_addr below, the stub is a naked trap entry that
    // builds a TrapFrame and ends in iretq, valid for its vector; the IST indices
    // name stacks the TSS provides.
    unsafe {
        idt.divide_error.set_handler_addr(stub(0));
        idt.debug.set_handler_addr(stub(1));
        idt.non_maskable_interrupt.set_handler_addr(stub(2)).set_stack_index(NMI_IST);
        idt.breakpoint.set_handler_addr(stub(3));
        idt.overflow.set_handler_addr(stub(4));
        idt.bound_range_exceeded.set_handler_addr(stub(5));
        idt.invalid_opcode.set_handler_addr(stub(6));
        idt.device_not_available.set_handler_addr(stub(7));
        idt.double_fault.set_handler_addr(stub(8)).set_stack_index(DOUBLE_FAULT_IST);
        idt[9].set_handler_addr(stub(9));
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.x87_floating_point.set_handler_addr(stub(16));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check.set_handler_addr(stub(18)).set_stack_index(MACHINE_CHECK_IST);
        idt.simd_floating_point.set_handler_addr(stub(19));
        idt.virtualization.set_handler_addr(stub(20));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.hv_injection_exception.set_handler_addr(stub(28));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
        for vector in pic::FIRST_VECTOR..pic::END_VECTOR {
            idt[vector as u8].set_handler_addr(stub(vector as usize));
        }
    }
    idt
});

/// Loads the IDT.
pub fn init() {
    IDT.load();
}
