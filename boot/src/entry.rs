//! The PVH entry point: the Xen ELF note and the 32-bit trampoline into long mode.
//!
//! QEMU's `-kernel` loader reads the `XEN_ELFNOTE_PHYS32_ENTRY` note, loads every
//! segment at its physical address and jumps to `pvh_start32` in 32-bit protected
//! mode with paging off and `%ebx` holding the physical address of
//! `struct hvm_start_info`. The trampoline below
//! 1. clears `.bss` through its physical addresses (paging is still off),
//! 2. builds the boot page tables: the first GiB identity-mapped (so this code keeps
//!    running when paging turns on) and the same GiB again at `KERNEL_VMA`, where the
//!    kernel is linked, both with 2 MiB pages,
//! 3. turns on PAE, long mode and no-execute in EFER, then paging,
//! 4. far-returns into a 64-bit code segment, sets a stack in the higher half and
//!    calls [`crate::handoff::boot_main`] with the start-info address.

use core::arch::global_asm;

/// Where the kernel is linked: the top 2 GiB of the address space, which is what
/// `-C code-model=kernel` requires. Physical address `p` is at `KERNEL_VMA + p`.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// The bytes of the stack the boot code runs on before the kernel's own stack exists.
pub(crate) const BOOT_STACK_SIZE: usize = 16 * 1024;

// The note's descriptor is 8 bytes: QEMU 7.2 reads it as a size_t for ELF64.
global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                         /* name size: "Xen\0" */
    .long 8                         /* descriptor size */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .boot.data, "aw", @progbits
    .p2align 12
boot_pml4:      .zero 4096
boot_pdpt_low:  .zero 4096
boot_pdpt_high: .zero 4096
boot_pd:        .zero 4096
    .p2align 3
boot_gdt:
    .quad 0                         /* null descriptor */
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit kernel code */
    .quad 0x00cf92000000ffff        /* 0x10: kernel data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                    /* keep the hvm_start_info address */

    /* Clear .bss through physical addresses: paging is off. */
    mov edi, offset __bss_start_phys
    mov ecx, offset __bss_end_phys
    sub ecx, edi
    xor eax, eax
    rep stosb

    /* PML4[0] -> low PDPT, PML4[511] -> high PDPT; both lead to one PD. */
    mov eax, offset boot_pdpt_low
    or eax, 3                       /* present | writable */
    mov [boot_pml4], eax
    mov eax, offset boot_pdpt_high
    or eax, 3
    mov [boot_pml4 + 511 * 8], eax
    mov eax, offset boot_pd
    or eax, 3
    mov [boot_pdpt_low], eax
    mov [boot_pdpt_high + 510 * 8], eax   /* KERNEL_VMA is PML4 511, PDPT 510 */

    /* PD[i] maps i * 2 MiB: 512 large pages cover the first GiB. */
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                    /* present | writable | huge */
    mov [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jne 1b

    mov eax, cr4
    or eax, 1 << 5                  /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080             /* IA32_EFER */
    rdmsr
    or eax, (1 << 8) | (1 << 11)    /* long mode enable | no-execute enable */
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1   /* paging | write protect | protected mode */
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    push 0x08
    mov eax, offset pvh_start64
    push eax
    retf

    .code64
pvh_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    movabs rsp, offset {boot_stack} + {boot_stack_size}
    xor ebp, ebp
    mov edi, esi                    /* first argument: hvm_start_info physical address */
    movabs rax, offset {boot_main}
    call rax
2:
    hlt
    jmp 2b
    "#,
    boot_stack = sym BOOT_STACK,
    boot_stack_size = const BOOT_STACK_SIZE,
    boot_main = sym crate::handoff::boot_main,
);

/// The boot stack, in `.bss` (cleared by the trampoline before first use).
#[repr(C, align(16))]
pub(crate) struct BootStack([u8; BOOT_STACK_SIZE]);

/// Only the trampoline touches it, through its address.
pub(crate) static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

/// Where `dmakit.ld` places the first byte of the image (the boot segment).
const IMAGE_PHYSICAL_START: u64 = 0x10_0000;

unsafe extern "C" {
    // Symbols from `dmakit.ld`: only their addresses matter. All of them lie in the
    // higher half, so code-model=kernel can address them.
    static __bss_end: u8;
    static __bootloader_config_start: u8;
    static __bootloader_config_end: u8;
}

/// The physical range `[start, end)` of the whole image: boot segment, kernel, `.bss`.
pub(crate) fn image_physical_range() -> (u64, u64) {
    let end = &raw const __bss_end as u64 - KERNEL_VMA;
    (IMAGE_PHYSICAL_START, end)
}

/// The serialized `BootloaderConfig` the kernel's `entry_point!` put in its section.
pub(crate) fn bootloader_config_bytes() -> &'static [u8] {
    let start = &raw const __bootloader_config_start;
    let end = &raw const __bootloader_config_end;
    let length = end as usize - start as usize;
    // SAFETY: the linker script brackets the `.bootloader-config` output section with
    // these two symbols, so `[start, end)` is initialised, immutable data of the image.
    unsafe { core::slice::from_raw_parts(start, length) }
}
