//! The block layer: requests that own their buffers, many in flight per disk,
//! finished by a work loop (see `queued.rs` for one request's life).
// A refused request comes back whole, buffer and options: boxing it would
// allocate on every refusal, in the loop that starts requests.
#![allow(clippy::result_large_err, reason = "a refusal gives the request back by value, without allocating")]

mod device;
mod handle;
mod hardware;
mod queued;
mod request;
mod stats;
#[cfg(test)]
mod tests;
mod work_loop;

pub use crate::dma::TransferOptions;
pub use device::BlockDevice;
pub use handle::RequestHandle;
pub use hardware::{
    BlockCommand, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Recovery, Slot, SlotCommand,
    WriteCache, claim_slot,
};
pub use queued::{MAX_RESETS_IN_A_ROW, QueuedDisk, REQUEST_TIMEOUT_MS};
pub use request::{BlockOperation, BlockRequest, Deferral, DoubleBuffering, Finished, Rejected, check_request};
pub use stats::{QueueStats, StopReport};
pub use work_loop::{CommandGate, InterruptEventSource};
