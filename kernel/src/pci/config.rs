//! Configuration mechanism #1: write the address to port 0xcf8, move data at 0xcfc.

use pci_types::{ConfigRegionAccess, PciAddress};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::instructions::port::Port;

/// The address/data port pair is one shared resource: one access at a time.
static LOCK: Mutex<()> = Mutex::new(());

/// Configuration space through ports 0xcf8/0xcfc (segment 0 only).
#[derive(Clone, Copy, Debug)]
pub struct PortConfigAccess;

fn address_word(address: PciAddress, offset: u16) -> u32 {
    0x8000_0000
        | u32::from(address.bus()) << 16
        | u32::from(address.device()) << 11
        | u32::from(address.function()) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigRegionAccess for PortConfigAccess {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        without_interrupts(|| {
            let _guard = LOCK.lock();
            // SAFETY: 0xcf8/0xcfc are the PCI configuration ports, owned by this
            // module and serialised by the lock; the caller vouches for the address.
            unsafe {
                Port::<u32>::new(0xcf8).write(address_word(address, offset));
                Port::<u32>::new(0xcfc).read()
            }
        })
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        without_interrupts(|| {
            let _guard = LOCK.lock();
            // SAFETY: as in `read`.
            unsafe {
                Port::<u32>::new(0xcf8).write(address_word(address, offset));
                Port::<u32>::new(0xcfc).write(value);
            }
        })
    }
}

/// The secondary bus number (configuration offset 0x19) of the PCI-to-PCI bridge at
/// `bus:device.function` on segment 0: the bus its downstream side is. Reads 0xff
/// where no function answers.
pub(crate) fn secondary_bus(bus: u8, device: u8, function: u8) -> u8 {
    let address = PciAddress::new(0, bus, device & 0x1f, function & 0x07);
    // SAFETY: reading the bus-number dword (0x18: primary, secondary, subordinate,
    // latency) has no side effects on any function.
    let word = unsafe { PortConfigAccess.read(address, 0x18) };
    (word >> 8) as u8
}
