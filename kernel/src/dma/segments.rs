//! The device's view of a prepared command: its segments from an offset, as
//! values (`genIOVMSegments`) or as records in the device's own format
//! (`writeSegments`). Built on the command's public state only.

use alloc::vec::Vec;

use super::address::Segment;
use super::{IoDmaCommand, IoReturn};

impl IoDmaCommand {
    /// Device-visible segments from `offset` (relative to the prepared range), at
    /// most `max`, and the offset after the last one (`genIOVMSegments`).
    pub fn gen_iovm_segments(&self, offset: u64, max: usize) -> Result<(Vec<Segment>, u64), IoReturn> {
        let (_, length) = self.prepared_range().ok_or(IoReturn::NotReady)?;
        if max == 0 {
            return Err(IoReturn::BadArgument);
        }
        if offset >= length {
            return Err(IoReturn::Overrun);
        }
        let mut output = Vec::new();
        let mut position = 0;
        for segment in self.segments() {
            let end = position + segment.length;
            if end > offset && output.len() < max {
                let skip = offset.saturating_sub(position);
                output.push(Segment { address: segment.address + skip, length: segment.length - skip });
            }
            position = end;
            if output.len() == max {
                break;
            }
        }
        Ok((output, position))
    }

    /// Writes segments from `offset` into `output` as records in the
    /// specification's output format; returns how many and the next offset.
    pub fn write_segments(&self, offset: u64, output: &mut [u8]) -> Result<(usize, u64), IoReturn> {
        let format = self.specification().output;
        let room = output.len() / format.record_size();
        let (segments, next) = self.gen_iovm_segments(offset, room)?;
        for (segment, record) in segments.iter().zip(output.chunks_mut(format.record_size())) {
            format.encode(*segment, record)?;
        }
        Ok((segments.len(), next))
    }
}
