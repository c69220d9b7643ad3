//! A port of the idea of Apple's force-double-buffer test: for each direction,
//! prepare, synchronize(ForceDoubleBuffer | Out), check that every segment is in a
//! fresh page-aligned buffer, write through the segments as a device would,
//! complete, and check the descriptor.

use super::*;
use crate::dma::{IoReturn, Specification, SyncOptions};

fn force_double_buffer(direction: IoDirection, nested: bool) {
    let platform = machine();
    // Low memory, 64-bit device: nothing needs bouncing until we force it.
    let buffer = low_buffer(platform, 3 * 4096 + 512, direction);
    let original = contents(&buffer);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(256, 2 * 4096).unwrap();
    if nested {
        command.prepare(256, 2 * 4096).unwrap();
    }
    assert_eq!(command.bounced_bytes(), 0);
    let before = command.segments().to_vec();

    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER | SyncOptions::OUT).unwrap();
    let buffers = command.bounce_buffers().to_vec();
    assert_eq!(buffers.len(), 1, "one new buffer");
    assert_eq!(buffers[0].address.as_u64() % 4096, 0, "page-aligned");
    assert!(command.segments().iter().all(|s| {
        s.address.as_u64() >= buffers[0].address.as_u64() && s.end() <= buffers[0].address.as_u64() + buffers[0].length
    }));
    assert_ne!(command.segments(), before.as_slice());
    assert_eq!(device_reads(platform, &command), original[256..256 + 8192], "filled from the descriptor");

    // Already wholly double-buffered: success, nothing moves.
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert_eq!(command.bounce_buffers(), buffers.as_slice());

    let device_data = pattern(8192, 200);
    device_writes(platform, command.segments(), &device_data);
    if nested {
        command.complete().unwrap();
    }
    command.complete().unwrap();
    let after = contents(&buffer);
    let mut expected = original.clone();
    if direction.includes_in() {
        expected[256..256 + 8192].copy_from_slice(&device_data);
    }
    assert_eq!(after, expected, "{direction:?}");
    let stats = platform.accounting().stats();
    assert_eq!((stats.pages_in_use, stats.prepared_commands), (0, 0));
}

#[test]
fn force_double_buffer_in() {
    force_double_buffer(IoDirection::In, false);
}

#[test]
fn force_double_buffer_out() {
    force_double_buffer(IoDirection::Out, false);
}

#[test]
pub(super) fn force_double_buffer_in_out() {
    force_double_buffer(IoDirection::InOut, false);
}

#[test]
pub(super) fn force_double_buffer_works_under_nested_prepares() {
    force_double_buffer(IoDirection::In, true);
    force_double_buffer(IoDirection::Out, true);
}

#[test]
pub(super) fn force_double_buffer_keeps_device_written_data() {
    // Data the device already wrote into the old bounce buffer must survive the move.
    let platform = machine();
    let buffer = high_buffer(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let written = pattern(4096, 77);
    device_writes(platform, command.segments(), &written);
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert_eq!(device_reads(platform, &command), written);
    command.complete().unwrap();
    assert_eq!(contents(&buffer), written);
}

#[test]
fn force_double_buffer_without_bounce_memory_fails_cleanly() {
    let platform = SimulatedPlatform::leak(0);
    let buffer = low_buffer(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_memory_descriptor(buffer, true).unwrap();
    let segments = command.segments().to_vec();
    assert_eq!(command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER), Err(IoReturn::NoResources));
    assert_eq!(command.segments(), segments.as_slice(), "unchanged");
    command.complete().unwrap();
}
