//! One queue pair: a submission ring the driver fills and the controller
//! reads, a completion ring the controller fills and the driver reads, both in
//! coherent memory, and their two doorbells.
//!
//! The driver writes an entry at the submission tail and rings the tail
//! doorbell; the controller writes a completion at its own tail with the
//! *phase tag* flipped from what the slot held on the previous pass (the ring
//! starts zeroed, so the first pass writes phase 1). The driver knows a new
//! completion by its phase, consumes entries up to the first old one, and
//! rings the head doorbell so the controller may reuse them.
//!
//! A device is not trusted: a completion must name this pair's submission
//! queue, a command id that is in flight, and a submission head between the
//! last one reported and the tail the driver wrote, past that command's entry. Anything else is a typed
//! [`NvmeCause`], never a panic; the command it named is not completed.

use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::{Cause, CoherentMemory, DmaPlatform, IoFailure, IoReturn, NvmeCause, Specification};
use dmakit::io::RegisterIo;

use super::registers::{Capabilities, PAGE_SIZE};
use super::structures::{CompletionEntry, SubmissionEntry};

/// Bytes of a submission entry.
const SUBMISSION_BYTES: u64 = 64;
/// Bytes of a completion entry.
const COMPLETION_BYTES: u64 = 16;

/// Where queue memory may live: page aligned (PRP1 of a contiguous queue is a
/// page), anywhere in 64 bits.
const QUEUE_MEMORY: Specification = Specification { alignment: PAGE_SIZE, ..Specification::UNLIMITED_64 };

/// A submission queue and the completion queue it posts to, with the same id.
pub struct QueuePair {
    id: u16,
    entries: u16,
    submissions: CoherentMemory,
    completions: CoherentMemory,
    /// Where the driver writes the next submission.
    tail: u16,
    /// The controller's submission head, as its last completion said.
    submission_head: u16,
    /// Where the driver reads the next completion.
    completion_head: u16,
    /// The head the controller was last told (the head doorbell's value).
    released_head: u16,
    /// The phase a new completion at `completion_head` carries.
    phase: bool,
    /// Which command ids the controller holds, each with the submission
    /// entry it was written at.
    in_flight: Vec<Option<u16>>,
    tail_doorbell: u16,
    head_doorbell: u16,
}

impl QueuePair {
    /// A pair `id` of `entries` entries each, with room for `command_ids`
    /// command ids, in fresh zeroed memory (the controller is told about it
    /// by the caller).
    pub fn allocate(
        platform: &'static dyn DmaPlatform,
        capabilities: &Capabilities,
        id: u16,
        entries: u16,
        command_ids: usize,
    ) -> Result<QueuePair, IoFailure> {
        let submissions = CoherentMemory::allocate(platform, u64::from(entries) * SUBMISSION_BYTES, QUEUE_MEMORY)?;
        let completions = match CoherentMemory::allocate(platform, u64::from(entries) * COMPLETION_BYTES, QUEUE_MEMORY)
        {
            Ok(memory) => memory,
            Err(failure) => {
                // Not given to the controller yet: it can go back.
                let _ = submissions.release();
                return Err(failure);
            }
        };
        Ok(QueuePair {
            id,
            entries,
            submissions,
            completions,
            tail: 0,
            submission_head: 0,
            completion_head: 0,
            released_head: 0,
            phase: true,
            in_flight: vec![None; command_ids],
            tail_doorbell: capabilities.submission_tail_doorbell(id),
            head_doorbell: capabilities.completion_head_doorbell(id),
        })
    }

    /// The pair's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Entries in each ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Where the controller sees the submission ring.
    pub fn submission_address(&self) -> u64 {
        self.submissions.device_address().as_u64()
    }

    /// Where the controller sees the completion ring.
    pub fn completion_address(&self) -> u64 {
        self.completions.device_address().as_u64()
    }

    /// Commands the controller holds.
    pub fn outstanding(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }

    /// Entries of the submission ring the controller has not consumed.
    fn unconsumed(&self) -> u16 {
        (self.tail + self.entries - self.submission_head) % self.entries
    }

    /// Writes `entry` at the tail and rings the doorbell: the controller owns
    /// the command (and its data) from now until its completion.
    pub fn submit(&mut self, registers: &dyn RegisterIo, entry: SubmissionEntry) -> Result<(), IoFailure> {
        let id = usize::from(entry.command_id);
        let free_id = matches!(self.in_flight.get(id), Some(None));
        // A full ring keeps one entry empty, so that tail == head means empty.
        if !free_id || self.unconsumed() + 1 >= self.entries {
            return Err(IoFailure::new(IoReturn::NoResources, Cause::SlotNotFree { slot: id }));
        }
        self.submissions.write_bytes(u64::from(self.tail) * SUBMISSION_BYTES, &entry.to_bytes())?;
        self.in_flight[id] = Some(self.tail);
        self.tail = (self.tail + 1) % self.entries;
        registers.write32(self.tail_doorbell, u32::from(self.tail));
        Ok(())
    }

    /// The next new completion, checked, and consumed (the head doorbell is
    /// rung by [`QueuePair::release_completions`]); `Ok(None)` when the slot
    /// at the head still holds the old phase. An entry that lies is consumed
    /// too (its slot is the controller's to write again) and reported as an
    /// error: the caller must not trust the queue any more.
    pub fn next_completion(&mut self) -> Result<Option<CompletionEntry>, IoFailure> {
        let mut bytes = [0u8; 16];
        self.completions.read_bytes(u64::from(self.completion_head) * COMPLETION_BYTES, &mut bytes)?;
        let entry = CompletionEntry::from_bytes(&bytes);
        if entry.phase() != self.phase {
            return Ok(None);
        }
        self.completion_head += 1;
        if self.completion_head == self.entries {
            self.completion_head = 0;
            self.phase = !self.phase;
        }
        let lie = |cause| Err(IoFailure::new(IoReturn::IoError, Cause::Nvme(cause)));
        if entry.submission_queue != self.id {
            return lie(NvmeCause::CompletionWrongQueue { queue: self.id, named: entry.submission_queue });
        }
        // The new head lies in the queue, between the last one and the tail
        // (inclusive); checked in that order, so that a head the controller
        // made up cannot overflow the arithmetic.
        if entry.submission_head >= self.entries
            || (entry.submission_head + self.entries - self.submission_head) % self.entries > self.unconsumed()
        {
            return lie(NvmeCause::HeadOutOfOrder { queue: self.id, head: entry.submission_head });
        }
        let command = entry.command_id;
        let Some(position) = self.in_flight.get(usize::from(command)).copied().flatten() else {
            return lie(NvmeCause::CompletionNotInFlight { queue: self.id, command });
        };
        // A command is fetched before it completes, so the head this
        // completion reports has passed its entry: one between that head and
        // the tail was never fetched (its completion was made up before the
        // command was rung in).
        let head = entry.submission_head;
        if (position + self.entries - head) % self.entries < (self.tail + self.entries - head) % self.entries {
            return lie(NvmeCause::CompletionBeforeFetch { queue: self.id, command, head });
        }
        self.in_flight[usize::from(command)] = None;
        self.submission_head = entry.submission_head;
        Ok(Some(entry))
    }

    /// Tells the controller the completions read so far may be overwritten,
    /// if any were read since it was last told. A head doorbell that moves
    /// nothing is legal, but QEMU counts each one that finds the queue empty
    /// as a queue drained: a needless one drives its count below zero and the
    /// pin interrupt never drops again (an interrupt storm).
    pub fn release_completions(&mut self, registers: &dyn RegisterIo) {
        if self.completion_head != self.released_head {
            registers.write32(self.head_doorbell, u32::from(self.completion_head));
            self.released_head = self.completion_head;
        }
    }

    /// Forgets every command in flight (after the controller was reset).
    pub fn forget_commands(&mut self) {
        self.in_flight.iter_mut().for_each(|held| *held = None);
    }

    /// Gives the rings back: only once the controller was disabled (CSTS.RDY
    /// 0), so that it no longer reads or writes them.
    pub fn release(self) {
        for memory in [self.submissions, self.completions] {
            if let Err(failure) = memory.release() {
                log::error!("Nvme: queue memory not released: {failure}");
            }
        }
    }
}
