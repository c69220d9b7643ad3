//! The virtual boundary (NVMe's PRP rule): every segment but the first starts on
//! a page, every segment but the last ends on one. Buffers that can be described
//! that way go to the device in place; the pieces that cannot are bounced by the
//! command, with their neighbours where the page offsets would no longer line up.

use alloc::sync::Arc;

use super::mapped::{device_writes_through, mapped_machine};
use super::*;
use crate::dma::{FaultAccess, IoReturn, Specification, SyncOptions, TransferOptions};

/// The page an NVMe controller's PRP entries describe.
const PAGE: u64 = 4096;

/// A device with NVMe's data rules: a dword-aligned start, then whole pages.
const PRP: Specification = Specification { alignment: 4, virtual_boundary: PAGE, ..Specification::UNLIMITED_64 };

/// Where a piece's frame lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    Low,
    High,
}

/// A scattered buffer: each piece `(zone, start, length)` lies in frames of its
/// own with one more frame after it, so no two pieces are physical neighbours
/// (the allocator may hand out consecutive frames). Holds `pattern(_, 7)`.
struct Scattered {
    buffer: Arc<IoMemoryDescriptor>,
    /// Where each piece starts in physical memory.
    starts: Vec<u64>,
    /// The frames the pieces lie in: they must outlive the buffer.
    _frames: Vec<Arc<IoMemoryDescriptor>>,
}

fn scattered(platform: &'static dyn DmaPlatform, pieces: &[(Zone, u64, u64)], direction: IoDirection) -> Scattered {
    let frames: Vec<_> = pieces
        .iter()
        .map(|&(zone, start, length)| {
            let placement = match zone {
                Zone::Low => Constraints::below(PhysAddr::new(FOUR_GIB)),
                Zone::High => Constraints::NONE,
            };
            let frames = (start + length).div_ceil(PAGE) + 1;
            IoMemoryDescriptor::allocate(platform, frames * PAGE, IoDirection::InOut, placement).unwrap()
        })
        .collect();
    let ranges: Vec<_> = pieces
        .iter()
        .zip(&frames)
        .map(|(&(_, start, length), frame)| (frame.physical_segment(0).unwrap().0 + start, length))
        .collect();
    // SAFETY: every range lies in a frame that `Scattered` keeps alive with the buffer.
    let buffer = unsafe { IoMemoryDescriptor::with_physical_ranges(platform, &ranges, direction) }.unwrap();
    buffer.write_bytes(0, &pattern(buffer.length() as usize, 7)).unwrap();
    let starts = ranges.iter().map(|(address, _)| address.as_u64()).collect();
    Scattered { buffer, starts, _frames: frames }
}

/// The device reads the buffer through the command's segments and, if the
/// direction includes `In`, writes new bytes through them; after complete the
/// buffer holds what the device wrote, or its own bytes.
fn round_trip(platform: &SimulatedPlatform, command: &mut IoDmaCommand, buffer: &IoMemoryDescriptor) {
    let original = pattern(buffer.length() as usize, 7);
    assert_eq!(device_reads(platform, command), original, "the device reads the buffer's bytes");
    let written = pattern(original.len(), 77);
    let expected = if buffer.direction().includes_in() {
        device_writes(platform, command.segments(), &written);
        written
    } else {
        original
    };
    command.complete().unwrap();
    assert_eq!(contents(buffer), expected, "{:?}", buffer.direction());
    let stats = platform.accounting().stats();
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 0));
}

const DIRECTIONS: [IoDirection; 3] = [IoDirection::In, IoDirection::Out, IoDirection::InOut];

#[test]
fn a_contiguous_buffer_with_an_unaligned_start_is_used_in_place_and_cut_on_pages() {
    let platform = machine();
    let buffer = low_buffer(platform, 4 * PAGE, IoDirection::InOut);
    let start = buffer.physical_segment(0).unwrap().0.as_u64();
    for max_segment_size in [0, 2 * PAGE] {
        let spec = Specification { max_segment_size, ..PRP };
        let mut command = IoDmaCommand::new(platform, spec).unwrap();
        command.set_memory_descriptor(buffer.clone(), false).unwrap();
        command.prepare(0x204, 3 * PAGE).unwrap();
        let segments = command.segments().to_vec();
        assert_eq!(command.bounced_bytes(), 0, "max segment {max_segment_size:#x}: nothing bounced");
        assert_eq!(segments[0].address.as_u64(), start + 0x204, "the first segment starts inside its page");
        assert!(meets_virtual_boundary(&segments, PAGE), "max segment {max_segment_size:#x}: {segments:x?}");
        command.complete().unwrap();
    }
}

#[test]
fn scattered_whole_pages_and_page_edged_ends_are_used_in_place() {
    let platform = machine();
    // What a PRP list describes: a start inside a page, whole pages, an end inside one.
    let pieces = [(Zone::Low, 0x300, 0xd00), (Zone::High, 0, PAGE), (Zone::Low, 0, PAGE), (Zone::High, 0, 0x480)];
    for direction in DIRECTIONS {
        let scattered = scattered(platform, &pieces, direction);
        let mut command = IoDmaCommand::new(platform, PRP).unwrap();
        command.set_memory_descriptor(scattered.buffer.clone(), true).unwrap();
        assert_eq!(command.bounced_bytes(), 0, "every piece meets the rule in place");
        let addresses: Vec<u64> = command.segments().iter().map(|segment| segment.address.as_u64()).collect();
        assert_eq!(addresses, scattered.starts);
        assert!(meets_virtual_boundary(command.segments(), PAGE));
        round_trip(platform, &mut command, &scattered.buffer);
    }
}

#[test]
pub(super) fn a_middle_piece_that_starts_inside_a_page_is_bounced() {
    let platform = machine();
    let pieces = [(Zone::Low, 0, PAGE), (Zone::Low, 0x200, 0xe00), (Zone::Low, 0, PAGE)];
    for direction in DIRECTIONS {
        let scattered = scattered(platform, &pieces, direction);
        let mut command = IoDmaCommand::new(platform, PRP).unwrap();
        command.set_memory_descriptor(scattered.buffer.clone(), true).unwrap();
        let segments = command.segments().to_vec();
        assert!(meets_virtual_boundary(&segments, PAGE), "{segments:x?}");
        assert_eq!(segments[0].address.as_u64(), scattered.starts[0], "the first page stays in place");
        // The piece after the odd one is bounced with it: in the bounce buffer
        // it starts 0xe00 into a page, so it cannot be a segment of its own.
        assert_eq!(command.bounced_bytes(), 0xe00 + PAGE);
        assert_eq!(command.bounce_buffers().len(), 1);
        round_trip(platform, &mut command, &scattered.buffer);
    }
}

#[test]
pub(super) fn a_piece_that_ends_inside_a_page_before_another_is_bounced() {
    let platform = machine();
    // The second piece ends inside its page; the third starts where it left off
    // in the page, so the two fill one bounce page and the last page is in place.
    let pieces = [(Zone::Low, 0, PAGE), (Zone::Low, 0, 0x800), (Zone::Low, 0x800, 0x800), (Zone::Low, 0, PAGE)];
    for direction in DIRECTIONS {
        let scattered = scattered(platform, &pieces, direction);
        let mut command = IoDmaCommand::new(platform, PRP).unwrap();
        command.set_memory_descriptor(scattered.buffer.clone(), true).unwrap();
        let segments = command.segments().to_vec();
        assert!(meets_virtual_boundary(&segments, PAGE), "{segments:x?}");
        assert_eq!(command.bounced_bytes(), PAGE, "only the two half pages are bounced");
        assert_eq!(segments.len(), 3);
        assert_eq!(segments[0].address.as_u64(), scattered.starts[0]);
        assert_eq!(segments[2].address.as_u64(), scattered.starts[3], "the last page is used in place");
        round_trip(platform, &mut command, &scattered.buffer);
    }
}

#[test]
pub(super) fn a_32_bit_device_with_the_rule_bounces_below_4_gib() {
    let platform = machine();
    // The high half page is bounced for reach; its bounce copy ends inside a
    // page, so the low pages after it must follow it into the buffer.
    let pieces = [(Zone::Low, 0, PAGE), (Zone::High, 0, 0x800), (Zone::Low, 0, PAGE), (Zone::Low, 0, PAGE)];
    let spec = Specification { virtual_boundary: PAGE, ..Specification::UNLIMITED_32 };
    for direction in DIRECTIONS {
        let scattered = scattered(platform, &pieces, direction);
        let mut command = IoDmaCommand::new(platform, spec).unwrap();
        command.set_memory_descriptor(scattered.buffer.clone(), true).unwrap();
        let segments = command.segments().to_vec();
        assert!(meets_virtual_boundary(&segments, PAGE), "{segments:x?}");
        assert!(segments.iter().all(|segment| segment.end() <= FOUR_GIB), "{segments:x?}");
        assert_eq!(segments[0].address.as_u64(), scattered.starts[0], "the first page stays in place");
        assert_eq!(command.bounced_bytes(), 0x800 + 2 * PAGE);
        round_trip(platform, &mut command, &scattered.buffer);
    }
}

#[test]
pub(super) fn a_forced_double_buffer_keeps_the_rule_with_a_segment_limit() {
    let platform = machine();
    // 6 KiB segments: resolved to 4 KiB, so that every cut falls on a page.
    let spec = Specification { max_segment_size: 0x1800, ..PRP };
    assert_eq!(spec.rules().unwrap().max_cut(), PAGE);
    let buffer = low_buffer(platform, 4 * PAGE, IoDirection::InOut);
    let mut command = IoDmaCommand::new(platform, spec).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0x100, 3 * PAGE).unwrap();
    assert_eq!(command.bounced_bytes(), 0);
    assert!(meets_virtual_boundary(command.segments(), PAGE), "in place: {:x?}", command.segments());
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER | SyncOptions::OUT).unwrap();
    assert!(command.is_wholly_double_buffered());
    assert!(meets_virtual_boundary(command.segments(), PAGE), "double-buffered: {:x?}", command.segments());
    let original = pattern(4 * PAGE as usize, 7);
    assert_eq!(device_reads(platform, &command), original[0x100..0x100 + 3 * PAGE as usize]);
    let written = pattern(3 * PAGE as usize, 78);
    device_writes(platform, command.segments(), &written);
    command.complete().unwrap();
    let mut expected = original;
    expected[0x100..0x100 + 3 * PAGE as usize].copy_from_slice(&written);
    assert_eq!(contents(&buffer), expected);
}

#[test]
fn a_restriction_adds_the_rule_for_one_transfer() {
    let platform = machine();
    let pieces = [(Zone::Low, 0, PAGE), (Zone::Low, 0x200, 0xe00), (Zone::Low, 0, PAGE)];
    let scattered = scattered(platform, &pieces, IoDirection::Out);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    let prp = TransferOptions {
        restrict: Some(Specification { virtual_boundary: PAGE, ..Specification::UNLIMITED_64 }),
        force_double_buffer: false,
    };
    let segments = command.with_transfer(scattered.buffer.clone(), 0, 0, &prp, |s| Ok(s.to_vec())).unwrap();
    assert!(meets_virtual_boundary(&segments, PAGE), "{segments:x?}");
    let plain = command.with_transfer(scattered.buffer, 0, 0, &TransferOptions::default(), |s| Ok(s.to_vec())).unwrap();
    assert_eq!(plain.len(), 3, "without the restriction every piece is used in place");
}

#[test]
fn invalid_virtual_boundaries_are_refused_when_the_command_is_made() {
    let platform = machine();
    for spec in [
        Specification { virtual_boundary: 3000, ..Specification::UNLIMITED_64 },
        // A middle segment spans whole pages: a smaller boundary or segment
        // limit leaves it no valid length.
        Specification { boundary: 0x800, ..PRP },
        Specification { max_segment_size: 0x800, ..PRP },
    ] {
        assert_eq!(IoDmaCommand::new(platform, spec).err(), Some(IoReturn::BadArgument), "{spec:?}");
    }
}

/// What the device reads through the IOMMU at the command's segments.
fn device_reads_through(
    memory: &SimulatedPlatform,
    mapper: &crate::dma::simulated_mapper::SimulatedMapper,
    segments: &[Segment],
) -> Vec<u8> {
    let mut bytes = Vec::new();
    for segment in segments {
        let (mut address, end) = (segment.address.as_u64(), segment.end());
        while address < end {
            let run = (PAGE - address % PAGE).min(end - address);
            let mut piece = alloc::vec![0; run as usize];
            memory.device_read(mapper.device_address(address, FaultAccess::Read).unwrap(), &mut piece);
            bytes.extend_from_slice(&piece);
            address += run;
        }
    }
    bytes
}

#[test]
fn behind_an_iommu_whole_pages_are_one_segment_and_a_piece_inside_a_page_is_bounced() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    let whole = [(Zone::High, 0x300, 0xd00), (Zone::Low, 0, PAGE), (Zone::High, 0, 0x480)];
    let scattered_pages = scattered(platform, &whole, IoDirection::InOut);
    let mut command = IoDmaCommand::new(platform, PRP).unwrap();
    command.set_memory_descriptor(scattered_pages.buffer.clone(), true).unwrap();
    assert_eq!(command.segments().len(), 1, "consecutive IOVAs: {:x?}", command.segments());
    assert_eq!(command.bounced_bytes(), 0);
    command.complete().unwrap();

    // The IOVAs of the middle piece's page start a page after the first's, but
    // the piece starts 0x200 into it: a gap inside a page, in IOVA space too.
    let odd = [(Zone::High, 0, PAGE), (Zone::Low, 0x200, 0xe00), (Zone::High, 0, PAGE)];
    let scattered_odd = scattered(platform, &odd, IoDirection::InOut);
    let mut command = IoDmaCommand::new(platform, PRP).unwrap();
    command.set_memory_descriptor(scattered_odd.buffer.clone(), true).unwrap();
    let segments = command.segments().to_vec();
    assert!(meets_virtual_boundary(&segments, PAGE), "{segments:x?}");
    assert!(command.bounced_bytes() > 0);
    let original = pattern(scattered_odd.buffer.length() as usize, 7);
    assert_eq!(device_reads_through(memory, &mapper, &segments), original);
    let written = pattern(original.len(), 79);
    device_writes_through(memory, &mapper, &segments, &written).unwrap();
    command.complete().unwrap();
    assert_eq!(contents(&scattered_odd.buffer), written);
    assert_eq!(mapper.mapped_pages(), 0);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A buffer shaped as a PRP list describes one: the first piece starts
    /// anywhere (dword-aligned) and ends on a page, the middle pieces are whole
    /// pages, the last starts on a page and ends anywhere; each spans 1 to 3 pages.
    fn prp_shaped() -> impl Strategy<Value = Vec<(Zone, u64, u64)>> {
        let zone = prop_oneof![Just(Zone::Low), Just(Zone::High)];
        let piece = (zone, 1u64..=3);
        (prop::collection::vec(piece, 1..6), 0u64..PAGE / 4, 1u64..=PAGE).prop_map(|(pieces, first_start, last_end)| {
            let count = pieces.len();
            pieces
                .into_iter()
                .enumerate()
                .map(|(index, (zone, pages))| {
                    let start = if index == 0 { first_start * 4 } else { 0 };
                    let end = if index == count - 1 { (pages - 1) * PAGE + last_end } else { pages * PAGE };
                    (zone, start, end.max(start + 1) - start)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn a_buffer_that_meets_the_rule_goes_to_the_device_in_place(
            pieces in prp_shaped(),
            max_segment_pages in 0u64..4,
        ) {
            let platform = machine();
            let scattered = scattered(platform, &pieces, IoDirection::InOut);
            let spec = Specification { max_segment_size: max_segment_pages * PAGE, ..PRP };
            let mut command = IoDmaCommand::new(platform, spec).unwrap();
            command.set_memory_descriptor(scattered.buffer.clone(), true).unwrap();
            let segments = command.segments().to_vec();
            prop_assert_eq!(command.bounced_bytes(), 0, "{:x?}", segments);
            prop_assert!(meets_virtual_boundary(&segments, PAGE), "{:x?}", segments);
            prop_assert_eq!(segments[0].address.as_u64(), scattered.starts[0]);
            round_trip(platform, &mut command, &scattered.buffer);
        }
    }
}
