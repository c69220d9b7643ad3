//! I/O port ranges the kernel hands out one owner at a time: claiming one is
//! the only unsafe step, and every access stays inside the range.

use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use x86_64::instructions::port::Port;

use super::register::RegisterIo;
use crate::dma::IoReturn;

/// Ports the kernel itself drives: never handed to a driver.
const KERNEL_PORTS: [(u16, u16); 6] = [
    (0x20, 2),  // master PIC
    (0xa0, 2),  // slave PIC
    (0x40, 4),  // PIT
    (0x3f8, 8), // COM1
    (0xcf8, 8), // PCI configuration mechanism #1
    (0xf4, 4),  // QEMU isa-debug-exit
];

static CLAIMED: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());

/// An exclusive range of I/O ports `[base, base + size)`.
pub struct PortRange {
    base: u16,
    size: u16,
}

impl fmt::Debug for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ports {:#x}-{:#x}", self.base, u32::from(self.base) + u32::from(self.size) - 1)
    }
}

fn overlaps(a: (u16, u16), b: (u16, u16)) -> bool {
    let (a_start, a_end) = (u32::from(a.0), u32::from(a.0) + u32::from(a.1));
    let (b_start, b_end) = (u32::from(b.0), u32::from(b.0) + u32::from(b.1));
    a_start < b_end && b_start < a_end
}

/// Claims `[base, base + size)` for one owner. `Busy` if any of it is claimed
/// already or belongs to the kernel; `BadArgument` if it wraps or is empty.
///
/// # Safety
/// The ports must belong to a device the caller drives (a PCI I/O BAR, or the
/// fixed ports of a legacy device the caller matched): writing arbitrary ports
/// can reset the machine or make a device overwrite memory. Drivers get their
/// ranges through the PCI layer's safe `claim_io_bar`/`claim_legacy_ide`.
pub unsafe fn claim_ports(base: u16, size: u16) -> Result<PortRange, IoReturn> {
    if size == 0 || base.checked_add(size - 1).is_none() {
        return Err(IoReturn::BadArgument);
    }
    let wanted = (base, size);
    let mut claimed = CLAIMED.lock();
    if KERNEL_PORTS.iter().chain(claimed.iter()).any(|&range| overlaps(range, wanted)) {
        return Err(IoReturn::Busy);
    }
    claimed.push(wanted);
    Ok(PortRange { base, size })
}

impl Drop for PortRange {
    fn drop(&mut self) {
        CLAIMED.lock().retain(|&range| range != (self.base, self.size));
    }
}

impl PortRange {
    /// The first port.
    pub fn base(&self) -> u16 {
        self.base
    }

    fn port(&self, offset: u16, width: u16) -> u16 {
        assert!(
            offset.checked_add(width).is_some_and(|end| end <= self.size),
            "register offset {offset:#x} outside {self:?}"
        );
        self.base + offset
    }
}

// SAFETY (all accesses below): the range was claimed exclusively for this owner
// and lies outside the kernel's own ports, so a read or write reaches only the
// device the owner drives; `port` keeps every access inside the range.
impl RegisterIo for PortRange {
    fn read8(&self, offset: u16) -> u8 {
        // SAFETY: see the impl comment.
        unsafe { Port::<u8>::new(self.port(offset, 1)).read() }
    }
    fn read16(&self, offset: u16) -> u16 {
        // SAFETY: see the impl comment.
        unsafe { Port::<u16>::new(self.port(offset, 2)).read() }
    }
    fn read32(&self, offset: u16) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { Port::<u32>::new(self.port(offset, 4)).read() }
    }
    fn write8(&self, offset: u16, value: u8) {
        // SAFETY: see the impl comment.
        unsafe { Port::<u8>::new(self.port(offset, 1)).write(value) }
    }
    fn write16(&self, offset: u16, value: u16) {
        // SAFETY: see the impl comment.
        unsafe { Port::<u16>::new(self.port(offset, 2)).write(value) }
    }
    fn write32(&self, offset: u16, value: u32) {
        // SAFETY: see the impl comment.
        unsafe { Port::<u32>::new(self.port(offset, 4)).write(value) }
    }
}
