//! Turns the firmware's E820 memory map plus the boot's own reservations into
//! `bootloader_api` memory regions: sorted, non-overlapping, page-aligned.

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};

use crate::start_info::{E820_RAM, HvmMemoryMapEntry};

const PAGE_SIZE: u64 = 4096;
/// The most firmware entries [`build`] accepts.
pub const MAX_FIRMWARE_ENTRIES: usize = 128;
/// The most reservations [`build`] accepts.
pub const MAX_RESERVATIONS: usize = 8;

/// A physical range `[start, end)` the boot code keeps for itself or for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The output slice was too small for the regions.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyRegions;

/// What one elementary interval is: reservations beat firmware reservations, which
/// beat RAM; an interval nobody describes is left out.
fn kind_at(
    start: u64,
    end: u64,
    firmware: &[HvmMemoryMapEntry],
    reservations: &[Reservation],
) -> Option<MemoryRegionKind> {
    let overlaps = |a: u64, b: u64| a < end && start < b;
    if reservations.iter().any(|r| overlaps(r.start, r.end)) {
        return Some(MemoryRegionKind::Bootloader);
    }
    let mut kind = None;
    for entry in firmware.iter().filter(|e| overlaps(e.address, e.address + e.size)) {
        if entry.kind != E820_RAM {
            return Some(MemoryRegionKind::UnknownBios(entry.kind));
        }
        kind = Some(MemoryRegionKind::Usable);
    }
    kind
}

/// Pushes `region`, merging it into the previous one when they touch and agree.
fn push(output: &mut [MemoryRegion], count: &mut usize, region: MemoryRegion) -> Result<(), TooManyRegions> {
    if let Some(last) = count.checked_sub(1).map(|i| &mut output[i])
        && last.end == region.start
        && last.kind == region.kind
    {
        last.end = region.end;
        return Ok(());
    }
    let slot = output.get_mut(*count).ok_or(TooManyRegions)?;
    *slot = region;
    *count += 1;
    Ok(())
}

/// Builds the region list into `output` and returns how many entries it used.
///
/// Usable memory is shrunk to whole pages (a partial page at either end becomes
/// the neighbouring kind's or is dropped), so the frame allocator can trust it.
pub fn build(
    firmware: &[HvmMemoryMapEntry],
    reservations: &[Reservation],
    output: &mut [MemoryRegion],
) -> Result<usize, TooManyRegions> {
    // Every start and end is a point where the kind may change; usable RAM edges are
    // rounded inwards to pages first.
    let mut points = [0u64; 4 * MAX_FIRMWARE_ENTRIES + 2 * MAX_RESERVATIONS];
    if firmware.len() > MAX_FIRMWARE_ENTRIES || reservations.len() > MAX_RESERVATIONS {
        return Err(TooManyRegions);
    }
    let mut point_count = 0;
    let mut add_point = |p: u64| {
        points[point_count] = p;
        point_count += 1;
    };
    for entry in firmware {
        let (start, end) = (entry.address, entry.address + entry.size);
        add_point(start);
        add_point(end);
        add_point(start.next_multiple_of(PAGE_SIZE));
        add_point(end / PAGE_SIZE * PAGE_SIZE);
    }
    for reservation in reservations {
        add_point(reservation.start);
        add_point(reservation.end);
    }
    let points = &mut points[..point_count];
    points.sort_unstable();

    let mut count = 0;
    for pair in points.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        if start == end {
            continue;
        }
        let Some(kind) = kind_at(start, end, firmware, reservations) else {
            continue;
        };
        let partial_page = start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0;
        if kind == MemoryRegionKind::Usable && partial_page {
            continue;
        }
        push(output, &mut count, MemoryRegion { start, end, kind })?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(address: u64, size: u64, kind: u32) -> HvmMemoryMapEntry {
        HvmMemoryMapEntry { address, size, kind, reserved: 0 }
    }

    fn run(firmware: &[HvmMemoryMapEntry], reservations: &[Reservation]) -> Vec<MemoryRegion> {
        let mut output = [MemoryRegion::empty(); 64];
        let count = build(firmware, reservations, &mut output).expect("fits");
        output[..count].to_vec()
    }

    #[test]
    fn qemu_like_map_is_sorted_disjoint_and_carves_reservations() {
        let firmware = [
            ram(0, 0x9fc00, 1),
            ram(0x9fc00, 0x400, 2),
            ram(0xf0000, 0x10000, 2),
            ram(0x10_0000, 0xbfee_0000 - 0x10_0000, 1),
            ram(0xfffc_0000, 0x4_0000, 2),
            ram(0x1_0000_0000, 0x1_4000_0000, 1),
        ];
        let reservations = [Reservation { start: 0, end: 0x1000 }, Reservation { start: 0x10_0000, end: 0x30_0000 }];
        let regions = run(&firmware, &reservations);
        for pair in regions.windows(2) {
            assert!(pair[0].end <= pair[1].start, "sorted and disjoint: {pair:?}");
        }
        let usable_at = |address: u64| {
            regions.iter().any(|r| r.kind == MemoryRegionKind::Usable && r.start <= address && address < r.end)
        };
        assert!(!usable_at(0), "page 0 is reserved");
        assert!(usable_at(0x1000));
        assert!(!usable_at(0x9f000), "partial page at the end of low RAM is dropped");
        assert!(!usable_at(0x20_0000), "the kernel image is not usable");
        assert!(usable_at(0x30_0000));
        assert!(usable_at(0x2_0000_0000));
        assert!(
            regions
                .iter()
                .all(|r| r.kind != MemoryRegionKind::Usable || (r.start % PAGE_SIZE == 0 && r.end % PAGE_SIZE == 0))
        );
        assert!(regions.iter().any(|r| r.kind == MemoryRegionKind::UnknownBios(2)));
    }

    #[test]
    fn firmware_reservation_inside_ram_wins() {
        let regions = run(&[ram(0, 0x10_0000, 1), ram(0x8000, 0x1000, 2)], &[]);
        let kinds: Vec<_> = regions.iter().map(|r| (r.start, r.end, r.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, 0x8000, MemoryRegionKind::Usable),
                (0x8000, 0x9000, MemoryRegionKind::UnknownBios(2)),
                (0x9000, 0x10_0000, MemoryRegionKind::Usable),
            ]
        );
    }

    #[test]
    fn too_small_output_is_an_error() {
        let mut output = [MemoryRegion::empty(); 1];
        let firmware = [ram(0, 0x1000, 1), ram(0x2000, 0x1000, 1)];
        assert_eq!(build(&firmware, &[], &mut output), Err(TooManyRegions));
    }
}
