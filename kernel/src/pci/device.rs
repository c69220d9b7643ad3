//! What the kernel knows about one PCI function, decoded once at enumeration.

use alloc::string::String;
use core::fmt;

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// An I/O port range.
    Io {
        /// First port.
        port: u16,
        /// Ports in the range.
        size: u16,
    },
    /// A memory range (32- or 64-bit).
    Memory {
        /// Physical start.
        address: u64,
        /// Bytes.
        size: u64,
        /// Whether the BAR is 64 bits wide (and uses the next slot too).
        wide: bool,
        /// Whether the range is prefetchable.
        prefetchable: bool,
    },
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bar::Io { port, size } => write!(f, "io {port:#x} ({size} ports)"),
            Bar::Memory { address, size, wide, prefetchable } => write!(
                f,
                "mem{} {address:#x} ({} KiB{})",
                if wide { 64 } else { 32 },
                size / 1024,
                if prefetchable { ", prefetchable" } else { "" }
            ),
        }
    }
}

/// One PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Bus number.
    pub bus: u8,
    /// Device number on the bus.
    pub device: u8,
    /// Function number.
    pub function: u8,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Base class code.
    pub class: u8,
    /// Subclass code.
    pub subclass: u8,
    /// Programming interface.
    pub interface: u8,
    /// Revision.
    pub revision: u8,
    /// Decoded BARs by slot.
    pub bars: [Option<Bar>; 6],
    /// The legacy interrupt line (PIC IRQ) firmware routed it to, if any.
    pub interrupt_line: Option<u8>,
}

impl PciDevice {
    /// `bus:device.function`, as `lspci` prints it.
    pub fn location(&self) -> String {
        alloc::format!("{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }

    /// A short human name for well-known classes.
    pub fn class_name(&self) -> &'static str {
        match (self.class, self.subclass) {
            (0x01, 0x01) => "IDE controller",
            (0x01, 0x00) => "SCSI storage",
            (0x01, _) => "mass storage",
            (0x02, _) => "network controller",
            (0x03, _) => "display controller",
            (0x06, 0x00) => "host bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x06, 0x80) => "bridge",
            (0x06, _) => "bridge",
            _ => "device",
        }
    }
}
