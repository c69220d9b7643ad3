//! Handing a piece of a function's memory BAR to its driver as uncached
//! registers, one owner per byte: the MMIO counterpart of `claim_io_bar`.
//!
//! A virtio 1.0 device keeps four register structures in its BARs (common
//! configuration, notify, ISR, device configuration), and its driver claims
//! each one separately, so claims are byte ranges of a BAR, not whole BARs.

/// Whether two `(start, length)` ranges share a byte.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    let (a_end, b_end) = (a.0.saturating_add(a.1), b.0.saturating_add(b.1));
    a.0 < b_end && b.0 < a_end
}

/// The physical range `[bar_address + offset, + length)` when it lies inside a
/// BAR of `bar_size` bytes at `bar_address`; `None` when it is empty, runs past
/// the BAR, or the BAR was never given an address.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn range_in_bar(bar_address: u64, bar_size: u64, offset: u64, length: u64) -> Option<(u64, u64)> {
    let end = offset.checked_add(length)?;
    if bar_address == 0 || length == 0 || end > bar_size {
        return None;
    }
    Some((bar_address.checked_add(offset)?, length))
}

#[cfg(target_os = "none")]
mod machine {
    use alloc::vec::Vec;

    use pci_types::{CommandRegister, PciAddress, PciHeader};
    use spin::Mutex;

    use super::super::config::PortConfigAccess;
    use super::super::{Bar, PciDevice};
    use super::{overlaps, range_in_bar};
    use crate::dma::{Cause, IoFailure, IoReturn, PciCause};
    use crate::io::{MmioRange, map_mmio};

    /// Physical `(start, length)` of every range claimed so far. A claim lasts
    /// for the kernel's life, like the mapping `map_mmio` makes for it.
    static CLAIMED: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

    impl PciDevice {
        /// Claims `length` bytes from `offset` in memory BAR `slot` and maps
        /// them uncached as registers. `BadArgument` if the slot is not a memory
        /// BAR with an address, or the range is empty or runs past the BAR (or
        /// past the 64 KiB a `RegisterIo` offset reaches); `Busy` if any byte of
        /// it was claimed before; `NoMemory`/`NoResources` if it could not be
        /// mapped. Turns on memory decoding and bus mastering first, so the
        /// registers answer and the device may do DMA once told to.
        pub fn claim_memory_bar(&self, slot: usize, offset: u64, length: u64) -> Result<MmioRange, IoFailure> {
            let pci = |code, cause| IoFailure::new(code, Cause::Pci(cause));
            let Some(Bar::Memory { address, size, .. }) = self.bars.get(slot).copied().flatten() else {
                return Err(pci(IoReturn::BadArgument, PciCause::BarMissing { slot, kind: "memory" }));
            };
            let wanted = range_in_bar(address, size, offset, length)
                .ok_or(pci(IoReturn::BadArgument, PciCause::OutsideBar { slot, offset, length }))?;
            let mut claimed = CLAIMED.lock();
            if claimed.iter().any(|&range| overlaps(range, wanted)) {
                return Err(pci(IoReturn::Busy, PciCause::AlreadyClaimed { slot }));
            }
            self.enable_memory_and_bus_master();
            // SAFETY: the range lies inside this function's own memory BAR, at the
            // address firmware assigned it (checked by `range_in_bar`): device
            // registers, not RAM. No earlier claim covers any of its bytes, so
            // this owner is the only driver that reaches them.
            let range = unsafe { map_mmio(wanted.0, wanted.1) }.map_err(|code| {
                IoFailure::new(code, Cause::RegistersNotMapped { physical: wanted.0, size: wanted.1 })
            })?;
            claimed.push(wanted);
            Ok(range)
        }

        /// Sets memory-space decoding and bus mastering in the command register
        /// (what `enable` does, without touching I/O decoding).
        fn enable_memory_and_bus_master(&self) {
            let mut header = PciHeader::new(PciAddress::new(0, self.bus, self.device, self.function));
            header.update_command(PortConfigAccess, |command| {
                command | CommandRegister::MEMORY_ENABLE | CommandRegister::BUS_MASTER_ENABLE
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_inside_their_bar() {
        assert_eq!(range_in_bar(0xfe00_0000, 0x4000, 0x3000, 0x1000), Some((0xfe00_3000, 0x1000)));
        assert_eq!(range_in_bar(0xfe00_0000, 0x4000, 0x3000, 0x1001), None, "past the BAR");
        assert_eq!(range_in_bar(0xfe00_0000, 0x4000, 0, 0), None, "empty");
        assert_eq!(range_in_bar(0, 0x4000, 0, 0x10), None, "no address assigned");
        assert_eq!(range_in_bar(0xfe00_0000, u64::MAX, u64::MAX, 2), None, "wraps");
    }

    #[test]
    fn neighbours_do_not_overlap_but_shared_bytes_do() {
        assert!(!overlaps((0x1000, 0x1000), (0x2000, 0x1000)));
        assert!(overlaps((0x1000, 0x1000), (0x1fff, 0x10)));
        assert!(overlaps((0x1000, 0x38), (0x1000, 4)));
    }
}
