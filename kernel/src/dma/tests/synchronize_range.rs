//! `synchronize_range`: a buffer that stays prepared, the device filling it
//! again and again with a different number of bytes, and the CPU taking
//! exactly those bytes each time, with no fresh prepare (a receive ring).

use super::*;
use crate::dma::{Cause, DmaBuffer, DmaTransfer, IoFailure, IoReturn, Specification, SyncOptions, TransferOptions};

fn high(platform: &'static SimulatedPlatform, length: u64, direction: IoDirection) -> DmaBuffer {
    DmaBuffer::from_descriptor(high_buffer(platform, length, direction)).unwrap()
}

/// The device writes `data` at the start of the transfer's only segment.
fn device_fills(platform: &SimulatedPlatform, segments: &[Segment], data: &[u8]) {
    assert_eq!(segments.len(), 1, "one bounce segment");
    platform.device_write(segments[0].address.as_u64(), data);
}

#[test]
pub(super) fn a_ranged_synchronize_in_gives_the_cpu_exactly_the_bytes_the_device_reported() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    let segments = transfer.segments().to_vec();
    let written = pattern(100, 42);
    device_fills(platform, &segments, &written);
    // The whole synchronize still refuses: the other 3996 bounce bytes are stale.
    let whole = transfer.synchronize(SyncOptions::IN).unwrap_err();
    assert_eq!(whole.cause(), Cause::InTransferNotFilled);
    transfer.synchronize_range(SyncOptions::IN, 0, 100).unwrap();
    let mut seen = [0u8; 100];
    assert_eq!(transfer.read_bytes(0, &mut seen).unwrap(), 100);
    assert_eq!(&seen[..], &written[..], "the device's bytes reached the CPU");
    assert_eq!(platform.accounting().stats().bytes_from_bounce, 100, "and no byte more");
    let completed = transfer.complete(0);
    completed.result.unwrap_err();
    let after = contents(buffer.descriptor());
    assert_eq!(&after[..100], &written[..]);
    assert_eq!(&after[100..], &pattern(4096, 7)[100..], "bytes past the range were never copied");
}

#[test]
pub(super) fn a_receive_buffer_is_recycled_thousands_of_times_with_one_prepare() {
    let platform = machine();
    let mut buffer = high(platform, 2048, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    let segments = transfer.segments().to_vec();
    let prepared = platform.accounting().stats().bounced_transfers;
    let mut total = 0u64;
    for round in 0..3000u32 {
        let length = 1 + (round as usize * 7919) % 2048;
        let frame = pattern(length, round as u8);
        device_fills(platform, &segments, &frame);
        transfer.synchronize_range(SyncOptions::IN, 0, length as u64).unwrap();
        let mut seen = alloc::vec![0u8; length];
        transfer.read_bytes(0, &mut seen).unwrap();
        assert_eq!(seen, frame, "round {round}: the CPU got the device's frame");
        // Back to the device with nothing copied: it overwrites the buffer.
        transfer.synchronize_range(SyncOptions::OUT, 0, 0).unwrap();
        let refused = transfer.read_bytes(0, &mut seen).unwrap_err();
        assert_eq!(refused.cause(), Cause::DeviceOwnsMemory, "round {round}: the device's turn");
        total += length as u64;
    }
    let stats = platform.accounting().stats();
    assert_eq!(stats.bounced_transfers, prepared, "no fresh prepare");
    assert_eq!(stats.bytes_from_bounce, total, "exactly the reported bytes were copied, each once");
    assert_eq!(stats.bytes_to_bounce, 0, "nothing was copied towards the device");
    transfer.complete(0).result.unwrap_err();
}

#[test]
pub(super) fn a_ranged_synchronize_out_moves_only_its_window() {
    let platform = machine();
    let mut buffer = high(platform, 4096, IoDirection::Out);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    let refused = transfer.write_bytes(0, &[1]).unwrap_err();
    assert_eq!(refused, IoFailure::new(IoReturn::NotPermitted, Cause::DeviceOwnsMemory), "the device's turn");
    // The CPU's turn: the device wrote nothing, so nothing is copied.
    transfer.synchronize_range(SyncOptions::IN, 0, 0).unwrap();
    transfer.write_bytes(1000, &[0xaa; 50]).unwrap();
    transfer.write_bytes(2000, &[0xbb; 50]).unwrap();
    transfer.synchronize_range(SyncOptions::OUT, 1000, 50).unwrap();
    let seen = device_reads(platform, transfer.command());
    assert_eq!(&seen[1000..1050], &[0xaa; 50], "the window reached the device");
    assert_eq!(&seen[2000..2050], &pattern(4096, 7)[2000..2050], "bytes outside it did not");
    transfer.complete(4096).result.unwrap();
}

#[test]
fn a_ranged_synchronize_says_what_is_wrong() {
    let platform = machine();
    let descriptor = high_buffer(platform, 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    assert_eq!(command.synchronize_range(SyncOptions::IN, 0, 1), Err(IoReturn::NotReady), "not prepared");
    command.set_memory_descriptor(descriptor, true).unwrap();
    assert_eq!(command.synchronize_range(SyncOptions::IN, 4000, 97), Err(IoReturn::Overrun));
    assert_eq!(command.synchronize_range(SyncOptions::IN, u64::MAX, 2), Err(IoReturn::Overrun));
    let both = SyncOptions::from_bits(SyncOptions::IN.bits() | SyncOptions::OUT.bits());
    assert_eq!(command.synchronize_range(both, 0, 1), Err(IoReturn::BadArgument));
    assert_eq!(command.synchronize_range(SyncOptions::FORCE_DOUBLE_BUFFER, 0, 1), Err(IoReturn::BadArgument));
    assert_eq!(command.synchronize_range(SyncOptions::IN, 4000, 96), Ok(()), "the last 96 bytes");
    command.complete().unwrap();
    command.clear_memory_descriptor(false).unwrap();
    let mut buffer = high(platform, 4096, IoDirection::In);
    let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    let past = transfer.synchronize_range(SyncOptions::IN, 4096, 1).unwrap_err();
    assert_eq!(past.cause(), Cause::OutOfRange { offset: 4096, length: 1, size: 4096 });
    let force = transfer.synchronize_range(SyncOptions::FORCE_DOUBLE_BUFFER, 0, 1).unwrap_err();
    assert_eq!(force.cause(), Cause::RangedForceDoubleBuffer);
    transfer.complete(0).result.unwrap_err();
}

#[test]
fn a_buffer_the_device_is_still_writing_is_given_back_without_a_copy() {
    // The device has written the first half of a frame when the driver looks
    // at the header and gives the buffer back; then it writes the rest.
    for copy_towards_device in [true, false] {
        let platform = machine();
        let mut buffer = high(platform, 4096, IoDirection::In);
        let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
        let mut transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
        let address = transfer.segments()[0].address.as_u64();
        platform.device_write(address, &[0x22; 2048]);
        transfer.synchronize_range(SyncOptions::IN, 0, 16).unwrap();
        match copy_towards_device {
            true => transfer.synchronize(SyncOptions::OUT).unwrap(),
            false => transfer.synchronize_range(SyncOptions::OUT, 0, 0).unwrap(),
        }
        platform.device_write(address + 2048, &[0x22; 2048]);
        transfer.complete(4096).result.unwrap();
        let got = contents(buffer.descriptor());
        let mut frame = alloc::vec![0x22u8; 4096];
        if copy_towards_device {
            // The CPU's stale bytes landed on what the device had written.
            frame[16..2048].copy_from_slice(&pattern(4096, 7)[16..2048]);
        }
        assert_eq!(got, frame, "copied towards the device: {copy_towards_device}");
    }
}
