//! The kernel's GDT and TSS, with separate interrupt stacks (IST) for the
//! exceptions that may strike when the current stack cannot be trusted.

use spin::LazyLock;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot of the double-fault stack (a kernel stack overflow lands here).
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI stack.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check stack.
pub const MACHINE_CHECK_IST: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

// Written only by the CPU when it switches to them; Rust only takes their address.
static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];

static TSS: LazyLock<TaskStateSegment> = LazyLock::new(|| {
    let mut tss = TaskStateSegment::new();
    for (slot, index) in [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST].into_iter().enumerate() {
        // Taking the address of a `static mut` creates no reference.
        let bottom = VirtAddr::from_ptr(&raw const IST_STACKS) + (slot * IST_STACK_SIZE) as u64;
        tss.interrupt_stack_table[usize::from(index)] = bottom + IST_STACK_SIZE as u64;
    }
    tss
});

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: LazyLock<Gdt> = LazyLock::new(|| {
    let mut table = GlobalDescriptorTable::new();
    let code = table.append(Descriptor::kernel_code_segment());
    let data = table.append(Descriptor::kernel_data_segment());
    let tss = table.append(Descriptor::tss_segment(&TSS));
    Gdt { table, code, data, tss }
});

/// Loads the GDT, reloads the segment registers and loads the TSS.
pub fn init() {
    GDT.table.load();
    // SAFETY: the selectors index the descriptors just loaded: a 64-bit code segment,
    // a data segment and an available TSS.
    unsafe {
        CS::set_reg(GDT.code);
        SS::set_reg(GDT.data);
        DS::set_reg(GDT.data);
        ES::set_reg(GDT.data);
        load_tss(GDT.tss);
    }
}
