//! PCI capabilities: the list a function links from configuration offset 0x34,
//! and the virtio vendor capabilities that say where a virtio 1.0 device keeps
//! its register structures (virtio 1.0 section 4.1.4).
//!
//! The walking and decoding are pure functions over "read the configuration
//! dword at this offset", so the host tests run them on a made-up configuration
//! space; on the machine they read through configuration mechanism #1.
// On the host only the tests call the walkers.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

/// Configuration offset of the status register's dword (status is its high half).
const COMMAND_AND_STATUS: u8 = 0x04;
/// Status bit 4: the function has a capability list.
const STATUS_CAPABILITY_LIST: u16 = 1 << 4;
/// Configuration offset of the first capability's pointer.
pub const CAPABILITY_POINTER: u8 = 0x34;
/// Capability ID of a vendor-specific capability (what virtio uses).
pub const VENDOR_SPECIFIC: u8 = 0x09;
/// Capabilities live after the 64-byte header, 4-byte aligned: at most 48 fit
/// in 256 bytes, so a longer walk is a loop in a broken list.
const MAX_CAPABILITIES: usize = (256 - 64) / 4;

/// One entry of a function's capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Where it starts in configuration space.
    pub offset: u8,
    /// Its ID (0x05 MSI, 0x09 vendor-specific, 0x10 PCI Express, 0x11 MSI-X...).
    pub id: u8,
}

/// The capability list of a function whose configuration dwords `read_dword`
/// reads (the offset is dword-aligned). Empty when status bit 4 says there is
/// none; a list that loops or points into the header ends the walk there.
pub fn walk(read_dword: impl Fn(u8) -> u32) -> Vec<Capability> {
    let status = (read_dword(COMMAND_AND_STATUS) >> 16) as u16;
    let mut found = Vec::new();
    if status & STATUS_CAPABILITY_LIST == 0 {
        return found;
    }
    // The low two bits of every pointer are reserved.
    let mut pointer = (read_dword(CAPABILITY_POINTER) as u8) & 0xfc;
    while pointer >= 0x40 && found.len() < MAX_CAPABILITIES {
        let header = read_dword(pointer);
        found.push(Capability { offset: pointer, id: header as u8 });
        pointer = ((header >> 8) as u8) & 0xfc;
    }
    found
}

/// `length` bytes of configuration space from `offset` (any alignment), cut
/// at the end of the 256 bytes mechanism #1 reaches.
pub fn read_bytes(read_dword: impl Fn(u8) -> u32, offset: u8, length: usize) -> Vec<u8> {
    let end = (usize::from(offset) + length).min(256);
    (usize::from(offset)..end)
        .map(|at| {
            let dword = read_dword((at & !3) as u8);
            (dword >> (8 * (at % 4))) as u8
        })
        .collect()
}

/// `struct virtio_pci_cap` (virtio 1.0 section 4.1.4), as it lies in
/// configuration space; the notify capability adds `notify_off_multiplier`.
/// Only its layout is used: the bytes are decoded field by field.
#[repr(C)]
#[allow(dead_code)]
struct VirtioPciCap {
    cap_vndr: u8,
    cap_next: u8,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    padding: [u8; 3],
    offset: u32,
    length: u32,
}
const _: () = assert!(size_of::<VirtioPciCap>() == 16);

/// `struct virtio_pci_notify_cap`: the common header, then the multiplier.
#[repr(C)]
#[allow(dead_code)]
struct VirtioPciNotifyCap {
    cap: VirtioPciCap,
    notify_off_multiplier: u32,
}
const _: () = assert!(size_of::<VirtioPciNotifyCap>() == 20);

/// Bytes to read for any virtio capability (the longest, the notify one).
pub const VIRTIO_CAPABILITY_BYTES: usize = size_of::<VirtioPciNotifyCap>();

/// Which virtio register structure a capability locates (`cfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioStructure {
    /// 1: common configuration (features, status, queue set-up).
    Common,
    /// 2: where queues are notified, `notify_off_multiplier` bytes per step.
    Notify,
    /// 3: the interrupt status byte (reading it acknowledges).
    Isr,
    /// 4: the device-specific configuration (virtio-blk: capacity, seg_max...).
    Device,
    /// 5: a window into the BARs through configuration space.
    PciConfig,
}

impl VirtioStructure {
    fn from_cfg_type(cfg_type: u8) -> Option<VirtioStructure> {
        match cfg_type {
            1 => Some(VirtioStructure::Common),
            2 => Some(VirtioStructure::Notify),
            3 => Some(VirtioStructure::Isr),
            4 => Some(VirtioStructure::Device),
            5 => Some(VirtioStructure::PciConfig),
            _ => None,
        }
    }
}

/// A decoded virtio vendor capability: structure `structure` lies in BAR
/// `bar`, `length` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCapability {
    /// The capability it was decoded from.
    pub capability: Capability,
    /// Which structure.
    pub structure: VirtioStructure,
    /// The BAR slot (0..=5).
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Bytes of the structure.
    pub length: u32,
    /// For [`VirtioStructure::Notify`]: bytes between the notify addresses of
    /// consecutive `queue_notify_off` values. `None` for the others.
    pub notify_off_multiplier: Option<u32>,
}

impl VirtioCapability {
    /// Decodes a vendor capability from its bytes (from its first byte on, at
    /// least [`VIRTIO_CAPABILITY_BYTES`] when there are that many). `None` for
    /// anything that is not a virtio structure this code knows: another ID, a
    /// `cap_len` too short, a reserved `cfg_type` or BAR number, a notify
    /// capability without its multiplier. The specification asks drivers to
    /// skip such capabilities, not to fail.
    pub fn parse(capability: Capability, bytes: &[u8]) -> Option<VirtioCapability> {
        let byte = |at: usize| bytes.get(at).copied();
        let dword = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        if capability.id != VENDOR_SPECIFIC || byte(offset_of!(VirtioPciCap, cap_vndr))? != VENDOR_SPECIFIC {
            return None;
        }
        let cap_len = usize::from(byte(offset_of!(VirtioPciCap, cap_len))?);
        if cap_len < size_of::<VirtioPciCap>() {
            return None;
        }
        let structure = VirtioStructure::from_cfg_type(byte(offset_of!(VirtioPciCap, cfg_type))?)?;
        let bar = byte(offset_of!(VirtioPciCap, bar))?;
        if bar > 5 {
            return None;
        }
        let notify_off_multiplier = match structure {
            VirtioStructure::Notify if cap_len >= size_of::<VirtioPciNotifyCap>() => {
                Some(dword(offset_of!(VirtioPciNotifyCap, notify_off_multiplier))?)
            }
            VirtioStructure::Notify => return None,
            _ => None,
        };
        Some(VirtioCapability {
            capability,
            structure,
            bar,
            offset: dword(offset_of!(VirtioPciCap, offset))?,
            length: dword(offset_of!(VirtioPciCap, length))?,
            notify_off_multiplier,
        })
    }
}

/// Every virtio capability of the list `capabilities`, in list order, read
/// through `read_dword`.
pub fn virtio_capabilities(read_dword: impl Fn(u8) -> u32, capabilities: &[Capability]) -> Vec<VirtioCapability> {
    capabilities
        .iter()
        .filter(|capability| capability.id == VENDOR_SPECIFIC)
        .filter_map(|&capability| {
            let bytes = read_bytes(&read_dword, capability.offset, VIRTIO_CAPABILITY_BYTES);
            VirtioCapability::parse(capability, &bytes)
        })
        .collect()
}

#[cfg(target_os = "none")]
mod machine {
    use alloc::vec::Vec;

    use pci_types::{ConfigRegionAccess, PciAddress};

    use super::super::PciDevice;
    use super::super::config::PortConfigAccess;
    use super::{Capability, VirtioCapability};

    impl PciDevice {
        /// The configuration dword at `offset` (rounded down to a dword).
        fn config_dword(&self, offset: u8) -> u32 {
            let address = PciAddress::new(0, self.bus, self.device, self.function);
            // SAFETY: a read of this function's configuration space below 256
            // bytes; capability and header registers have no read side effects.
            unsafe { PortConfigAccess.read(address, u16::from(offset & 0xfc)) }
        }

        /// The function's capability list, read now from configuration space.
        pub fn capabilities(&self) -> Vec<Capability> {
            super::walk(|offset| self.config_dword(offset))
        }

        /// `length` bytes of configuration space from a capability's start
        /// (cut at 256 bytes).
        pub fn capability_bytes(&self, capability: Capability, length: usize) -> Vec<u8> {
            super::read_bytes(|offset| self.config_dword(offset), capability.offset, length)
        }

        /// The virtio vendor capabilities, in list order (the specification
        /// says to use the first of each structure the driver can use).
        pub fn virtio_capabilities(&self) -> Vec<VirtioCapability> {
            super::virtio_capabilities(|offset| self.config_dword(offset), &self.capabilities())
        }
    }
}

#[cfg(test)]
mod generated;

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up configuration space: status says "capability list", an MSI-X
    /// capability at 0x40, virtio common at 0x50, notify at 0x64, a vendor
    /// capability of another kind at 0x7c, and the ISR one at 0x84.
    fn config_space() -> [u8; 256] {
        let mut space = [0u8; 256];
        space[0x06] = 0x10;
        space[0x34] = 0x40;
        space[0x40..0x44].copy_from_slice(&[0x11, 0x50, 0, 0]);
        let common = [0x09, 0x64, 16, 1, 4, 0, 0, 0, 0x00, 0, 0, 0, 0x00, 0x10, 0, 0];
        space[0x50..0x60].copy_from_slice(&common);
        let notify = [0x09, 0x7c, 20, 2, 4, 0, 0, 0, 0x00, 0x30, 0, 0, 0x00, 0x10, 0, 0, 4, 0, 0, 0];
        space[0x64..0x78].copy_from_slice(&notify);
        space[0x7c..0x84].copy_from_slice(&[0x09, 0x84, 8, 0, 0, 0, 0, 0]);
        let isr = [0x09, 0x00, 16, 3, 4, 0, 0, 0, 0x00, 0x10, 0, 0, 0x00, 0x10, 0, 0];
        space[0x84..0x94].copy_from_slice(&isr);
        space
    }

    fn reader(space: &[u8; 256]) -> impl Fn(u8) -> u32 + '_ {
        |offset| {
            let at = usize::from(offset);
            u32::from_le_bytes(space[at..at + 4].try_into().expect("4 bytes"))
        }
    }

    #[test]
    fn the_list_is_walked_from_0x34() {
        let space = config_space();
        let found = walk(reader(&space));
        let ids: Vec<(u8, u8)> = found.iter().map(|c| (c.offset, c.id)).collect();
        assert_eq!(ids, [(0x40, 0x11), (0x50, 0x09), (0x64, 0x09), (0x7c, 0x09), (0x84, 0x09)]);
        assert_eq!(read_bytes(reader(&space), 0x64, 4), [0x09, 0x7c, 20, 2]);
    }

    #[test]
    fn no_status_bit_no_list_and_a_loop_ends() {
        let mut space = config_space();
        space[0x06] = 0;
        assert!(walk(reader(&space)).is_empty());
        let mut looping = config_space();
        looping[0x41] = 0x40;
        assert_eq!(walk(reader(&looping)).len(), MAX_CAPABILITIES, "a list pointing at itself ends");
    }

    #[test]
    fn virtio_capabilities_decode_bar_offset_length_and_the_multiplier() {
        let space = config_space();
        let capabilities = walk(reader(&space));
        let virtio = virtio_capabilities(reader(&space), &capabilities);
        assert_eq!(virtio.len(), 3, "the capability with cfg_type 0 and cap_len 8 is skipped: {virtio:?}");
        assert_eq!(
            virtio[0],
            VirtioCapability {
                capability: Capability { offset: 0x50, id: 0x09 },
                structure: VirtioStructure::Common,
                bar: 4,
                offset: 0,
                length: 0x1000,
                notify_off_multiplier: None,
            }
        );
        assert_eq!(virtio[1].structure, VirtioStructure::Notify);
        assert_eq!((virtio[1].offset, virtio[1].notify_off_multiplier), (0x3000, Some(4)));
        assert_eq!((virtio[2].structure, virtio[2].offset), (VirtioStructure::Isr, 0x1000));
    }

    #[test]
    fn a_notify_capability_without_its_multiplier_is_skipped() {
        let short = [0x09, 0x00, 16, 2, 4, 0, 0, 0, 0, 0x30, 0, 0, 0, 0x10, 0, 0, 4, 0, 0, 0];
        assert_eq!(VirtioCapability::parse(Capability { offset: 0x40, id: 0x09 }, &short), None);
        let reserved_bar = [0x09, 0x00, 16, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0];
        assert_eq!(VirtioCapability::parse(Capability { offset: 0x40, id: 0x09 }, &reserved_bar), None);
    }
}
