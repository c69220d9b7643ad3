//! A device that only says "done" (`ByteCount::Assumed`) and lies about it:
//! the bytes it never wrote reach the caller as the caller's own, never as
//! what an earlier owner left in the bounce frames.

use super::*;
use crate::dma::simulated::STALE_BYTE;

/// What the caller's buffer holds before the read.
const OLD_BYTE: u8 = 0x5a;

/// A read of one block into a high (bounced) buffer holding `OLD_BYTE`, which
/// the device reports done, whole, without writing a byte; the buffer after.
fn unwritten_read(count: ByteCount) -> Vec<u8> {
    let mut hardware = FakeDisk::new(SimulatedPlatform::leak(1024), 1, Finishing::WhenTold);
    hardware.byte_count = count;
    let disk = QueuedDisk::new(hardware, &WAITER).unwrap();
    let mut buffer = high_buffer(&disk, 1, IoDirection::In);
    buffer.write_bytes(0, &[OLD_BYTE; BLOCK as usize]).unwrap();
    let handle = disk.submit(BlockRequest::new(BlockOperation::Read, 3, 1, buffer, 0)).unwrap();
    disk.hardware().claim(disk.hardware().in_flight_slots()[0], BLOCK);
    let finished = disk.wait(handle);
    finished.result.unwrap();
    finished.buffer.unwrap().to_vec(0, BLOCK as usize).unwrap()
}

#[test]
fn a_device_without_a_byte_count_that_writes_nothing_leaves_the_callers_own_bytes() {
    assert_eq!(unwritten_read(ByteCount::Assumed), vec![OLD_BYTE; BLOCK as usize]);
}

#[test]
fn a_reported_count_is_believed_and_what_the_bounce_frame_held_comes_back() {
    // Why a driver whose device has no real count must say so: the same lie
    // believed as a count copies the bounce frame out, whatever it held (on
    // the simulated machine, the stale byte it fills fresh frames with).
    assert_eq!(unwritten_read(ByteCount::Reported), vec![STALE_BYTE; BLOCK as usize]);
}
