//! Buffers lent to a device and given back: `DmaTransfer`, underrun-aware
//! completion, and the paths that must never free memory a device may write.

use alloc::boxed::Box;

use super::*;
use crate::dma::simulated::STALE_BYTE;
use crate::dma::{Cause, DmaBuffer, DmaTransfer, IoReturn, Misuse, Specification, SyncOptions, TransferOptions};

fn high(platform: &'static SimulatedPlatform, length: u64, direction: IoDirection) -> DmaBuffer {
    DmaBuffer::from_descriptor(high_buffer(platform, length, direction)).unwrap()
}

fn plain() -> TransferOptions {
    TransferOptions::default()
}

#[test]
pub(super) fn a_bounced_read_copies_back_exactly_the_bytes_the_device_moved() {
    let platform = machine();
    let mut buffer = high(platform, 3 * 4096, IoDirection::In);
    let original = buffer.to_vec(0, 3 * 4096).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let copies_before = platform.accounting().stats().copies_to_bounce;
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
    assert_eq!(platform.accounting().stats().copies_to_bounce, copies_before, "an In transfer is not filled");
    let segments = transfer.segments().to_vec();
    assert!(segments.iter().all(|segment| segment.end() <= FOUR_GIB));
    // The device writes only the first 5000 bytes, then stops (a short read).
    device_writes(platform, &segments[..1], &pattern(segments[0].length as usize, 99));
    let completed = transfer.complete(5000);
    let failure = completed.result.unwrap_err();
    assert_eq!(failure.code(), IoReturn::Underrun);
    assert_eq!(failure.cause(), Cause::ShortTransfer { moved: 5000, prepared: 3 * 4096 });
    let after = buffer.to_vec(0, 3 * 4096).unwrap();
    assert_eq!(after[..5000], pattern(segments[0].length as usize, 99)[..5000], "the device's bytes came back");
    assert_eq!(after[5000..], original[5000..], "bytes the device did not write are untouched");
    assert!(!after.contains(&STALE_BYTE) || original.contains(&STALE_BYTE), "no stale bounce memory leaked");
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

#[test]
pub(super) fn a_write_fills_its_bounce_buffer_and_a_forced_double_buffer_copies_the_whole_range() {
    let platform = machine();
    let mut buffer = high(platform, 8192, IoDirection::Out);
    let original = buffer.to_vec(0, 8192).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
    assert_eq!(device_reads(platform, transfer.command()), original, "the device reads the buffer's bytes");
    transfer.complete(8192).result.unwrap();

    let mut low = DmaBuffer::from_descriptor(low_buffer(platform, 8192, IoDirection::In)).unwrap();
    let forced = TransferOptions { restrict: None, force_double_buffer: true };
    let before = platform.accounting().stats();
    let transfer = DmaTransfer::prepare(&mut command, &mut low, 0, 0, &forced).unwrap();
    assert!(transfer.command().is_wholly_double_buffered());
    let after = platform.accounting().stats();
    assert_eq!(after.bytes_to_bounce - before.bytes_to_bounce, 8192, "by contract the move fills the whole range");
    transfer.complete(8192).result.unwrap();
}

#[test]
fn a_transfer_dropped_before_any_device_saw_it_releases_quietly() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let original = buffer.to_vec(0, 4096).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let log_before = platform.accounting().misuse_log().len();
    drop(DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap());
    assert_eq!(platform.accounting().misuse_log().len(), log_before, "nothing to report");
    assert_eq!(buffer.to_vec(0, 4096).unwrap(), original, "nothing stale was copied back");
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
    assert!(!command.is_prepared() && command.memory_descriptor().is_none(), "the command is free again");
}

#[test]
fn a_transfer_dropped_after_its_segments_were_handed_out_leaks_and_reports() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let free_before = platform.free_frames_count();
    {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
        let _ = transfer.segments();
    }
    let report = *platform.accounting().misuse_log().last().unwrap();
    assert_eq!(report.misuse, Misuse::TransferDroppedWhileDeviceOwned);
    assert_eq!(platform.free_frames_count(), free_before - 1, "the bounce page stays allocated");
    assert_eq!(platform.accounting().stats().leaked_pages, 1);
    let failure = buffer.read_bytes(0, &mut [0; 4]).unwrap_err();
    assert_eq!((failure.code(), failure.cause()), (IoReturn::NotPermitted, Cause::MemoryAbandoned));
    let free_before_drop = platform.free_frames_count();
    drop(buffer);
    assert_eq!(platform.free_frames_count(), free_before_drop, "the buffer's frames are leaked, not freed");
}

#[test]
fn an_abandoned_transfer_gives_the_command_back_and_leaks_the_memory() {
    let platform = machine();
    let buffer = high(platform, 4096, IoDirection::In);
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(command, buffer, 0, 0, &plain()).unwrap();
    let free_before = platform.free_frames_count();
    let mut command = transfer.abandon();
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::AbandonedWhileDeviceOwned);
    assert_eq!(platform.free_frames_count(), free_before, "neither the bounce page nor the buffer is freed");
    let mut next = high(platform, 4096, IoDirection::In);
    DmaTransfer::prepare(&mut command, &mut next, 0, 0, &plain()).unwrap().complete(4096).result.unwrap();
}

#[test]
fn a_refused_prepare_gives_buffer_and_command_back_with_the_cause() {
    let platform = machine();
    let buffer = high(platform, 3 * 4096, IoDirection::In);
    let tiny = Specification { max_segments: 1, max_segment_size: 4096, ..Specification::UNLIMITED_32 };
    let command = IoDmaCommand::new(platform, tiny).unwrap();
    let refused = DmaTransfer::prepare(command, buffer, 0, 0, &plain()).unwrap_err();
    assert_eq!(refused.failure.code(), IoReturn::NoResources);
    assert_eq!(refused.failure.cause(), Cause::TooManySegments { needed: 3, allowed: 1 });
    assert!(refused.failure.to_string().contains("3 segments needed, the device takes at most 1"));
    assert_eq!(refused.buffer.length(), 3 * 4096, "the buffer came back");
    assert!(!refused.command.is_prepared() && refused.command.memory_descriptor().is_none());
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

#[test]
fn the_bounce_budget_and_the_address_limit_are_named_when_they_refuse() {
    let platform = SimulatedPlatform::leak(1);
    let mut buffer = high(platform, 2 * 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let failure = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap_err().failure;
    assert_eq!(failure.cause(), Cause::BounceBudgetSpent { pages: 2, in_use: 0, limit: 1 });

    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let nothing_there = Specification { num_address_bits: 12, ..Specification::UNLIMITED_64 };
    let mut command = IoDmaCommand::new(platform, nothing_there).unwrap();
    let failure = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap_err().failure;
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert_eq!(failure.cause(), Cause::NoReachableMemory { pages: 1, address_bits: 12 });
    assert!(failure.to_string().contains("below 2^12"), "{failure}");
}

#[test]
pub(super) fn an_unfilled_read_refuses_synchronize_in_and_a_filled_one_allows_it() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
    let failure = transfer.synchronize(SyncOptions::IN).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NotPermitted, "stale bounce bytes must not reach the buffer");
    transfer.synchronize(SyncOptions::OUT).unwrap();
    transfer.synchronize(SyncOptions::IN).unwrap();
    transfer.complete(4096).result.unwrap();
}

#[test]
fn a_busy_command_or_a_shared_descriptor_is_refused() {
    let platform = machine();
    let shared = high_buffer(platform, 4096, IoDirection::In);
    let _other_handle = shared.clone();
    assert_eq!(DmaBuffer::from_descriptor(shared).unwrap_err().code(), IoReturn::Busy);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    let mut first = high(platform, 4096, IoDirection::In);
    let mut second = high(platform, 4096, IoDirection::In);
    let transfer = DmaTransfer::prepare(&mut command, &mut first, 0, 0, &plain()).unwrap();
    let mut command_again = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command_again.set_memory_descriptor(high_buffer(platform, 4096, IoDirection::In), true).unwrap();
    let refused = DmaTransfer::prepare(&mut command_again, &mut second, 0, 0, &plain()).unwrap_err();
    assert_eq!(refused.failure.code(), IoReturn::Busy);
    command_again.complete().unwrap();
    transfer.complete(4096).result.unwrap();
}

#[test]
fn with_transfer_on_a_prepared_command_is_busy_and_leaves_it_prepared() {
    let platform = machine();
    let buffer = low_buffer(platform, 8192, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let segments = command.segments().to_vec();
    let result = command.with_transfer(buffer.clone(), 0, 0, &plain(), |_| Ok(()));
    assert_eq!(result, Err(IoReturn::Busy));
    assert!(command.is_prepared(), "the caller's prepare is untouched");
    assert_eq!(command.prepared_range(), Some((0, 8192)));
    assert_eq!(command.segments(), segments.as_slice());
    command.complete().unwrap();
}

#[test]
fn a_descriptor_complete_cannot_undo_a_commands_prepare() {
    let platform = machine();
    let buffer = high_buffer(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    assert_eq!(buffer.complete(), Err(IoReturn::NotReady), "the prepare is the command's to undo");
    assert_eq!(buffer.prepare_count(), 1);
    assert_eq!(command.complete(), Ok(()));
    let stats = platform.accounting().stats();
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 0));
    assert_eq!(buffer.prepare_count(), 0);
}

#[test]
fn a_boxed_buffer_dropped_while_prepared_is_leaked_not_freed() {
    let platform = machine();
    let boxed: Box<[u8]> = alloc::vec![0x5a; 4096].into_boxed_slice();
    let address = boxed.as_ptr() as u64;
    platform.map(x86_64::VirtAddr::new(address), x86_64::PhysAddr::new(0x0020_0000));
    platform.map(x86_64::VirtAddr::new(address + 4096), x86_64::PhysAddr::new(0x0020_1000));
    let descriptor = IoMemoryDescriptor::from_boxed(platform, boxed, IoDirection::In).unwrap();
    descriptor.prepare().unwrap();
    drop(descriptor);
    // Had the heap buffer been freed, the allocator would hand the same block to
    // the next allocation of its size; leaked, it never can.
    let next: Box<[u8]> = alloc::vec![0; 4096].into_boxed_slice();
    assert_ne!(next.as_ptr() as u64, address, "the heap buffer was freed under a possible device");
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::DescriptorDroppedWhilePrepared);
}

#[test]
fn handing_memory_back_more_often_than_lent_is_reported_not_hidden() {
    let platform = machine();
    let buffer = low_buffer(platform, 4096, IoDirection::In);
    buffer.set_device_owned(false);
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::OwnershipImbalance);
}

#[test]
fn memory_abandoned_to_one_device_is_never_prepared_for_another() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
    transfer.abandon();
    let refused = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap_err();
    assert_eq!((refused.failure.code(), refused.failure.cause()), (IoReturn::NotPermitted, Cause::MemoryAbandoned));
}

#[test]
fn segments_seen_through_the_command_count_as_handed_out() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let free_before = platform.free_frames_count();
    {
        let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
        let _ = transfer.command().segments();
    }
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::TransferDroppedWhileDeviceOwned);
    assert_eq!(platform.free_frames_count(), free_before - 1, "the bounce page a device may use stays allocated");
}

#[test]
fn forced_double_buffering_after_the_device_got_the_segments_is_refused() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &plain()).unwrap();
    let handed = transfer.segments().to_vec();
    let failure = transfer.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NotPermitted);
    assert_eq!(transfer.segments(), handed.as_slice(), "the device's segments still hold");
    assert!(platform.is_allocated(handed[0].address.as_u64()));
    transfer.complete(4096).result.unwrap();
}
