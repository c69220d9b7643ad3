//! What a disk driver implements: a device with a number of slots, each able to
//! carry one request, started and finished by the block layer's work loop.
//!
//! The driver does the device's part only: prepare a request's buffer with the
//! slot's command (from its [`crate::dma::CommandPool`]), hand the segments to
//! the device, and later find which slots the device finished, complete their
//! transfers and give the buffers back. Queueing, waiting, deferral, timeouts,
//! stop and statistics are the block layer's ([`super::QueuedDisk`]), the same
//! for every driver.
//!
//! Who calls what, and from where:
//!
//! | method | called from | may lock / allocate |
//! |---|---|---|
//! | `acknowledge_interrupt` | the interrupt handler | neither |
//! | `start`, `collect`, `stop`, `restart` | the work loop, behind the command gate | both |
//! | the others | anywhere | both |

use alloc::string::String;
use alloc::vec::Vec;

use super::{BlockRequest, DoubleBuffering, Finished, Rejected};
use crate::dma::{IoFailure, Segment};

/// A slot: which of the device's `depth` places a request occupies
/// (`0..depth`; the NCQ tag, the virtio chain, the one IDE command).
pub type Slot = usize;

/// A disk as its driver sees it: slots that carry requests.
pub trait HardwareQueue: Send + Sync {
    /// The driver's name, e.g. "VirtioBlock".
    fn driver_name(&self) -> &'static str;
    /// Bytes per block.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// A line about the device for listings (model, transport, queue).
    fn description(&self) -> String;
    /// Requests the device takes at once (at least 1): the size of the driver's
    /// command pool.
    fn depth(&self) -> usize;
    /// The most blocks one request may carry; larger synchronous transfers are
    /// split, larger asynchronous ones refused.
    fn max_request_blocks(&self) -> u64;
    /// Starts a checked request in free slot `slot`: prepares its buffer with the
    /// slot's command and hands the device its segments. The device owns the
    /// buffer from here until `collect` (or `stop`) gives it back. A request that
    /// cannot start comes back with why; `Busy` means "not now, try again"
    /// (another drive on the same channel is using it), a `NoResources` with the
    /// cause `BounceBudgetSpent` that bounce memory is short.
    fn start(&self, slot: Slot, request: BlockRequest) -> Result<(), Rejected>;
    /// Looks at the device and, for each slot it finished, completes the
    /// transfers (exactly the bytes moved come back from bounce memory) and
    /// reports the slot and the result, in the order the device finished them.
    fn collect(&self, finished: &mut dyn FnMut(Slot, Finished));
    /// In the interrupt handler: quiets the device's interrupt (reads or clears
    /// its status) so the line drops. Returns whether the device had one. Must
    /// neither take a lock that `start` or `collect` hold nor allocate.
    fn acknowledge_interrupt(&self) -> bool;
    /// Stops the device so it no longer touches memory (a reset), then completes
    /// every request still in flight with `why` and reports it; a request whose
    /// device could not be stopped comes back with no buffer (abandoned). Then
    /// releases what the device was given (rings, tables). Later `start`s are
    /// refused until `restart`.
    fn stop(&self, why: &IoFailure, finished: &mut dyn FnMut(Slot, Finished));
    /// Sets the device up again after `stop`.
    fn restart(&self) -> Result<(), IoFailure>;
    /// Double-buffers every transfer from now on (`Forced`), or only what the
    /// device cannot reach (`AsNeeded`).
    fn set_double_buffering(&self, policy: DoubleBuffering);
    /// The data segments the device was given for the last request started (for
    /// traces and tests).
    fn last_segments(&self) -> Vec<Segment>;
    /// Commands still out of the driver's pool after `stop` (each reported as
    /// `PreparedAtStop`).
    fn check_stopped(&self) -> usize;
}
