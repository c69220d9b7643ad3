//! One test per row of the contract's tables, asserting the exact `IoReturn`.

use super::*;
use crate::dma::IoReturn;
use crate::dma::{Misuse, OutputFormat, Specification, SyncOptions};

fn command(platform: &'static SimulatedPlatform, specification: Specification) -> IoDmaCommand {
    IoDmaCommand::new(platform, specification).unwrap()
}

#[test]
fn invalid_specification_is_refused_when_the_command_is_made() {
    let platform = machine();
    let bad = Specification { num_address_bits: 8, ..Specification::UNLIMITED_64 };
    assert_eq!(IoDmaCommand::new(platform, bad).err(), Some(IoReturn::BadArgument));
}

#[test]
fn set_memory_descriptor_is_busy_while_another_is_prepared() {
    let platform = machine();
    let first = low_buffer(platform, 4096, IoDirection::Out);
    let second = low_buffer(platform, 4096, IoDirection::Out);
    let mut command = command(platform, Specification::UNLIMITED_64);
    command.set_memory_descriptor(first.clone(), true).unwrap();
    assert_eq!(command.set_memory_descriptor(second, false), Err(IoReturn::Busy));
    assert_eq!(command.set_memory_descriptor(first, false), Ok(()), "the same descriptor is fine");
    command.complete().unwrap();
}

#[test]
fn clear_memory_descriptor_needs_auto_complete_when_prepared() {
    let platform = machine();
    let buffer = high_buffer(platform, 8192, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    command.prepare(0, 0).unwrap();
    assert_eq!(command.clear_memory_descriptor(false), Err(IoReturn::NotReady));
    assert!(command.is_prepared());
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::ClearWhilePrepared);
    assert_eq!(command.clear_memory_descriptor(true), Ok(()));
    assert!(!command.is_prepared() && command.memory_descriptor().is_none());
    assert_eq!(buffer.prepare_count(), 0);
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

#[test]
fn prepare_errors_are_exact() {
    let platform = machine();
    let buffer = low_buffer(platform, 8192, IoDirection::Out);
    let mut unbound = command(platform, Specification::UNLIMITED_64);
    assert_eq!(unbound.prepare(0, 512), Err(IoReturn::BadArgument), "no descriptor");

    let mut plain = command(platform, Specification::UNLIMITED_64);
    plain.set_memory_descriptor(buffer.clone(), false).unwrap();
    assert_eq!(plain.prepare(8192, 1), Err(IoReturn::BadArgument), "offset past the end");
    assert_eq!(plain.prepare(4096, 4097), Err(IoReturn::BadArgument), "range past the end");

    let small = Specification { max_transfer_size: 4096, ..Specification::UNLIMITED_64 };
    let mut limited = command(platform, small);
    limited.set_memory_descriptor(buffer.clone(), false).unwrap();
    assert_eq!(limited.prepare(0, 8192), Err(IoReturn::NoSpace));

    let sectors = Specification { alignment_length: 512, ..Specification::UNLIMITED_64 };
    let mut aligned = command(platform, sectors);
    aligned.set_memory_descriptor(buffer.clone(), false).unwrap();
    assert_eq!(aligned.prepare(0, 1000), Err(IoReturn::NotAligned));
    assert_eq!(aligned.prepare(0, 1024), Ok(()));
    assert_eq!(aligned.prepare(512, 1024), Err(IoReturn::NotReady), "nested, different range");
    assert_eq!(aligned.prepare(0, 1024), Ok(()), "nested, same range: only counts");
    aligned.complete().unwrap();
    assert!(aligned.is_prepared(), "one prepare is still outstanding");
    aligned.complete().unwrap();
    assert!(!aligned.is_prepared());
    assert_eq!(buffer.prepare_count(), 0);
}

#[test]
fn failed_prepare_leaves_no_trace() {
    let platform = SimulatedPlatform::leak(1);
    let buffer = high_buffer(platform, 3 * 4096, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    let stats = platform.accounting().stats();
    let free = platform.free_frames_count();
    assert_eq!(command.prepare(0, 0), Err(IoReturn::NoResources), "three pages to bounce, budget of one");
    assert!(!command.is_prepared());
    assert_eq!(buffer.prepare_count(), 0, "the descriptor's prepare was undone");
    assert_eq!(platform.accounting().stats(), stats, "accounting unchanged");
    assert_eq!(platform.free_frames_count(), free, "no frame kept");
    assert_eq!(command.gen_iovm_segments(0, 1).err(), Some(IoReturn::NotReady));
    // And with room, the same command works.
    platform.accounting().set_page_limit(16);
    assert_eq!(command.prepare(0, 0), Ok(()));
    command.complete().unwrap();
}

#[test]
fn gen_iovm_segments_errors_and_offsets() {
    let platform = machine();
    let buffer = low_buffer(platform, 3 * 4096, IoDirection::Out);
    let spec = Specification { max_segment_size: 4096, ..Specification::UNLIMITED_64 };
    let mut command = command(platform, spec);
    command.set_memory_descriptor(buffer, false).unwrap();
    assert_eq!(command.gen_iovm_segments(0, 4).err(), Some(IoReturn::NotReady));
    command.prepare(0, 0).unwrap();
    assert_eq!(command.gen_iovm_segments(0, 0).err(), Some(IoReturn::BadArgument));
    assert_eq!(command.gen_iovm_segments(3 * 4096, 1).err(), Some(IoReturn::Overrun));
    let (first, next) = command.gen_iovm_segments(0, 2).unwrap();
    assert_eq!((first.len(), next), (2, 8192));
    let (rest, end) = command.gen_iovm_segments(next, 8).unwrap();
    assert_eq!((rest.len(), end), (1, 3 * 4096));
    let (partial, _) = command.gen_iovm_segments(100, 1).unwrap();
    assert_eq!(partial[0].address, first[0].address + 100);
    assert_eq!(partial[0].length, 4096 - 100);
    command.complete().unwrap();
}

#[test]
fn segments_are_written_in_the_output_format() {
    let platform = machine();
    let buffer = low_buffer(platform, 4096, IoDirection::Out);
    let spec = Specification { output: OutputFormat::BIG32, ..Specification::UNLIMITED_32 };
    let mut command = command(platform, spec);
    command.set_memory_descriptor(buffer, true).unwrap();
    let mut records = [0u8; 16];
    let (count, next) = command.write_segments(0, &mut records).unwrap();
    assert_eq!((count, next), (1, 4096));
    let segment = command.segments()[0];
    assert_eq!(&records[..4], &(segment.address.as_u64() as u32).to_be_bytes());
    assert_eq!(&records[4..8], &4096u32.to_be_bytes());
    command.complete().unwrap();
}

#[test]
fn synchronize_validates_options_first() {
    let platform = machine();
    let mut command = command(platform, Specification::UNLIMITED_32);
    for bits in [0, 1 | 2, 4, 0x8000_0000, 0x0100_0000 | 1 | 2] {
        assert_eq!(command.synchronize(SyncOptions::from_bits(bits)), Err(IoReturn::BadArgument), "{bits:#x}");
    }
    assert_eq!(command.synchronize(SyncOptions::IN), Err(IoReturn::NotReady), "not prepared");
    assert_eq!(command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER), Err(IoReturn::NotReady));
    let log = platform.accounting().misuse_log();
    assert_eq!(log.last().unwrap().misuse, Misuse::SynchronizeWithoutPrepare);
}

#[test]
pub(super) fn synchronize_with_nothing_bounced_does_nothing() {
    let platform = machine();
    let buffer = low_buffer(platform, 8192, IoDirection::InOut);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer, true).unwrap();
    let stats = platform.accounting().stats();
    assert_eq!(stats.direct_transfers, 1);
    assert_eq!(command.synchronize(SyncOptions::IN), Ok(()));
    assert_eq!(command.synchronize(SyncOptions::OUT), Ok(()));
    assert_eq!(platform.accounting().stats(), stats, "zero copies");
    command.complete().unwrap();
    assert_eq!(platform.accounting().stats().bytes_from_bounce, 0);
}

#[test]
pub(super) fn explicit_synchronize_copies_whatever_the_direction() {
    let platform = machine();
    // An Out descriptor: complete() would never copy back, but synchronize(In) does.
    let buffer = high_buffer(platform, 4096, IoDirection::Out);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let device_data = pattern(4096, 99);
    device_writes(platform, command.segments(), &device_data);
    command.synchronize(SyncOptions::IN).unwrap();
    assert_eq!(contents(&buffer), device_data, "In copied bounce -> descriptor");
    // The CPU owns the buffer again: change it and push it to the device with Out.
    let cpu_data = pattern(4096, 5);
    buffer.write_bytes(0, &cpu_data).unwrap();
    command.synchronize(SyncOptions::OUT).unwrap();
    assert_eq!(device_reads(platform, &command), cpu_data, "Out copied descriptor -> bounce");
    command.complete().unwrap();
    assert_eq!(contents(&buffer), cpu_data, "an Out descriptor gets nothing back at complete");
}

#[test]
pub(super) fn prepare_fills_a_fresh_bounce_buffer_even_for_in() {
    let platform = machine();
    let buffer = high_buffer(platform, 4096, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    assert_eq!(command.bounced_bytes(), 4096);
    assert!(command.segments().iter().all(|s| s.end() <= FOUR_GIB));
    assert_eq!(device_reads(platform, &command), pattern(4096, 7), "no stale data reaches the device");
    command.complete().unwrap();
}

#[test]
fn complete_copies_back_only_for_in_and_counts_nesting() {
    let platform = machine();
    let buffer = high_buffer(platform, 4096, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_32);
    assert_eq!(command.complete(), Err(IoReturn::NotReady));
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    command.prepare(0, 0).unwrap();
    let device_data = pattern(4096, 42);
    device_writes(platform, command.segments(), &device_data);
    command.complete().unwrap();
    assert_eq!(contents_unchecked(platform, &buffer), pattern(4096, 7), "nested: nothing copied yet");
    command.complete().unwrap();
    assert_eq!(contents(&buffer), device_data, "last complete copies back");
    assert_eq!(command.complete(), Err(IoReturn::NotReady), "completing twice");
    assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::CompleteWithoutPrepare);
    let stats = platform.accounting().stats();
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 0));
    assert_eq!((stats.bytes_to_bounce, stats.bytes_from_bounce), (4096, 4096));
}

/// The descriptor's bytes read around the debugging check, for looking while the
/// device still owns the buffer.
fn contents_unchecked(platform: &SimulatedPlatform, descriptor: &IoMemoryDescriptor) -> Vec<u8> {
    let (address, _) = descriptor.physical_segment(0).unwrap();
    let mut bytes = alloc::vec![0; descriptor.length() as usize];
    platform.device_read(address.as_u64(), &mut bytes);
    bytes
}

#[test]
fn buffers_that_meet_the_spec_are_not_copied() {
    let platform = machine();
    let buffer = high_buffer(platform, 3 * 4096, IoDirection::InOut);
    let mut command = command(platform, Specification::UNLIMITED_64);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    assert_eq!(command.bounced_bytes(), 0);
    assert_eq!(command.segments().len(), 1, "one contiguous segment");
    assert_eq!(command.segments()[0].address.as_u64(), buffer.physical_segment(0).unwrap().0.as_u64());
    command.complete().unwrap();
    let stats = platform.accounting().stats();
    assert_eq!((stats.bytes_to_bounce, stats.bytes_from_bounce, stats.bounced_transfers), (0, 0, 0));
}

#[test]
fn boundaries_split_segments_without_bouncing() {
    let platform = machine();
    let buffer = low_buffer(platform, 256 * 1024, IoDirection::In);
    let spec = Specification { boundary: 0x10000, alignment_length: 2, ..Specification::UNLIMITED_32 };
    let mut command = command(platform, spec);
    command.set_memory_descriptor(buffer, false).unwrap();
    command.prepare(0x123 * 2, 0x20000).unwrap();
    assert_eq!(command.bounced_bytes(), 0);
    assert!(command.segments().len() >= 2);
    for segment in command.segments() {
        let last = segment.end() - 1;
        assert_eq!(segment.address.as_u64() >> 16, last >> 16, "{segment:?} crosses 64 KiB");
    }
    command.complete().unwrap();
}

#[test]
fn too_many_segments_double_buffer_or_fail() {
    let platform = machine();
    // Three separate pages: three segments.
    let pages: Vec<_> = (0..3).map(|_| low_buffer(platform, 4096, IoDirection::Out)).collect();
    let ranges: Vec<_> = pages.iter().map(|page| (page.physical_segment(0).unwrap().0, 2048)).collect();
    // SAFETY: the ranges are parts of buffers this test owns and keeps alive.
    let scattered = unsafe { IoMemoryDescriptor::with_physical_ranges(platform, &ranges, IoDirection::Out) }.unwrap();
    let two = Specification { max_segments: 2, ..Specification::UNLIMITED_64 };
    let mut command = command(platform, two);
    command.set_memory_descriptor(scattered.clone(), true).unwrap();
    assert_eq!(command.segments().len(), 1, "double-buffered into one contiguous buffer");
    assert!(command.is_wholly_double_buffered());
    assert_eq!(device_reads(platform, &command), contents_unchecked_ranges(platform, &ranges));
    command.complete().unwrap();

    let impossible = Specification { max_segments: 1, max_segment_size: 1024, ..Specification::UNLIMITED_64 };
    let mut command = IoDmaCommand::new(platform, impossible).unwrap();
    command.set_memory_descriptor(scattered, false).unwrap();
    assert_eq!(command.prepare(0, 0), Err(IoReturn::NoResources));
    assert_eq!(platform.accounting().stats().pages_in_use, 0);
}

fn contents_unchecked_ranges(platform: &SimulatedPlatform, ranges: &[(PhysAddr, u64)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(address, length) in ranges {
        let mut piece = alloc::vec![0; length as usize];
        platform.device_read(address.as_u64(), &mut piece);
        bytes.extend_from_slice(&piece);
    }
    bytes
}

#[test]
fn cpu_access_while_the_device_owns_the_buffer_is_caught() {
    let platform = machine();
    let buffer = high_buffer(platform, 4096, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_32);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(buffer.read_bytes(0, &mut byte), Err(IoReturn::NotPermitted));
    let report = *platform.accounting().misuse_log().last().unwrap();
    assert_eq!(report.misuse, Misuse::CpuAccessWhileDeviceOwned);
    assert_eq!(report.descriptor, Some(buffer.id()));
    assert!(report.location.file().ends_with("contract.rs"), "the call site is named: {}", report.location);
    command.synchronize(SyncOptions::IN).unwrap();
    assert_eq!(buffer.read_bytes(0, &mut byte), Ok(1), "after synchronize(In) the CPU owns it");
    command.complete().unwrap();
}

#[test]
fn a_command_dropped_while_prepared_leaks_its_memory_and_says_so() {
    let platform = machine();
    let buffer = high_buffer(platform, 8192, IoDirection::In);
    let free_before = platform.free_frames_count();
    {
        let mut command = command(platform, Specification::UNLIMITED_32);
        command.set_memory_descriptor(buffer.clone(), true).unwrap();
        assert_eq!(command.bounce_buffers().len(), 1, "a 32-bit device bounces high memory");
        assert_eq!(platform.accounting().check_stopped(), 1, "a driver stopping now leaks a command");
        assert_eq!(platform.accounting().misuse_log().last().unwrap().misuse, Misuse::PreparedAtStop);
    }
    let report = *platform.accounting().misuse_log().last().unwrap();
    assert_eq!(report.misuse, Misuse::DroppedWhilePrepared);
    assert!(report.command.is_some() && report.descriptor == Some(buffer.id()));
    let stats = platform.accounting().stats();
    assert_eq!((stats.leaked_pages, stats.leaked_transfers, stats.prepared_commands), (2, 1, 0));
    assert_eq!(platform.free_frames_count(), free_before - 2, "the bounce pages a device may write stay allocated");
    assert!(buffer.prepare_count() > 0 && buffer.is_abandoned(), "the descriptor stays prepared for ever");
    let mut byte = [0u8; 1];
    assert_eq!(buffer.read_bytes(0, &mut byte), Err(IoReturn::NotPermitted), "the CPU may not read it");
    let frames_before_drop = platform.free_frames_count();
    drop(buffer);
    assert_eq!(platform.free_frames_count(), frames_before_drop, "its frames are never freed either");
}

#[test]
fn a_descriptor_dropped_while_prepared_is_reported() {
    let platform = machine();
    let buffer = low_buffer(platform, 4096, IoDirection::Out);
    let id = buffer.id();
    buffer.prepare().unwrap();
    drop(buffer);
    let report = *platform.accounting().misuse_log().last().unwrap();
    assert_eq!((report.misuse, report.descriptor), (Misuse::DescriptorDroppedWhilePrepared, Some(id)));
}

#[test]
pub(super) fn coherent_memory_is_never_bounced_and_always_cpu_accessible() {
    let platform = machine();
    let ring = IoMemoryDescriptor::allocate_coherent(platform, 4096, Constraints::NONE).unwrap();
    let mut narrow = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    narrow.set_memory_descriptor(ring.clone(), false).unwrap();
    assert_eq!(narrow.prepare(0, 0), Err(IoReturn::NotPermitted), "high coherent memory for a 32-bit device");
    assert_eq!(ring.prepare_count(), 0);
    let mut wide = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    wide.set_memory_descriptor(ring.clone(), true).unwrap();
    assert_eq!(ring.write_bytes(0, &[1, 2, 3]), Ok(3), "CPU access while the device may look");
    assert_eq!(wide.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER), Err(IoReturn::NotPermitted));
    wide.complete().unwrap();
}

#[test]
pub(super) fn with_transfer_restricts_one_transfer_and_cleans_up() {
    use crate::dma::TransferOptions;
    let platform = machine();
    let buffer = high_buffer(platform, 8192, IoDirection::In);
    let mut command = command(platform, Specification::UNLIMITED_64);
    let narrow = TransferOptions {
        restrict: Some(Specification { num_address_bits: 32, ..Specification::UNLIMITED_64 }),
        force_double_buffer: false,
    };
    let device_data = pattern(8192, 9);
    let segments = command
        .with_transfer(buffer.clone(), 0, 0, &narrow, |segments| {
            device_writes(platform, segments, &device_data);
            Ok(segments.to_vec())
        })
        .unwrap();
    assert!(segments.iter().all(|s| s.end() <= FOUR_GIB), "the restriction applied: {segments:?}");
    assert_eq!(contents(&buffer), device_data, "bounced data came back");
    assert_eq!(command.specification(), &Specification::UNLIMITED_64, "the command itself is unchanged");
    assert!(!command.is_prepared() && command.memory_descriptor().is_none());
    let direct = command.with_transfer(buffer, 0, 0, &TransferOptions::default(), |s| Ok(s[0].end())).unwrap();
    assert!(direct > FOUR_GIB, "without the restriction nothing bounces");
    let stats = platform.accounting().stats();
    assert_eq!((stats.pages_in_use, stats.prepared_commands, stats.bounced_transfers), (0, 0, 1));
}
