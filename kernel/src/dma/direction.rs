//! Transfer directions (`IODirection`) and `synchronize` options.

use super::IoReturn;

/// Which way data moves, seen from memory. Values are IOKit's `IODirection`.
#[doc(alias = "IODirection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum IoDirection {
    /// `kIODirectionNone`: no transfer.
    None = 0,
    /// `kIODirectionIn`: the device writes memory (a disk read).
    In = 1,
    /// `kIODirectionOut`: the device reads memory (a disk write).
    Out = 2,
    /// `kIODirectionInOut`: both.
    InOut = 3,
}

impl IoDirection {
    /// Whether the device writes this memory, so bounced data must come back.
    pub const fn includes_in(self) -> bool {
        (self as u32) & 1 != 0
    }

    /// Whether the device reads this memory, so data must reach the bounce buffer.
    pub const fn includes_out(self) -> bool {
        (self as u32) & 2 != 0
    }
}

/// Options of [`super::IoDmaCommand::synchronize`], with Apple's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncOptions(u32);

impl SyncOptions {
    /// `kIODirectionIn`: copy bounce buffers back to the descriptor.
    pub const IN: SyncOptions = SyncOptions(1);
    /// `kIODirectionOut`: copy the descriptor into the bounce buffers.
    pub const OUT: SyncOptions = SyncOptions(2);
    /// `kForceDoubleBuffer`: move the whole prepared range into one new buffer.
    pub const FORCE_DOUBLE_BUFFER: SyncOptions = SyncOptions(0x0100_0000);

    /// Options from raw bits, unchecked (checking is `synchronize`'s first step).
    pub const fn from_bits(bits: u32) -> SyncOptions {
        SyncOptions(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: SyncOptions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Checks the contract's rule: some bit set, no unknown bit, not In and Out together.
    pub fn validate(self) -> Result<(), IoReturn> {
        let known = Self::IN.0 | Self::OUT.0 | Self::FORCE_DOUBLE_BUFFER.0;
        let both = Self::IN.0 | Self::OUT.0;
        if self.0 == 0 || self.0 & !known != 0 || self.0 & both == both {
            return Err(IoReturn::BadArgument);
        }
        Ok(())
    }
}

impl core::ops::BitOr for SyncOptions {
    type Output = SyncOptions;
    fn bitor(self, other: SyncOptions) -> SyncOptions {
        SyncOptions(self.0 | other.0)
    }
}
