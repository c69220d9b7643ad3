//! Safety steps a learner may switch off for one transfer, to watch what goes
//! wrong (the shell's `experiment` command). Nothing is skipped unless a step
//! is armed on a platform (`Accounting::arm_experiment`), and an armed step is
//! skipped once, at the first transfer on that platform that would have done
//! it, then it is on again. Only bounce copies can be skipped: they are the
//! copies a driver relies on without seeing them.

/// A step that can be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Skip {
    /// The copy out of bounce memory at `complete` (an `In` transfer): the
    /// device's bytes stay in the bounce buffer and the CPU's buffer keeps what
    /// it held before.
    CopyBack = 1,
    /// The fill of bounce memory from the buffer, before the device reads it
    /// (an `Out` transfer): the device reads whatever the bounce frames held.
    Fill = 2,
    /// The split of segments at the device's `boundary` (PIIX IDE: 64 KiB):
    /// one segment may cross it.
    Boundary = 3,
    /// The bounce for memory beyond the device's address limit: the device is
    /// given the real address, and its address register keeps only the bits it
    /// has, as real hardware would (the record is cut to the device's width).
    Reach = 4,
}
