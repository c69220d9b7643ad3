//! A virtio-blk request as the device reads and writes it (virtio 1.0, 5.2.6):
//! the 16-byte header, the status byte, and what the used length says moved.

use dmakit::block::BlockOperation;
use dmakit::dma::{Cause, IoFailure, IoReturn, VirtioCause};

use super::registers::*;

/// Bytes of a request header: type (u32), reserved (u32), sector (u64).
pub(super) const HEADER_BYTES: u64 = 16;
/// Bytes of a request's status.
pub(super) const STATUS_BYTES: u64 = 1;
/// Bytes of each slot's share of the request area: the header, then the status.
pub(super) const REQUEST_AREA_STRIDE: u64 = 32;
/// What the status byte holds until the device writes it: no status a device
/// reports, so a device that never wrote it is not taken for a success.
pub(super) const STATUS_UNWRITTEN: u8 = 0xff;

/// `Ok` for a status byte of `VIRTIO_BLK_S_OK`; otherwise the device's error,
/// byte and all (IOERR, UNSUPP, or one no device may write, including the
/// driver's own "unwritten" mark: a device that never wrote the status is not
/// taken for a success).
pub(super) fn check_status(byte: u8) -> Result<(), IoFailure> {
    match byte {
        STATUS_OK => Ok(()),
        _ => Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::RequestStatus(byte)))),
    }
}

/// The request header the device reads first.
pub(super) fn header_bytes(operation: BlockOperation, sector: u64) -> [u8; HEADER_BYTES as usize] {
    let kind = match operation {
        BlockOperation::Read => REQUEST_IN,
        BlockOperation::Write => REQUEST_OUT,
    };
    let mut header = [0u8; HEADER_BYTES as usize];
    header[0..4].copy_from_slice(&kind.to_le_bytes());
    header[8..16].copy_from_slice(&sector.to_le_bytes());
    header
}

/// Data bytes the device moved, from the used element's length (the bytes it
/// wrote into device-writable buffers), once the status said OK. A read wrote
/// the data and the status byte; a write wrote only the status, and a device
/// that says OK read all of the data.
pub(super) fn moved(operation: BlockOperation, length: u64, used_length: u32) -> u64 {
    match operation {
        BlockOperation::Read => u64::from(used_length).saturating_sub(STATUS_BYTES).min(length),
        BlockOperation::Write => length,
    }
}
