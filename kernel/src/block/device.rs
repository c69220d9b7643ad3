//! The block-storage interface every disk publishes (IOKit's
//! `IOBlockStorageDevice`): asynchronous requests that own their buffers, and
//! `read`/`write` that lend a buffer for the length of the call.

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    BlockOperation, BlockRequest, DoubleBuffering, Finished, QueueStats, Rejected, RequestHandle, StopReport,
    WriteCache,
};
use crate::dma::hooks::Site;
use crate::dma::{DmaBuffer, IoFailure, Segment, TransferOptions};

/// A disk.
pub trait BlockDevice: Send + Sync {
    /// The driver's name, e.g. "VirtioBlock".
    fn driver_name(&self) -> &'static str;
    /// Bytes per block.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// A line about the device for listings (model, transport, queue).
    fn description(&self) -> String;
    /// From now on, double-buffers every transfer (`Forced`:
    /// `synchronize(ForceDoubleBuffer)` after each prepare, to compare with direct
    /// transfers) or only what the device cannot reach (`AsNeeded`).
    fn set_double_buffering(&self, policy: DoubleBuffering);
    /// The data segments the device was given for the last request started (for
    /// traces and tests): what the device actually read or wrote.
    fn last_segments(&self) -> Vec<Segment>;
    /// Requests the device takes at once.
    fn queue_depth(&self) -> usize;
    /// Whether the device keeps written data in a volatile cache, which
    /// [`BlockDevice::flush`] writes to the medium (else a flush has nothing
    /// to do and the device is not asked).
    fn write_cache(&self) -> WriteCache;
    /// The most blocks one asynchronous request may carry.
    fn max_request_blocks(&self) -> u64;
    /// Who the disk's driver is when it asks the DMA hooks (its hardware
    /// queue): where an experiment arms a driver check for this disk only
    /// ([`crate::dma::experiment::arm_check`]).
    fn hooks_site(&self) -> Site;

    /// Takes `request` and returns at once: the buffer is the request's until
    /// [`BlockDevice::wait`] gives it back. A bad request, a stopped disk or a
    /// request larger than [`BlockDevice::max_request_blocks`] comes back with
    /// its buffer and why.
    fn submit(&self, request: BlockRequest) -> Result<RequestHandle, Rejected>;
    /// Submits `requests` as one batch (Linux calls it plugging): every one is
    /// queued before any is started, and the work loop looks for completions
    /// only after starting them all, so a device that takes many gets them all
    /// even if it finishes each faster than the submitter can submit the next.
    /// Each comes back as [`BlockDevice::submit`] would return it, in order.
    fn submit_together(&self, requests: Vec<BlockRequest>) -> Vec<Result<RequestHandle, Rejected>> {
        requests.into_iter().map(|request| self.submit(request)).collect()
    }
    /// Takes a flush and returns at once: once it is finished well, every
    /// write that was finished before it was submitted is on the medium, not
    /// only in the device's volatile cache. It carries no data: [`BlockDevice::wait`]
    /// gives `buffer: None` with its result. A disk without a volatile cache
    /// answers it at once with success (nothing to flush); a stopped disk
    /// refuses it (`NotReady`, `DriverStopped`).
    fn submit_flush(&self) -> Result<RequestHandle, IoFailure>;
    /// Waits for the request behind `handle`; gives back the buffer and how it
    /// went. A request the device does not finish in time fails with `Timeout`,
    /// and the device is stopped (reset) before its memory comes back.
    fn wait(&self, handle: RequestHandle) -> Finished;
    /// Waits until one of `handles` is finished and says which (the first
    /// finished, by position); `BadArgument` for none, `Timeout` as `wait`.
    fn wait_any(&self, handles: &[RequestHandle]) -> Result<usize, IoFailure>;
    /// Runs the work loop once: finishes what the device finished, starts what
    /// waits. Submitting and waiting do this already.
    fn run_work_loop(&self);
    /// From the device's interrupt handler: quiets the device and signals the
    /// work loop. Never locks, allocates or waits.
    fn interrupt(&self);
    /// The queue's counters.
    fn stats(&self) -> QueueStats;
    /// Counts of the driver's own (see `HardwareQueue::counters`); none by default.
    fn driver_counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Stops the driver (IOService::stop): refuses new requests, fails the
    /// waiting ones, lets the device finish those in flight (or resets it when
    /// it does not in time, failing them), and only then releases the memory the
    /// device was given.
    fn stop(&self) -> Result<StopReport, IoFailure>;
    /// Starts a stopped driver again.
    fn start(&self) -> Result<(), IoFailure>;

    /// Moves `count` blocks at `lba` between the disk and `buffer` at byte
    /// `offset`, and waits. The buffer is lent to the device for the call and is
    /// the caller's again when it returns, whatever the result (unless the device
    /// could not be stopped: then its memory is abandoned, and reading it says
    /// so). Requests larger than the device takes at once are split.
    fn transfer(
        &self,
        operation: BlockOperation,
        lba: u64,
        count: u64,
        buffer: &mut DmaBuffer,
        offset: u64,
        options: &TransferOptions,
    ) -> Result<(), IoFailure>;
    /// Reads `count` blocks from `lba` into `buffer` at byte `offset`.
    fn read(&self, lba: u64, count: u64, buffer: &mut DmaBuffer, offset: u64) -> Result<(), IoFailure> {
        self.transfer(BlockOperation::Read, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// Writes `count` blocks at `lba` from `buffer` at byte `offset`.
    fn write(&self, lba: u64, count: u64, buffer: &mut DmaBuffer, offset: u64) -> Result<(), IoFailure> {
        self.transfer(BlockOperation::Write, lba, count, buffer, offset, &TransferOptions::default())
    }
    /// Flushes the device's write cache and waits ([`BlockDevice::submit_flush`]):
    /// `Ok` once every write finished before the call is on the medium.
    fn flush(&self) -> Result<(), IoFailure> {
        let handle = self.submit_flush()?;
        self.wait(handle).result
    }
}
