//! Walking every bus/device/function and decoding what is found.

use alloc::vec::Vec;

use pci_types::{
    Bar as RawBar, CommandRegister, ConfigRegionAccess, EndpointHeader, HeaderType, PciAddress, PciHeader,
};

use super::config::PortConfigAccess;
use super::device::{Bar, PciDevice};
use crate::dma::{Cause, IoFailure, IoReturn, PciCause};
use crate::io::{PortRange, claim_ports};

/// Every function on every bus, in bus/device/function order.
pub fn enumerate() -> Vec<PciDevice> {
    let access = PortConfigAccess;
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let header = PciHeader::new(PciAddress::new(0, bus, device, 0));
            if header.id(access).0 == 0xffff {
                continue;
            }
            let functions = if header.has_multiple_functions(access) { 8 } else { 1 };
            for function in 0..functions {
                let address = PciAddress::new(0, bus, device, function);
                if let Some(decoded) = decode(address, access) {
                    found.push(decoded);
                }
            }
        }
    }
    found
}

fn decode(address: PciAddress, access: PortConfigAccess) -> Option<PciDevice> {
    let header = PciHeader::new(address);
    let (vendor_id, device_id) = header.id(access);
    if vendor_id == 0xffff {
        return None;
    }
    let (revision, class, subclass, interface) = header.revision_and_class(access);
    let mut bars = [None; 6];
    let mut interrupt_line = None;
    if header.header_type(access) == HeaderType::Endpoint {
        let endpoint = EndpointHeader::from_header(header, access)?;
        let mut slot = 0;
        while slot < 6 {
            let raw = endpoint.bar(slot, access);
            bars[usize::from(slot)] = raw.map(|bar| decode_bar(address, slot, bar, access));
            slot += if matches!(raw, Some(RawBar::Memory64 { .. })) { 2 } else { 1 };
        }
        let (pin, line) = endpoint.interrupt(access);
        interrupt_line = (pin != 0 && line < 16).then_some(line);
    }
    Some(PciDevice {
        bus: address.bus(),
        device: address.device(),
        function: address.function(),
        vendor_id,
        device_id,
        class,
        subclass,
        interface,
        revision,
        bars,
        interrupt_line,
    })
}

fn decode_bar(address: PciAddress, slot: u8, bar: RawBar, access: PortConfigAccess) -> Bar {
    match bar {
        RawBar::Memory32 { address, size, prefetchable } => {
            Bar::Memory { address: u64::from(address), size: u64::from(size), wide: false, prefetchable }
        }
        RawBar::Memory64 { address, size, prefetchable } => Bar::Memory { address, size, wide: true, prefetchable },
        RawBar::Io { port } => Bar::Io { port: port as u16, size: io_bar_size(address, slot, access) },
    }
}

/// `pci_types` does not size I/O BARs: write all ones, read back the mask, restore.
fn io_bar_size(address: PciAddress, slot: u8, access: PortConfigAccess) -> u16 {
    let offset = 0x10 + u16::from(slot) * 4;
    // SAFETY: a BAR of an existing function; the original value is written back and
    // nothing uses the device while it is being enumerated.
    let mask = unsafe {
        let original = access.read(address, offset);
        access.write(address, offset, 0xffff_ffff);
        let mask = access.read(address, offset);
        access.write(address, offset, original);
        mask
    };
    let size = !(mask & 0xffff_fffc) + 1;
    size as u16
}

/// Turns on I/O and memory decoding and bus mastering, so the device answers its
/// BARs and may do DMA.
pub fn enable(device: &PciDevice) {
    let mut header = PciHeader::new(PciAddress::new(0, device.bus, device.device, device.function));
    header.update_command(PortConfigAccess, |command| {
        command | CommandRegister::IO_ENABLE | CommandRegister::MEMORY_ENABLE | CommandRegister::BUS_MASTER_ENABLE
    });
}

impl PciDevice {
    /// Claims the ports of I/O BAR `slot` for this device's driver.
    pub fn claim_io_bar(&self, slot: usize) -> Result<PortRange, IoFailure> {
        let Some(Bar::Io { port, size }) = self.bars.get(slot).copied().flatten() else {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Pci(PciCause::BarMissing { slot, kind: "I/O" })));
        };
        // SAFETY: the range is the device's own I/O BAR, as firmware assigned it.
        let claimed = unsafe { claim_ports(port, size) };
        claimed.map_err(|code| claim_failure(code, slot, u64::from(size)))
    }

    /// Claims the fixed command-block and control ports of IDE channel `channel`
    /// (0 primary, 1 secondary) of an IDE controller in compatibility mode.
    pub fn claim_legacy_ide(&self, channel: u8) -> Result<(PortRange, PortRange), IoFailure> {
        let native_mode = channel > 1 || self.interface & (1 << (channel * 2)) != 0;
        if (self.class, self.subclass) != (0x01, 0x01) || native_mode {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Pci(PciCause::NotLegacyIde { channel })));
        }
        let (command, control) = if channel == 0 { (0x1f0, 0x3f6) } else { (0x170, 0x376) };
        // `Busy`: someone has the ports already; the compatibility-mode check
        // above passed, so anything else is the claim's own refusal.
        let claimed = |code| match code {
            IoReturn::Busy => IoFailure::new(code, Cause::Pci(PciCause::LegacyPortsClaimed { channel })),
            _ => IoFailure::new(code, Cause::Pci(PciCause::NotLegacyIde { channel })),
        };
        // SAFETY: a compatibility-mode IDE controller decodes exactly these fixed
        // ports for this channel (PCI IDE Controller Specification).
        unsafe { Ok((claim_ports(command, 8).map_err(claimed)?, claim_ports(control, 1).map_err(claimed)?)) }
    }
}

/// A failed claim of I/O BAR `slot` (`size` ports): `Busy` means another
/// driver (or the kernel) has part of it; `BadArgument`, that the BAR is empty
/// or wraps past the last port.
pub(super) fn claim_failure(code: IoReturn, slot: usize, size: u64) -> IoFailure {
    let cause = match code {
        IoReturn::Busy => PciCause::AlreadyClaimed { slot },
        _ => PciCause::OutsideBar { slot, offset: 0, length: size },
    };
    IoFailure::new(code, Cause::Pci(cause))
}
