//! What a disk's queue has seen: the numbers `stats` shows and tests check.

/// A snapshot of one disk's queue counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Slots: requests the device takes at once.
    pub depth: usize,
    /// Requests the device holds now.
    pub in_flight: usize,
    /// Requests waiting in software for a slot (or for bounce memory).
    pub queued: usize,
    /// The most requests the device held at once.
    pub deepest: usize,
    /// Requests taken since the start (flushes included).
    pub submitted: u64,
    /// Flushes taken since the start: those a write-through disk answered at
    /// once, and those its device was given.
    pub flushes: u64,
    /// Requests finished (well or not).
    pub finished: u64,
    /// Requests finished with an error.
    pub failed: u64,
    /// Requests that had to wait for bounce memory (deferred loads).
    pub deferred_loads: u64,
    /// Requests that finished while one submitted before them was still in flight.
    pub out_of_order: u64,
    /// Interrupts the device raised.
    pub interrupts: u64,
    /// Resets after which the requests the device held were programmed again.
    pub resets: u64,
}

/// What [`super::BlockDevice::stop`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Requests in flight at the stop that the device finished.
    pub drained: usize,
    /// Requests failed by the stop: waiting ones, and those the device did not
    /// finish in time (it was reset first).
    pub aborted: usize,
    /// The disk's DMA commands still out of its pool after the stop (each
    /// reported as `PreparedAtStop`): 0 unless one could not go back.
    pub prepared_left: usize,
}
