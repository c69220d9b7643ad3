//! What can be wrong in a DMAR table, and where: the parser's errors.

use core::fmt;

use super::layout::{HEADER_LENGTH, SCOPE_MIN_LENGTH, StructureKind};

/// Why a DMAR table could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarProblem {
    /// Fewer bytes than the 48-byte DMAR header.
    TooShort {
        /// Bytes given.
        available: usize,
    },
    /// The signature is not "DMAR".
    WrongSignature([u8; 4]),
    /// The header's length is below the header's own size.
    LengthBelowHeader {
        /// The length the header declares.
        declared: u32,
    },
    /// The header's length runs past the bytes given.
    LengthPastEnd {
        /// The length the header declares.
        declared: u32,
        /// Bytes given.
        available: usize,
    },
    /// The bytes do not sum to 0 (mod 256).
    Checksum {
        /// What they sum to.
        sum: u8,
    },
    /// The host address width field is 255, which plus one does not fit a byte.
    HostAddressWidth,
    /// Fewer bytes remain than a structure's 4-byte header.
    StructureHeaderTruncated {
        /// Bytes left in the table.
        remaining: usize,
    },
    /// A structure's length is below the minimum for its type (0 included).
    StructureTooShort {
        /// Its type.
        kind: StructureKind,
        /// Its declared length.
        length: u16,
        /// The least a structure of this type can be.
        minimum: usize,
    },
    /// A structure's length runs past the end of the table.
    StructurePastEnd {
        /// Its type.
        kind: StructureKind,
        /// Its declared length.
        length: u16,
        /// Bytes left in the table.
        remaining: usize,
    },
    /// An RMRR's limit lies below its base.
    RegionInverted {
        /// The region's base.
        base: u64,
        /// The region's limit.
        limit: u64,
    },
    /// Fewer bytes remain in the structure than a device scope's 6-byte header.
    ScopeTruncated {
        /// Bytes left in the structure.
        remaining: usize,
    },
    /// A device scope's length is below 8 (header plus one path entry).
    ScopeTooShort {
        /// Its declared length.
        length: u8,
    },
    /// A device scope's length leaves half a path entry.
    ScopeOddLength {
        /// Its declared length.
        length: u8,
    },
    /// A device scope's length runs past the end of its structure.
    ScopePastEnd {
        /// Its declared length.
        length: u8,
        /// Bytes left in the structure.
        remaining: usize,
    },
    /// A path entry is not a PCI device (0..=31) and function (0..=7).
    PathEntry {
        /// The device byte.
        device: u8,
        /// The function byte.
        function: u8,
    },
}

impl fmt::Display for DmarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmarProblem::TooShort { available } => {
                write!(f, "only {available} bytes, fewer than the {HEADER_LENGTH}-byte DMAR header")
            }
            DmarProblem::WrongSignature(signature) => {
                write!(f, "signature \"{}\" is not \"DMAR\"", signature.escape_ascii())
            }
            DmarProblem::LengthBelowHeader { declared } => {
                write!(f, "the header's length {declared} is below the {HEADER_LENGTH}-byte DMAR header")
            }
            DmarProblem::LengthPastEnd { declared, available } => {
                write!(f, "the header's length {declared} runs past the {available} bytes there are")
            }
            DmarProblem::Checksum { sum } => write!(f, "the bytes sum to {sum:#04x}, not 0: the checksum is wrong"),
            DmarProblem::HostAddressWidth => f.write_str("host address width field 255 is out of range"),
            DmarProblem::StructureHeaderTruncated { remaining } => {
                write!(f, "{remaining} bytes left, too few for a structure's 4-byte type and length")
            }
            DmarProblem::StructureTooShort { kind, length, minimum } => {
                write!(f, "{kind} of length {length}: it must be at least {minimum} bytes")
            }
            DmarProblem::StructurePastEnd { kind, length, remaining } => {
                write!(f, "{kind} of length {length} runs past the table's end ({remaining} bytes left)")
            }
            DmarProblem::RegionInverted { base, limit } => {
                write!(f, "reserved region's limit {limit:#x} lies below its base {base:#x}")
            }
            DmarProblem::ScopeTruncated { remaining } => {
                write!(f, "{remaining} bytes left in the structure, too few for a 6-byte device scope header")
            }
            DmarProblem::ScopeTooShort { length } => {
                write!(f, "device scope of length {length}: it needs at least {SCOPE_MIN_LENGTH} (one path entry)")
            }
            DmarProblem::ScopeOddLength { length } => {
                write!(f, "device scope of length {length} ends in half a 2-byte path entry")
            }
            DmarProblem::ScopePastEnd { length, remaining } => {
                write!(f, "device scope of length {length} runs past its structure ({remaining} bytes left)")
            }
            DmarProblem::PathEntry { device, function } => {
                write!(f, "path entry {device:#x}.{function:#x} is no PCI device (0..=31) and function (0..=7)")
            }
        }
    }
}

/// A malformed DMAR table: the byte offset where parsing stopped, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmarError {
    /// Offset in the table of the field found wrong.
    pub offset: usize,
    /// What is wrong there.
    pub problem: DmarProblem,
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DMAR byte {:#x}: {}", self.offset, self.problem)
    }
}

pub(super) fn fail<T>(offset: usize, problem: DmarProblem) -> Result<T, DmarError> {
    Err(DmarError { offset, problem })
}
