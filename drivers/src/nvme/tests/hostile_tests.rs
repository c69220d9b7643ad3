//! The NVMe driver against a hostile controller, under property tests.

use super::*;

/// The physical ranges of `length` bytes of `buffer` from `offset`: what the
/// controller may move a request's data through (nothing is bounced for a
/// 64-bit controller).
pub(super) fn lent_ranges(buffer: &DmaBuffer, offset: u64, length: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut at = offset;
    while at < offset + length {
        let (address, bytes) = buffer.descriptor().physical_segment(at).expect("inside the buffer");
        let bytes = bytes.min(offset + length - at);
        ranges.push((address.as_u64(), bytes));
        at += bytes;
    }
    ranges
}
