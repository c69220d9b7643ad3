//! `IoReturn`: the DMA subsystem's error type, with IOKit's names and numbers.

use core::fmt;

/// Why a DMA call failed. Each variant carries Apple's `kIOReturn*` value
/// (`iokit_common_err(code)` = `0xe0000000 | code`); success is `Ok(..)`.
#[doc(alias = "IOReturn")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum IoReturn {
    /// `kIOReturnNoMemory`: memory could not be allocated.
    NoMemory = 0xe000_02bd,
    /// `kIOReturnNoResources`: a resource (bounce memory, segments) is exhausted.
    NoResources = 0xe000_02be,
    /// `kIOReturnBadArgument`: an argument is invalid.
    BadArgument = 0xe000_02c2,
    /// `kIOReturnInternalError`: something the code relies on did not hold.
    InternalError = 0xe000_02c9,
    /// `kIOReturnIOError`: the device reported an error.
    IoError = 0xe000_02ca,
    /// `kIOReturnNotAligned`: a length or address breaks an alignment rule.
    NotAligned = 0xe000_02d0,
    /// `kIOReturnDMAError`: the DMA engine failed.
    DmaError = 0xe000_02d4,
    /// `kIOReturnBusy`: the object is in use.
    Busy = 0xe000_02d5,
    /// `kIOReturnTimeout`: the operation timed out.
    Timeout = 0xe000_02d6,
    /// `kIOReturnNotReady`: the call came in the wrong state (for example, not prepared).
    NotReady = 0xe000_02d8,
    /// `kIOReturnNoSpace`: the request is larger than allowed.
    NoSpace = 0xe000_02db,
    /// `kIOReturnMessageTooLarge`: the message or request is too large.
    MessageTooLarge = 0xe000_02e1,
    /// `kIOReturnNotPermitted`: the access is not allowed now.
    NotPermitted = 0xe000_02e2,
    /// `kIOReturnUnderrun`: less data than expected.
    Underrun = 0xe000_02e7,
    /// `kIOReturnOverrun`: an offset or count runs past the end.
    Overrun = 0xe000_02e8,
    /// `kIOReturnAborted`: the operation was aborted (its driver was stopped).
    Aborted = 0xe000_02eb,
}

impl IoReturn {
    /// The numeric `kIOReturn*` value.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Apple's constant name.
    pub const fn name(self) -> &'static str {
        match self {
            IoReturn::NoMemory => "kIOReturnNoMemory",
            IoReturn::NoResources => "kIOReturnNoResources",
            IoReturn::BadArgument => "kIOReturnBadArgument",
            IoReturn::InternalError => "kIOReturnInternalError",
            IoReturn::IoError => "kIOReturnIOError",
            IoReturn::NotAligned => "kIOReturnNotAligned",
            IoReturn::DmaError => "kIOReturnDMAError",
            IoReturn::Busy => "kIOReturnBusy",
            IoReturn::Timeout => "kIOReturnTimeout",
            IoReturn::NotReady => "kIOReturnNotReady",
            IoReturn::NoSpace => "kIOReturnNoSpace",
            IoReturn::MessageTooLarge => "kIOReturnMessageTooLarge",
            IoReturn::NotPermitted => "kIOReturnNotPermitted",
            IoReturn::Underrun => "kIOReturnUnderrun",
            IoReturn::Overrun => "kIOReturnOverrun",
            IoReturn::Aborted => "kIOReturnAborted",
        }
    }
}

impl fmt::Display for IoReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#010x})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_display_match_iokit() {
        assert_eq!(IoReturn::NotReady.code(), 0xe000_02d8);
        assert_eq!(IoReturn::BadArgument.code(), 0xe000_02c2);
        assert_eq!(IoReturn::NoResources.code(), 0xe000_02be);
        assert_eq!(IoReturn::NoSpace.code(), 0xe000_02db);
        assert_eq!(IoReturn::NotAligned.code(), 0xe000_02d0);
        assert_eq!(IoReturn::Overrun.code(), 0xe000_02e8);
        assert_eq!(IoReturn::Underrun.code(), 0xe000_02e7);
        assert_eq!(IoReturn::Busy.code(), 0xe000_02d5);
        assert_eq!(IoReturn::MessageTooLarge.code(), 0xe000_02e1);
        assert_eq!(IoReturn::NotPermitted.code(), 0xe000_02e2);
        assert_eq!(IoReturn::IoError.code(), 0xe000_02ca);
        assert_eq!(IoReturn::Timeout.code(), 0xe000_02d6);
        assert_eq!(IoReturn::DmaError.code(), 0xe000_02d4);
        assert_eq!(IoReturn::NoMemory.code(), 0xe000_02bd);
        assert_eq!(IoReturn::NotReady.to_string(), "kIOReturnNotReady (0xe00002d8)");
    }
}
