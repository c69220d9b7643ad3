//! A domain's second-level page table: what the VT-d unit walks to turn a
//! device's I/O virtual address into a physical one, 4 KiB pages only.
//!
//! ```text
//! IOVA (39-bit, 3 levels):  | 38..30 | 29..21 | 20..12 | 11..0  |
//!                             level 3  level 2  level 1  offset
//! entry (8 bytes): bit 0 R (the device may read), bit 1 W (it may write),
//!                  bits 51:12 the next table's or the page's physical address
//! ```
//!
//! An entry with R and W both clear is "not present": a DMA through it faults.
//! Non-leaf entries carry R and W both, so only the leaf decides the access.
//!
//! The tables live in frames from a [`DmaPlatform`] and are written and read
//! through it, so the host tests walk them in simulated memory exactly as the
//! hardware would. Table pages are never freed, not even when they empty: a
//! domain maps and unmaps the same low IOVAs over and over (its IOVA allocator is
//! first fit), so the tables are reused, and freeing a table the unit may have
//! cached would need an invalidation of its paging-structure caches first.

use x86_64::PhysAddr;

use crate::dma::{DmaPlatform, FrameFill, IoDirection};
use crate::memory::{Constraints, FRAME_SIZE, MemoryError};

use super::tables::AddressWidth;

/// Bit 0: the device may read the page (or walk on).
const READ: u64 = 1 << 0;
/// Bit 1: the device may write the page (or walk on).
const WRITE: u64 = 1 << 1;
/// Bits 51:12: a physical address.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Entries per table page.
const ENTRIES: u64 = 512;
/// Bytes per entry.
const ENTRY_SIZE: u64 = 8;

/// Whether the unit's table walks see what the CPU caches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coherence {
    /// ECAP.C = 1: the walks snoop the caches.
    Coherent,
    /// ECAP.C = 0: every written entry is flushed from the caches first.
    FlushWrites,
}

/// What a leaf lets the device do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The page's physical address.
    pub page: PhysAddr,
    /// The device may read it (a transfer `Out` of memory).
    pub readable: bool,
    /// The device may write it (a transfer `In` to memory).
    pub writable: bool,
}

/// Why a page could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageTableError {
    /// No frame for a new table page.
    OutOfMemory(MemoryError),
    /// The IOVA lies beyond the table's address width.
    BeyondWidth,
    /// The IOVA is mapped already.
    AlreadyMapped,
    /// An address is not page-aligned, or the direction allows no access.
    BadArgument,
}

/// One domain's second-level page table.
pub struct PageTable {
    platform: &'static dyn DmaPlatform,
    root: PhysAddr,
    width: AddressWidth,
    /// The width's depth and IOVA bits, decoded once: every map and unmap walks them.
    levels: u8,
    iova_bits: u32,
    coherence: Coherence,
    /// Where table pages may lie: below the unit's host address width.
    placement: Constraints,
    /// Table pages allocated, the root included.
    table_pages: usize,
}

impl PageTable {
    /// An empty table `width` deep, its pages from `platform` within `placement`.
    pub fn new(
        platform: &'static dyn DmaPlatform,
        width: AddressWidth,
        coherence: Coherence,
        placement: Constraints,
    ) -> Result<PageTable, MemoryError> {
        let mut table = PageTable {
            platform,
            root: PhysAddr::zero(),
            width,
            levels: width.levels(),
            iova_bits: width.bits(),
            coherence,
            placement,
            table_pages: 0,
        };
        table.root = table.new_table_page()?;
        Ok(table)
    }

    /// The top-level table's physical address (the context entry's SLPTPTR).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The address width (and so the depth).
    pub fn width(&self) -> AddressWidth {
        self.width
    }

    /// Table pages allocated so far.
    pub fn table_pages(&self) -> usize {
        self.table_pages
    }

    fn new_table_page(&mut self) -> Result<PhysAddr, MemoryError> {
        let page = self.platform.allocate_frames(1, self.placement, FrameFill::Zeroed)?;
        // The zeroes were written through the cache: a unit whose walks do not
        // snoop must see them before any entry points at this page.
        if self.coherence == Coherence::FlushWrites {
            self.platform.flush_for_device(page, FRAME_SIZE);
        }
        self.table_pages += 1;
        Ok(page)
    }

    /// The entry for `iova` in the table at `table`, at `level` (1 = leaf):
    /// where it lies, and what it holds.
    fn read_entry(&self, table: PhysAddr, iova: u64, level: u8) -> (PhysAddr, u64) {
        let index = (iova >> (12 + 9 * u32::from(level - 1))) % ENTRIES;
        let address = table + index * ENTRY_SIZE;
        let mut bytes = [0; ENTRY_SIZE as usize];
        // SAFETY: `address` is an entry of a table page this table allocated and
        // owns; only this table (under its domain's lock) writes it.
        unsafe { self.platform.read_physical(address, &mut bytes) };
        (address, u64::from_le_bytes(bytes))
    }

    /// Writes `entry` at `address` (an entry `read_entry` found), flushed from
    /// the cache when the unit's walks do not snoop it.
    fn write_entry(&self, address: PhysAddr, entry: u64) {
        // SAFETY: as in `read_entry`: the table page is ours to overwrite.
        unsafe { self.platform.write_physical(address, &entry.to_le_bytes()) };
        if self.coherence == Coherence::FlushWrites {
            self.platform.flush_for_device(address, ENTRY_SIZE);
        }
    }

    /// Maps the page at `iova` to `page`, readable by the device if `direction`
    /// includes `Out` and writable if it includes `In`. Missing tables on the way
    /// are allocated (zeroed and flushed before they are linked in).
    pub fn map(&mut self, iova: u64, page: PhysAddr, direction: IoDirection) -> Result<(), PageTableError> {
        if !iova.is_multiple_of(FRAME_SIZE) {
            return Err(PageTableError::BadArgument);
        }
        if iova >> self.iova_bits != 0 {
            return Err(PageTableError::BeyondWidth);
        }
        let access =
            (if direction.includes_out() { READ } else { 0 }) | (if direction.includes_in() { WRITE } else { 0 });
        if access == 0 || !page.as_u64().is_multiple_of(FRAME_SIZE) || page.as_u64() & !ADDRESS_MASK != 0 {
            return Err(PageTableError::BadArgument);
        }
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let (slot, entry) = self.read_entry(table, iova, level);
            table = if entry & (READ | WRITE) != 0 {
                PhysAddr::new(entry & ADDRESS_MASK)
            } else {
                let next = self.new_table_page().map_err(PageTableError::OutOfMemory)?;
                self.write_entry(slot, next.as_u64() | READ | WRITE);
                next
            };
        }
        let (slot, leaf) = self.read_entry(table, iova, 1);
        if leaf & (READ | WRITE) != 0 {
            return Err(PageTableError::AlreadyMapped);
        }
        self.write_entry(slot, page.as_u64() | access);
        Ok(())
    }

    /// The leaf slot for `iova` and what it holds (present or not), if every
    /// table on the way exists.
    fn leaf_slot(&self, iova: u64) -> Option<(PhysAddr, u64)> {
        if iova >> self.iova_bits != 0 {
            return None;
        }
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let (_, entry) = self.read_entry(table, iova, level);
            if entry & (READ | WRITE) == 0 {
                return None;
            }
            table = PhysAddr::new(entry & ADDRESS_MASK);
        }
        Some(self.read_entry(table, iova, 1))
    }

    /// Clears the leaf of the page holding `iova` and returns the page it led
    /// to; `None` if it was not mapped. The caller invalidates the IOTLB.
    pub fn unmap(&mut self, iova: u64) -> Option<PhysAddr> {
        let (slot, entry) = self.leaf_slot(iova)?;
        if entry & (READ | WRITE) == 0 {
            return None;
        }
        self.write_entry(slot, 0);
        Some(PhysAddr::new(entry & ADDRESS_MASK))
    }

    /// The leaf for the page holding `iova`, if mapped.
    pub fn leaf(&self, iova: u64) -> Option<Leaf> {
        let (_, entry) = self.leaf_slot(iova)?;
        (entry & (READ | WRITE) != 0).then(|| Leaf {
            page: PhysAddr::new(entry & ADDRESS_MASK),
            readable: entry & READ != 0,
            writable: entry & WRITE != 0,
        })
    }

    /// Where `iova` leads (the page plus the offset), if mapped.
    pub fn translate(&self, iova: u64) -> Option<PhysAddr> {
        self.leaf(iova).map(|leaf| leaf.page + iova % FRAME_SIZE)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dma::simulated::SimulatedPlatform;

    /// Walks the tables from `root` as the unit does, reading simulated memory
    /// directly: (physical page, R, W) or `None` where the walk stops.
    pub(crate) fn hardware_walk(
        platform: &SimulatedPlatform,
        root: PhysAddr,
        levels: u8,
        iova: u64,
    ) -> Option<(u64, bool, bool)> {
        let mut table = root.as_u64();
        for level in (1..=levels).rev() {
            let index = (iova >> (12 + 9 * u32::from(level - 1))) & 511;
            let mut bytes = [0; 8];
            platform.device_read(table + index * 8, &mut bytes);
            let entry = u64::from_le_bytes(bytes);
            if entry & 3 == 0 {
                return None;
            }
            if level == 1 {
                return Some((entry & ADDRESS_MASK, entry & 1 != 0, entry & 2 != 0));
            }
            assert_eq!(entry & 3, 3, "non-leaf entries allow both accesses");
            table = entry & ADDRESS_MASK;
        }
        None
    }

    fn round_trip(width: AddressWidth) {
        let platform = SimulatedPlatform::leak(0);
        let mut table = PageTable::new(platform, width, Coherence::FlushWrites, Constraints::NONE).unwrap();
        let levels = width.levels();
        // Three IOVAs: neighbours, and one far away (another top-level entry).
        let far = (1u64 << (width.bits() - 1)) + 0x20_0000;
        let cases = [
            (0x1000, 0x10_0000, IoDirection::In),
            (0x2000, 0x10_3000, IoDirection::Out),
            (far, 0x20_0000, IoDirection::InOut),
        ];
        for &(iova, page, direction) in &cases {
            table.map(iova, PhysAddr::new(page), direction).unwrap();
        }
        assert_eq!(hardware_walk(platform, table.root(), levels, 0x1000), Some((0x10_0000, false, true)));
        assert_eq!(hardware_walk(platform, table.root(), levels, 0x2000), Some((0x10_3000, true, false)));
        assert_eq!(hardware_walk(platform, table.root(), levels, far), Some((0x20_0000, true, true)));
        assert_eq!(hardware_walk(platform, table.root(), levels, 0x3000), None);
        assert_eq!(table.translate(0x2abc), Some(PhysAddr::new(0x10_3abc)));
        assert_eq!(table.table_pages(), 1 + 2 * (levels as usize - 1), "two paths from the root");

        assert_eq!(table.map(0x1000, PhysAddr::new(0x30_0000), IoDirection::In), Err(PageTableError::AlreadyMapped));
        assert_eq!(
            table.map(1 << width.bits(), PhysAddr::new(0x30_0000), IoDirection::In),
            Err(PageTableError::BeyondWidth)
        );
        assert_eq!(table.map(0x5000, PhysAddr::new(0x30_0000), IoDirection::None), Err(PageTableError::BadArgument));

        assert_eq!(table.unmap(0x1000), Some(PhysAddr::new(0x10_0000)));
        assert_eq!(table.unmap(0x1000), None, "unmapped already");
        assert_eq!(hardware_walk(platform, table.root(), levels, 0x1000), None, "the hardware finds nothing");
        assert_eq!(table.translate(0x1000), None);
        assert_eq!(table.unmap(0x7000_0000), None, "never mapped: no table on the way");
        // The tables stay: mapping again reuses them.
        table.map(0x1000, PhysAddr::new(0x40_0000), IoDirection::InOut).unwrap();
        assert_eq!(table.table_pages(), 1 + 2 * (levels as usize - 1));
    }

    #[test]
    fn three_level_tables_map_unmap_and_translate() {
        round_trip(AddressWidth::ThreeLevel39);
    }

    #[test]
    fn four_level_tables_map_unmap_and_translate() {
        round_trip(AddressWidth::FourLevel48);
    }

    #[test]
    fn every_table_write_is_flushed_when_the_walks_do_not_snoop() {
        for coherence in [Coherence::FlushWrites, Coherence::Coherent] {
            let platform = crate::dma::watched_platform::WatchedPlatform::leak(usize::MAX);
            let mut table = PageTable::new(platform, AddressWidth::ThreeLevel39, coherence, Constraints::NONE).unwrap();
            table.map(0x1000, PhysAddr::new(0x10_0000), IoDirection::In).unwrap();
            table.unmap(0x1000).unwrap();
            let flushed = platform.flushed.lock().clone();
            if coherence == Coherence::Coherent {
                assert!(flushed.is_empty(), "coherent walks need no flush: {flushed:x?}");
                continue;
            }
            let pages: alloc::vec::Vec<u64> =
                flushed.iter().filter(|&&(_, length)| length == FRAME_SIZE).map(|&(page, _)| page).collect();
            let entries: alloc::vec::Vec<u64> =
                flushed.iter().filter(|&&(_, length)| length == ENTRY_SIZE).map(|&(entry, _)| entry).collect();
            assert_eq!(
                (pages.len(), entries.len()),
                (3, 4),
                "three zeroed pages; three entries linked or mapped, one cleared: {flushed:x?}"
            );
            assert_eq!(pages[0], table.root().as_u64(), "the root, zeroed");
            for entry in &entries {
                assert!(pages.contains(&(entry & !(FRAME_SIZE - 1))), "entry {entry:#x} lies in a table page");
            }
            assert_eq!(entries[2], entries[3], "the leaf, once mapped and once cleared");
        }
    }

    #[test]
    fn table_pages_respect_their_placement() {
        let platform = SimulatedPlatform::leak(0);
        let below = Constraints::below(PhysAddr::new(16 << 20));
        let mut table = PageTable::new(platform, AddressWidth::ThreeLevel39, Coherence::Coherent, below).unwrap();
        table.map(0x1000, PhysAddr::new(0x1_0400_0000), IoDirection::In).unwrap();
        let mut address = table.root().as_u64();
        for _ in 0..2 {
            assert!(address < 16 << 20);
            let mut bytes = [0; 8];
            platform.device_read(address, &mut bytes);
            address = u64::from_le_bytes(bytes) & ADDRESS_MASK;
        }
        assert!(address < 16 << 20, "the leaf table too");
    }
}
