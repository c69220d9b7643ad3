//! What one network interface counts: packets and bytes each way, and the DMA
//! work they cost (prepares, synchronizes, bytes copied by synchronize).

use crate::dma::IoFailure;

/// A NIC's counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames handed up.
    pub packets_received: u64,
    /// Frame bytes handed up (without the device's header).
    pub bytes_received: u64,
    /// Frames the device read and gave back.
    pub packets_transmitted: u64,
    /// Frame bytes given to the device (without its header).
    pub bytes_transmitted: u64,
    /// Buffers prepared: one per slot at start, and never again while the
    /// interface runs (the point of the design).
    pub prepares: u64,
    /// `synchronize_range` calls, both directions.
    pub synchronizes: u64,
    /// Bytes those calls copied between buffers and bounce memory (0 when
    /// nothing is bounced: the device then uses the buffers in place).
    pub bytes_copied_by_synchronize: u64,
    /// Frames the device gave back that were not believed, and dropped.
    pub dropped: u64,
    /// Why the last one was dropped.
    pub last_drop: Option<IoFailure>,
    /// Transmits refused because every transmit buffer was the device's.
    pub transmit_ring_full: u64,
}
