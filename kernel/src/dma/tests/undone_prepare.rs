//! A `DmaTransfer::prepare` refused after its command was prepared (the forced
//! double buffering found no bounce memory) undoes the prepare: the statistics
//! read afterwards as if it had never happened.

use super::*;
use crate::dma::{DmaBuffer, DmaTransfer, IoReturn, Specification, TransferOptions};

const FORCED: TransferOptions = TransferOptions { restrict: None, force_double_buffer: true };

/// The counters a prepare moves, with the budget's (pages in use) included.
fn stats(platform: &SimulatedPlatform) -> crate::dma::BounceStats {
    platform.accounting().stats()
}

#[test]
fn a_direct_prepare_undone_by_a_failed_double_buffer_leaves_no_count() {
    // No bounce memory at all: the prepare is direct, its double buffer impossible.
    let platform = SimulatedPlatform::leak(0);
    let buffer = DmaBuffer::from_descriptor(low_buffer(platform, 4096, IoDirection::In)).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    let before = stats(platform);
    let refused = DmaTransfer::prepare(&mut command, buffer, 0, 0, &FORCED).expect_err("no bounce memory");
    assert_eq!(refused.failure.code(), IoReturn::NoResources);
    assert_eq!(stats(platform), before, "the undone prepare is not counted");
}

#[test]
fn a_bounced_prepare_undone_by_a_failed_double_buffer_leaves_no_count() {
    // One page low (in place), one high (bounced, and filled: `Out`), one bounce
    // page in all: the prepare takes it, the double buffer needs two.
    let platform = SimulatedPlatform::leak(1);
    let below = Constraints::below(PhysAddr::new(FOUR_GIB));
    let pieces = [(4096, below), (4096, Constraints::NONE)];
    let descriptor = IoMemoryDescriptor::allocate_scattered(platform, &pieces, IoDirection::Out).unwrap();
    let buffer = DmaBuffer::from_descriptor(descriptor).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let before = stats(platform);
    let refused = DmaTransfer::prepare(&mut command, buffer, 0, 0, &FORCED).expect_err("one bounce page only");
    assert_eq!(refused.failure.code(), IoReturn::NoResources);
    assert_eq!(stats(platform), before, "neither the bounced prepare nor its fill is counted");
    // And the same prepare without the option is counted once, as it should be.
    let transfer = DmaTransfer::prepare(refused.command, refused.buffer, 0, 0, &TransferOptions::default()).unwrap();
    let after = stats(platform);
    assert_eq!((after.bounced_transfers, after.copies_to_bounce, after.bytes_to_bounce), (1, 1, 4096));
    transfer.complete(8192).result.unwrap();
}
