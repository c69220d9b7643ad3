//! The learner's experiments: a skipped copy shows exactly the stale bytes it
//! should, once, and the next transfer is whole again.

use super::super::DmaPlatform;
use super::super::experiment::{self, Skip};
use super::super::hooks::{self, DriverCheck, Site};
use super::super::simulated::{STALE_BYTE, SimulatedPlatform};
use super::super::{
    DmaAddr, DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, IoMemoryDescriptor, Specification, TransferOptions,
};
use crate::memory::Constraints;

/// A buffer above 4 GiB holding `byte`, and a 32-bit command: every transfer bounces.
fn bounced_setup(direction: IoDirection, byte: u8) -> (&'static SimulatedPlatform, DmaBuffer, IoDmaCommand) {
    let platform = SimulatedPlatform::leak(64);
    let mut buffer = DmaBuffer::allocate(platform, 4096, direction, Constraints::NONE).unwrap();
    buffer.write_bytes(0, &[byte; 4096]).unwrap();
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    (platform, buffer, command)
}

#[test]
fn a_skipped_copy_back_leaves_the_old_bytes_once() {
    let (platform, mut buffer, mut command) = bounced_setup(IoDirection::In, 0x5a);
    platform.accounting().arm_experiment(Skip::CopyBack);
    for (round, expected) in [(0, 0x5a), (1, 0x77)] {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
        let segment = transfer.segments()[0];
        assert!(segment.address.as_u64() < 1 << 32, "bounced");
        platform.device_write(segment.address.as_u64(), &[0x77; 4096]);
        transfer.complete(4096).result.unwrap();
        let mut first = [0u8; 8];
        buffer.read_bytes(0, &mut first).unwrap();
        assert_eq!(first, [expected; 8], "round {round}: skipped the first time only");
    }
    assert!(!platform.accounting().disarm_experiment(), "the experiment was used up");
}

#[test]
fn a_skipped_fill_lets_the_device_read_stale_bounce_bytes_once() {
    let (platform, mut buffer, mut command) = bounced_setup(IoDirection::Out, 0x42);
    platform.accounting().arm_experiment(Skip::Fill);
    for (round, expected) in [(0, STALE_BYTE), (1, 0x42)] {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
        let segment = transfer.segments()[0];
        let mut seen = [0u8; 8];
        platform.device_read(segment.address.as_u64(), &mut seen);
        assert_eq!(seen, [expected; 8], "round {round}: the device read the bounce buffer");
        transfer.complete(4096).result.unwrap();
    }
}

#[test]
fn a_skipped_boundary_split_gives_one_segment_across_it_once() {
    let platform = SimulatedPlatform::leak(64);
    let placement = Constraints { alignment: 0x10000, ..Constraints::NONE };
    let mut buffer = DmaBuffer::allocate(platform, 0x20000, IoDirection::In, placement).unwrap();
    let specification = Specification { boundary: 0x10000, max_segment_size: 0x10000, ..Specification::UNLIMITED_64 };
    let mut command = IoDmaCommand::new(platform, specification).unwrap();
    platform.accounting().arm_experiment(Skip::Boundary);
    for (round, expected) in [(0, 1), (1, 2)] {
        // 64 KiB from 32 KiB in: across the 64 KiB line in the middle.
        let transfer =
            DmaTransfer::prepare(&mut command, &mut buffer, 0x8000, 0x10000, &TransferOptions::default()).unwrap();
        let segments = transfer.segments().to_vec();
        assert_eq!(segments.len(), expected, "round {round}: {segments:?}");
        let _ = transfer.complete(0x10000);
    }
}

#[test]
fn a_skipped_bounce_for_reach_cuts_the_devices_record_once() {
    let (platform, mut buffer, mut command) = bounced_setup(IoDirection::In, 0x5a);
    let high = buffer.descriptor().physical_segment(0).unwrap().0.as_u64();
    assert!(high >= 1 << 32);
    platform.accounting().arm_experiment(Skip::Reach);
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    // Not bounced: the segments say what a 32-bit register keeps of the real
    // address, and the records agree with them.
    assert_eq!(transfer.segments()[0].address.as_u64(), high & 0xffff_ffff, "the cut address");
    // HOST32 records: a 32-bit address, then a 32-bit length.
    let mut record = [0u8; 8];
    transfer.write_segments(0, &mut record).unwrap();
    let written = u64::from(u32::from_ne_bytes(record[..4].try_into().unwrap()));
    assert_eq!(written, high & 0xffff_ffff, "the record holds what the segment says");
    let _ = transfer.complete(0);
    let again = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    assert!(again.segments()[0].address.as_u64() < 1 << 32, "the next transfer bounces again");
    let _ = again.complete(0);
}

#[test]
fn a_skipped_internal_alignment_gives_a_piece_starting_inside_a_page_in_place_once() {
    let platform = SimulatedPlatform::leak(64);
    // Two pieces, each starting 0x800 into its own page: the second breaks a
    // page-aligned internal alignment (NVMe's PRP rule).
    let pieces = [(0x800, 0x800, Constraints::NONE), (0x800, 0x1800, Constraints::NONE)];
    let descriptor = IoMemoryDescriptor::allocate_scattered_at(platform, &pieces, IoDirection::In).unwrap();
    let second = descriptor.physical_segment(0x800).unwrap().0.as_u64();
    assert_eq!((descriptor.length(), second % 4096), (0x2000, 0x800));
    let mut buffer = DmaBuffer::from_descriptor(descriptor).unwrap();
    let specification =
        Specification { alignment: 4, alignment_internal_segments: 4096, ..Specification::UNLIMITED_64 };
    let mut command = IoDmaCommand::new(platform, specification).unwrap();
    platform.accounting().arm_experiment(Skip::InternalAlignment);
    for (round, in_place) in [(0, true), (1, false)] {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
        let segments = transfer.segments().to_vec();
        let given = segments.iter().any(|segment| segment.address.as_u64() == second);
        assert_eq!(given, in_place, "round {round}: {segments:?}");
        assert!(in_place || segments[1..].iter().all(|segment| segment.address.as_u64() % 4096 == 0));
        let _ = transfer.complete(0);
    }
    assert!(!platform.accounting().disarm_experiment(), "used up by the first transfer");
}

#[test]
fn a_driver_check_is_skipped_once_and_only_where_it_was_armed() {
    let (here, elsewhere) = (0u8, 0u8);
    let (here, elsewhere) = (Site::of(&here), Site::of(&elsewhere));
    assert!(!hooks::skip_check(here, DriverCheck::PrpRules), "nothing armed");
    experiment::arm_check(here, DriverCheck::PrpRules);
    assert!(!hooks::skip_check(elsewhere, DriverCheck::PrpRules), "another driver keeps its check");
    assert!(hooks::skip_check(here, DriverCheck::PrpRules), "skipped once");
    assert!(!hooks::skip_check(here, DriverCheck::PrpRules), "then on again");
    assert!(!experiment::disarm_check(here), "used up");
    experiment::arm_check(here, DriverCheck::PrpRules);
    assert!(experiment::disarm_check(here), "disarmed before any driver asked");
    assert!(!hooks::skip_check(here, DriverCheck::PrpRules));
}

#[test]
fn an_address_armed_elsewhere_aims_the_first_record_there_once() {
    let platform = SimulatedPlatform::leak(64);
    let mut buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    let own = buffer.descriptor().physical_segment(0).unwrap().0.as_u64();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    let site = Site::of(platform.accounting());
    let stolen = DmaAddr::new(0x7_7000);
    experiment::arm_elsewhere(site, stolen);
    for (round, expected) in [(0, stolen.as_u64()), (1, own)] {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
        assert_eq!(transfer.segments()[0].address.as_u64(), expected, "round {round}");
        // HOST64 records: the device's record says the same as the segment.
        let mut record = [0u8; 16];
        transfer.write_segments(0, &mut record).unwrap();
        assert_eq!(u64::from_ne_bytes(record[..8].try_into().unwrap()), expected, "round {round}: the record");
        let _ = transfer.complete(4096);
    }
    assert!(!experiment::disarm_elsewhere(site), "used up by the first transfer");
    experiment::arm_elsewhere(site, stolen);
    assert!(experiment::disarm_elsewhere(site), "disarmed before any transfer took it");
}
