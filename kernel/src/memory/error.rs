//! The memory subsystem's error type.

use core::fmt;

/// Why a memory request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// No free frame satisfies the request.
    OutOfMemory,
    /// Free frames exist, but no run of them meets the count and constraints.
    NoContiguousRun,
    /// The request itself is malformed (zero frames, an alignment or boundary that
    /// is not a power of two, a run longer than its boundary, storage too small).
    BadRequest,
    /// The frame was never usable RAM (reserved, a hole, or outside every zone).
    NotUsable,
    /// The frame is already free: a double free.
    NotAllocated,
    /// The frame cannot be reserved because it is not free.
    NotFree,
    /// The page is already mapped.
    AlreadyMapped,
    /// The page is not mapped.
    NotMapped,
    /// The address is not aligned as the operation requires.
    NotAligned,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            MemoryError::OutOfMemory => "out of physical memory",
            MemoryError::NoContiguousRun => "no contiguous run of frames meets the constraints",
            MemoryError::BadRequest => "malformed memory request",
            MemoryError::NotUsable => "frame is not usable RAM",
            MemoryError::NotAllocated => "frame is already free (double free)",
            MemoryError::NotFree => "frame is not free",
            MemoryError::AlreadyMapped => "page is already mapped",
            MemoryError::NotMapped => "page is not mapped",
            MemoryError::NotAligned => "address is not aligned",
        };
        f.write_str(text)
    }
}
