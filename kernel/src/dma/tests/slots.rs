//! `TransferSlots`: prepare into a slot, lend, complete exactly once, abandon;
//! and typed entries made from the same list the segments and records come from.

use super::*;
use crate::dma::{
    Cause, DmaBuffer, FromSegment, IoFailure, IoReturn, NotPrepared, OutputFormat, SegmentPosition, Specification,
    TransferOptions, TransferSlots,
};

/// A test format: each segment as `(address, length, last)`.
#[derive(Debug, PartialEq)]
struct Entry(u64, u64, bool);

impl FromSegment for Entry {
    fn from_segment(segment: Segment, position: SegmentPosition, _: IoDirection) -> Result<Entry, IoFailure> {
        Ok(Entry(segment.address.as_u64(), segment.length, position.is_last()))
    }
}

const RECORDS: Specification = Specification { output: OutputFormat::LITTLE64, ..Specification::UNLIMITED_32 };

fn high(platform: &'static SimulatedPlatform, length: u64) -> DmaBuffer {
    DmaBuffer::allocate(platform, length, IoDirection::In, Constraints::NONE).unwrap()
}

#[test]
pub(super) fn a_slot_is_completed_once_and_its_command_goes_back() {
    let platform = machine();
    let mut slots = TransferSlots::new(platform, RECORDS, 2).unwrap();
    slots.prepare(1, high(platform, 8192), (0, 8192), IoDirection::In, &TransferOptions::default()).unwrap();
    assert!(slots.is_busy(1) && !slots.is_busy(0));
    assert_eq!(slots.busy(), 1);
    let lent = slots.lend(1).unwrap();
    assert_eq!(lent.length(), 8192);
    // Entries, segments and records are one list.
    let entries: Vec<Entry> = lent.entries().unwrap();
    let segments = lent.segments().to_vec();
    let mut records = [0u8; 16 * 4];
    let (count, _) = lent.write_segments(0, &mut records).unwrap();
    assert_eq!(count, segments.len());
    for (index, (entry, segment)) in entries.iter().zip(&segments).enumerate() {
        assert_eq!((entry.0, entry.1), (segment.address.as_u64(), segment.length));
        assert_eq!(entry.2, index + 1 == segments.len(), "only the last is last");
        let record = &records[16 * index..16 * index + 16];
        assert_eq!(u64::from_le_bytes(record[..8].try_into().unwrap()), segment.address.as_u64());
    }
    assert!(slots.lend(0).is_none(), "a free slot lends nothing");
    let completed = slots.complete(1, 4096).unwrap();
    assert_eq!(completed.result.unwrap_err().cause(), Cause::ShortTransfer { moved: 4096, prepared: 8192 });
    assert_eq!(completed.buffer.length(), 8192);
    assert!(slots.complete(1, 8192).is_none(), "nothing to complete twice");
    assert_eq!(slots.check_stopped(), 0, "the command went back to the pool");
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

#[test]
fn a_refused_prepare_gives_the_buffer_back_with_the_dma_layers_cause() {
    let platform = SimulatedPlatform::leak(1);
    let mut slots = TransferSlots::new(platform, RECORDS, 1).unwrap();
    let refused = slots.prepare(0, high(platform, 8192), (0, 8192), IoDirection::In, &TransferOptions::default());
    let Err(NotPrepared { failure, buffer }) = refused else { panic!("two bounce pages do not fit a budget of one") };
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert!(matches!(failure.cause(), Cause::BounceBudgetSpent { .. }), "{failure}");
    assert_eq!(buffer.length(), 8192, "the buffer came back");
    assert!(!slots.is_busy(0));
    let past = slots.prepare(3, buffer, (0, 4096), IoDirection::In, &TransferOptions::default()).unwrap_err();
    assert_eq!(past.failure.code(), IoReturn::BadArgument, "no such slot");
}

#[test]
fn an_abandoned_slot_leaks_its_memory_and_frees_the_slot() {
    let platform = machine();
    let mut slots = TransferSlots::new(platform, RECORDS, 1).unwrap();
    slots.prepare(0, high(platform, 4096), (0, 4096), IoDirection::In, &TransferOptions::default()).unwrap();
    let _ = slots.lend(0).unwrap().segments();
    let before = platform.accounting().stats();
    assert!(slots.abandon(0));
    let after = platform.accounting().stats();
    assert_eq!(after.leaked_transfers, before.leaked_transfers + 1);
    assert_eq!(after.pages_in_use, before.pages_in_use, "the bounce page stays allocated");
    assert!(!slots.abandon(0), "nothing left to abandon");
    assert!(!slots.is_busy(0));
}

#[test]
fn a_slot_that_stays_prepared_takes_turns_with_the_device() {
    let platform = machine();
    let mut slots = TransferSlots::new(platform, RECORDS, 2).unwrap();
    slots.prepare(0, high(platform, 2048), (0, 2048), IoDirection::In, &TransferOptions::default()).unwrap();
    let address = slots.lend(0).unwrap().segments()[0].address.as_u64();
    let mut seen = [0u8; 60];
    let refused = slots.read_bytes(0, 0, &mut seen).unwrap_err();
    assert_eq!(refused.cause(), Cause::DeviceOwnsMemory, "the device's turn first");
    for round in 0..3u8 {
        platform.device_write(address, &[round; 60]);
        slots.synchronize_range(0, crate::dma::SyncOptions::IN, (0, 60)).unwrap();
        assert_eq!(slots.read_bytes(0, 0, &mut seen).unwrap(), 60);
        assert_eq!(seen, [round; 60], "round {round}");
        slots.synchronize_range(0, crate::dma::SyncOptions::OUT, (0, 0)).unwrap();
    }
    let free = slots.synchronize_range(1, crate::dma::SyncOptions::IN, (0, 1)).unwrap_err();
    assert_eq!(free, IoFailure::new(IoReturn::NotReady, Cause::NotPrepared), "slot 1 holds nothing");
    assert!(slots.write_bytes(1, 0, &[1]).is_err());
    assert!(slots.complete(0, 0).is_some());
}
