//! `QueuedDisk`: the block layer every driver shares. It turns a driver's
//! [`HardwareQueue`] (slots that carry requests) into a [`BlockDevice`] with
//! many requests in flight.
//!
//! One request's life:
//!
//! 1. `submit` checks it, gives it a sequence number and a ticket, and queues it
//!    in software, behind the command gate; then the work loop runs.
//! 2. The loop starts queued requests, first come first served, while the device
//!    has free slots: it prepares the buffer with the slot's command
//!    ([`TransferSlots`]) and lends the prepared transfer to the driver, which
//!    writes the device's descriptors from it and starts the device.
//! 3. The device finishes requests in its own order and interrupts. The handler
//!    only quiets the device and signals the interrupt event source.
//! 4. The next time the loop runs (someone waits or submits), the driver reports
//!    the finished slots and the bytes the device moved; the loop completes each
//!    transfer (exactly those bytes come back from bounce memory), hands buffer
//!    and result to the request's ticket and starts what waits in the freed slots.
//!
//! The driver never owns a buffer: preparing, completing, giving commands back
//! and abandoning memory under a device that will not stop all happen here, the
//! same for every driver.
//!
//! When bounce memory is short, preparing fails with the budget's error; the
//! loop then leaves it at the head of the queue (a deferred
//! load, FreeBSD busdma's way) and tries again when requests finish, unless the
//! request asked to fail at once, or it needs more pages than the whole budget
//! holds and so could never start.
//!
//! A flush (`flush.rs`) takes the same line and a slot, but no buffer: nothing
//! is prepared, lent or completed for it.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::handle::Ticket;
use super::request::check;
use super::work_loop::{CommandGate, InterruptEventSource};
use super::{
    BlockCommand, BlockDevice, BlockOperation, BlockRequest, Deferral, DeviceHealth, DeviceOutcome, DiskShape,
    DoubleBuffering, Finished, HardwareQueue, QueueStats, Rejected, RequestHandle, Slot, SlotCommand, StopReport,
    WriteCache, check_request,
};
use crate::dma::hooks::Site;
use crate::dma::trace::dma_trace;
use crate::dma::{
    Cause, DmaBuffer, IoFailure, IoReturn, NotPrepared, Segment, SlotCompleted, TransferOptions, TransferSlots,
};
use crate::time::Waiter;

mod flush;
mod recovery;

/// How long a request may take, from the moment its submitter waits for it.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The most resets in a row, without a completion in between, before a
/// device that keeps failing is stopped instead.
pub const MAX_RESETS_IN_A_ROW: u64 = 2;

/// Whether the disk takes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Running,
    Stopped,
}

/// What a waiting request asks of the device.
enum Pending {
    /// A read or a write, buffer and all.
    Transfer(BlockRequest),
    /// A flush: no buffer.
    Flush,
}

impl Pending {
    /// What goes back to the submitter with a failure: the buffer (a flush
    /// has none).
    fn into_buffer(self) -> Option<DmaBuffer> {
        match self {
            Pending::Transfer(request) => Some(request.buffer),
            Pending::Flush => None,
        }
    }
}

/// A request waiting in software for a slot (or for bounce memory).
struct Waiting {
    work: Pending,
    ticket: Arc<Ticket>,
    /// Counted as a deferred load already.
    deferred: bool,
}

/// What the disk keeps behind its gate.
struct QueueState {
    mode: Mode,
    waiting: VecDeque<Waiting>,
    /// The ticket of the request in each slot.
    slots: Vec<Option<Arc<Ticket>>>,
    /// Each slot's DMA: its command, and the transfer the device holds.
    transfers: TransferSlots,
    /// The data segments the device was given for the last request started.
    last_segments: Vec<Segment>,
    next_sequence: u64,
    stats: QueueStats,
    /// The command each slot's device holds (read again at a reset).
    commands: Vec<Option<SlotCommand>>,
    /// Resets since the device last finished a request.
    resets_in_a_row: u64,
}

/// What to do with a request that could not start.
enum Verdict {
    /// Leave it at the head of the queue and try again later.
    TryAgain { deferred_load: bool },
    /// Give it back with the failure.
    Fail,
}

/// A disk: a driver's hardware queue with the block layer around it.
pub struct QueuedDisk<H: HardwareQueue> {
    hardware: H,
    shape: DiskShape,
    waiter: &'static dyn Waiter,
    events: InterruptEventSource,
    gate: CommandGate<QueueState>,
    force_double_buffer: AtomicBool,
}

impl<H: HardwareQueue> QueuedDisk<H> {
    /// The block layer around `hardware`: one DMA command per slot, made now
    /// (the command's error if the driver's specification is invalid); waits
    /// with `waiter`.
    pub fn new(hardware: H, waiter: &'static dyn Waiter) -> Result<QueuedDisk<H>, IoFailure> {
        let mut shape = hardware.shape();
        shape.depth = shape.depth.max(1);
        shape.max_request_blocks = shape.max_request_blocks.max(1);
        let transfers =
            TransferSlots::new(shape.platform, shape.specification, shape.depth)?.counting(shape.byte_count);
        let state = QueueState {
            mode: Mode::Running,
            waiting: VecDeque::new(),
            slots: (0..shape.depth).map(|_| None).collect(),
            transfers,
            last_segments: Vec::new(),
            next_sequence: 1,
            stats: QueueStats { depth: shape.depth, ..QueueStats::default() },
            commands: (0..shape.depth).map(|_| None).collect(),
            resets_in_a_row: 0,
        };
        Ok(QueuedDisk {
            hardware,
            shape,
            waiter,
            events: InterruptEventSource::new(),
            gate: CommandGate::new(state),
            force_double_buffer: AtomicBool::new(false),
        })
    }

    /// The driver underneath.
    pub fn hardware(&self) -> &H {
        &self.hardware
    }

    /// The loop's work, behind the gate: collect what the device finished, then
    /// start what waits.
    fn work(&self, state: &mut QueueState) {
        self.events.take();
        let health = self.hardware.collect(&mut |slot, outcome| self.finish(state, slot, outcome));
        match health {
            DeviceHealth::Running => {}
            DeviceHealth::MustStop(why) => {
                log::error!("{}: {why}; the device is stopped", self.shape.driver_name);
                self.stop_hardware(state, &why);
                return;
            }
            DeviceHealth::MustReset(why) => self.reset_or_stop(state, why, None),
        }
        self.start_waiting(state);
    }

    /// Completes a slot the device finished, with the bytes it says it moved
    /// (never more than were prepared), and hands buffer and result to the ticket.
    fn finish(&self, state: &mut QueueState, slot: Slot, outcome: DeviceOutcome) {
        let name = self.shape.driver_name;
        let Some(ticket) = state.slots.get_mut(slot).and_then(Option::take) else {
            log::error!("{name}: the device finished slot {slot}, which holds no request");
            return;
        };
        state.stats.in_flight -= 1;
        // The device works again: a later failure may be mended by a reset.
        state.resets_in_a_row = 0;
        let command = state.commands[slot].take();
        self.note_order(state, slot, &ticket);
        if command == Some(SlotCommand::Flush) {
            // Nothing was prepared: no buffer, and no bytes to believe.
            self.fulfil(state, &ticket, Finished { buffer: None, result: outcome.result });
            return;
        }
        // The DMA layer believes no more than it prepared (a claim past it is
        // `DeviceClaimedTooMuch`, and only the prepared range comes back).
        let Some(completed) = state.transfers.complete(slot, outcome.moved) else {
            // Cannot happen (a slot's ticket and transfer come and go together),
            // but the waiter must not wait for ever.
            log::error!("{name}: slot {slot} held a request but no transfer");
            let lost = IoFailure::new(IoReturn::InternalError, Cause::RequestLost);
            self.fulfil(state, &ticket, Finished { buffer: None, result: Err(lost) });
            return;
        };
        let finished = Finished { result: outcome.result.and(completed.result), buffer: handed_back(completed) };
        self.fulfil(state, &ticket, finished);
    }

    /// Counts (and traces) a request in `slot` that finished while one
    /// submitted before it is still held.
    fn note_order(&self, state: &mut QueueState, slot: Slot, ticket: &Ticket) {
        let name = self.shape.driver_name;
        let sequence = ticket.sequence();
        let earlier =
            state.slots.iter().flatten().map(|other| other.sequence()).filter(|&other| other < sequence).min();
        if let Some(earlier) = earlier {
            state.stats.out_of_order += 1;
            dma_trace!(
                "{name}: request #{sequence} (slot {slot}) finished before #{earlier}, which was submitted first"
            );
        }
    }

    fn fulfil(&self, state: &mut QueueState, ticket: &Ticket, finished: Finished) {
        state.stats.finished += 1;
        if finished.result.is_err() {
            state.stats.failed += 1;
        }
        ticket.fulfil(state.stats.finished, finished);
    }

    /// Starts waiting requests in free slots, in order, until the slots or the
    /// requests run out, or the head of the line must wait.
    fn start_waiting(&self, state: &mut QueueState) {
        while state.mode == Mode::Running {
            let Some(slot) = state.slots.iter().position(Option::is_none) else { break };
            let Some(Waiting { work, ticket, deferred }) = state.waiting.pop_front() else { break };
            let started = match work {
                Pending::Transfer(request) => {
                    let deferral = request.deferral;
                    self.start(state, slot, request)
                        .map_err(|Rejected { request, failure }| (Pending::Transfer(request), failure, deferral))
                }
                // A flush needs no bounce memory, so it never waits for any.
                Pending::Flush => {
                    self.start_flush(state, slot).map_err(|failure| (Pending::Flush, failure, Deferral::FailAtOnce))
                }
            };
            match started {
                Ok(()) => {
                    state.slots[slot] = Some(ticket);
                    state.stats.in_flight += 1;
                    state.stats.deepest = state.stats.deepest.max(state.stats.in_flight);
                }
                Err((work, failure, deferral)) => match verdict(&failure, deferral) {
                    Verdict::TryAgain { deferred_load } => {
                        if deferred_load && !deferred {
                            state.stats.deferred_loads += 1;
                            dma_trace!(
                                "{}: request #{} deferred: {}; it waits for bounce pages to come back",
                                self.shape.driver_name,
                                ticket.sequence(),
                                failure.cause()
                            );
                        }
                        state.waiting.push_front(Waiting { work, ticket, deferred: deferred || deferred_load });
                        break;
                    }
                    Verdict::Fail => {
                        self.fulfil(state, &ticket, Finished { buffer: work.into_buffer(), result: Err(failure) })
                    }
                },
            }
        }
    }

    /// One request into free slot `slot`: asks the driver whether it may
    /// start, prepares its buffer with the slot's command, and lends the
    /// prepared transfer to the driver to program the device. Whatever fails
    /// gives the request back whole, its buffer unprepared.
    fn start(&self, state: &mut QueueState, slot: Slot, request: BlockRequest) -> Result<(), Rejected> {
        let BlockRequest { operation, lba, count, buffer, offset, options, deferral } = request;
        let rebuild = |buffer| BlockRequest { operation, lba, count, buffer, offset, options, deferral };
        let command = BlockCommand { operation, lba, count };
        if let Err(failure) = self.hardware.admit(&SlotCommand::Transfer(command)) {
            return Err(Rejected { request: rebuild(buffer), failure });
        }
        let mut effective = options;
        effective.force_double_buffer |= self.force_double_buffer.load(Ordering::Relaxed);
        let range = (offset, count * u64::from(self.shape.block_size));
        let direction = operation.memory_direction();
        if let Err(NotPrepared { failure, buffer }) =
            state.transfers.prepare(slot, buffer, range, direction, &effective)
        {
            // The cause is kept: a spent bounce budget defers the request.
            return Err(Rejected { request: rebuild(buffer), failure });
        }
        let Some(data) = state.transfers.lend(slot) else { unreachable!("slot {slot} was prepared just now") };
        let Err(failure) = self.hardware.program(slot, &command, &data) else {
            state.last_segments.clear();
            state.last_segments.extend_from_slice(data.segments());
            state.commands[slot] = Some(SlotCommand::Transfer(command));
            return Ok(());
        };
        // The device was not given the slot (the driver's promise on `Err`):
        // nothing moved, nothing comes back from bounce memory.
        let buffer = state.transfers.complete(slot, 0).map(|completed| completed.buffer);
        match buffer {
            Some(buffer) => Err(Rejected { request: rebuild(buffer), failure }),
            None => unreachable!("slot {slot} was prepared just now"),
        }
    }

    /// Queues a checked request behind the gate and runs the loop.
    fn enqueue(&self, request: BlockRequest) -> Result<RequestHandle, Rejected> {
        self.gate.run_action(|state| {
            let queued = self.queue_request(state, request);
            self.work(state);
            queued
        })
    }

    /// The checks every request passes before it is queued: the disk's
    /// bounds, the buffer, and the largest request the device takes.
    fn checked(&self, request: BlockRequest) -> Result<BlockRequest, Rejected> {
        let request = check_request((self.shape.block_size, self.shape.block_count), request)?;
        let max = self.shape.max_request_blocks;
        if request.count > max {
            let failure = IoFailure::new(IoReturn::BadArgument, Cause::RequestTooLarge { count: request.count, max });
            return Err(Rejected { request, failure });
        }
        Ok(request)
    }

    /// Puts a checked request at the end of the line, unless the disk is
    /// stopped; the caller runs the loop.
    fn queue_request(&self, state: &mut QueueState, request: BlockRequest) -> Result<RequestHandle, Rejected> {
        if state.mode == Mode::Stopped {
            let failure = IoFailure::new(IoReturn::NotReady, Cause::DriverStopped);
            return Err(Rejected { request, failure });
        }
        let ticket = self.new_ticket(state);
        state.waiting.push_back(Waiting { work: Pending::Transfer(request), ticket: ticket.clone(), deferred: false });
        Ok(RequestHandle::new(ticket))
    }

    /// Behind the gate, on a running disk: gives `work` a ticket, queues it
    /// last, and runs the loop.
    fn queue_and_work(&self, state: &mut QueueState, work: Pending) -> RequestHandle {
        let ticket = self.new_ticket(state);
        state.waiting.push_back(Waiting { work, ticket: ticket.clone(), deferred: false });
        self.work(state);
        RequestHandle::new(ticket)
    }

    /// The next request's ticket, counted as submitted.
    fn new_ticket(&self, state: &mut QueueState) -> Arc<Ticket> {
        let ticket = Ticket::new(state.next_sequence);
        state.next_sequence += 1;
        state.stats.submitted += 1;
        ticket
    }

    fn in_flight(&self) -> usize {
        self.gate.run_action(|state| state.stats.in_flight)
    }
}

/// The buffer of a completed slot, unless the DMA layer abandoned its memory
/// (an IOMMU that did not confirm the unmap of the buffer's own pages may still
/// let the device reach them): then it is not handed back (`buffer: None`, as
/// for a device that would not stop). The DMA layer decides which; a buffer
/// whose transfer went wholly through (leaked) bounce pages comes back.
fn handed_back(completed: SlotCompleted) -> Option<DmaBuffer> {
    match completed.buffer.descriptor().is_abandoned() {
        true => None,
        false => Some(completed.buffer),
    }
}

/// Whether a request that could not start may wait: `Busy` means the hardware
/// is taken for a moment; a spent bounce budget, that pages will come back,
/// unless the request needs more than the whole budget or asked not to wait.
fn verdict(failure: &IoFailure, deferral: Deferral) -> Verdict {
    match (failure.code(), failure.cause()) {
        (IoReturn::Busy, _) => Verdict::TryAgain { deferred_load: false },
        (IoReturn::NoResources, Cause::BounceBudgetSpent { pages, limit, .. }) => {
            if pages > limit || deferral == Deferral::FailAtOnce {
                Verdict::Fail
            } else {
                Verdict::TryAgain { deferred_load: true }
            }
        }
        _ => Verdict::Fail,
    }
}

impl<H: HardwareQueue> BlockDevice for QueuedDisk<H> {
    fn driver_name(&self) -> &'static str {
        self.shape.driver_name
    }

    fn block_size(&self) -> u32 {
        self.shape.block_size
    }

    fn block_count(&self) -> u64 {
        self.shape.block_count
    }

    fn description(&self) -> String {
        self.hardware.description()
    }

    fn set_double_buffering(&self, policy: DoubleBuffering) {
        self.force_double_buffer.store(policy == DoubleBuffering::Forced, Ordering::Relaxed);
    }

    fn last_segments(&self) -> Vec<Segment> {
        self.gate.run_action(|state| state.last_segments.clone())
    }

    fn hooks_site(&self) -> Site {
        Site::of(&self.hardware)
    }

    fn queue_depth(&self) -> usize {
        self.shape.depth
    }

    fn write_cache(&self) -> WriteCache {
        self.shape.write_cache
    }

    fn max_request_blocks(&self) -> u64 {
        self.shape.max_request_blocks
    }

    fn submit_flush(&self) -> Result<RequestHandle, IoFailure> {
        self.enqueue_flush()
    }

    fn submit(&self, request: BlockRequest) -> Result<RequestHandle, Rejected> {
        self.enqueue(self.checked(request)?)
    }

    fn submit_together(&self, requests: Vec<BlockRequest>) -> Vec<Result<RequestHandle, Rejected>> {
        let checked: Vec<_> = requests.into_iter().map(|request| self.checked(request)).collect();
        self.gate.run_action(|state| {
            let queued =
                checked.into_iter().map(|request| request.and_then(|r| self.queue_request(state, r))).collect();
            self.work(state);
            queued
        })
    }

    fn wait(&self, handle: RequestHandle) -> Finished {
        let answered = self.waiter.wait_until(REQUEST_TIMEOUT_MS, &mut || {
            self.run_work_loop();
            handle.is_finished()
        });
        if answered.is_err() {
            self.give_up(&handle);
        }
        handle.take().unwrap_or(Finished {
            buffer: None,
            result: Err(IoFailure::new(IoReturn::InternalError, Cause::RequestLost)),
        })
    }

    fn wait_any(&self, handles: &[RequestHandle]) -> Result<usize, IoFailure> {
        if handles.is_empty() {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::NothingToWaitFor));
        }
        let finished = || handles.iter().position(RequestHandle::is_finished);
        let answered = self.waiter.wait_until(REQUEST_TIMEOUT_MS, &mut || {
            self.run_work_loop();
            finished().is_some()
        });
        if answered.is_err() {
            // The oldest request took too long: the device is stuck.
            if let Some(oldest) = handles.iter().filter(|handle| !handle.is_finished()).min_by_key(|h| h.sequence()) {
                self.give_up(oldest);
            }
        }
        finished()
            .ok_or(IoFailure::new(IoReturn::Timeout, Cause::TimedOut { milliseconds: REQUEST_TIMEOUT_MS, last: None }))
    }

    fn run_work_loop(&self) {
        self.gate.try_run_action(|state| self.work(state));
    }

    fn interrupt(&self) {
        if self.hardware.acknowledge_interrupt() {
            self.events.signal();
        }
    }

    fn driver_counters(&self) -> Vec<(&'static str, u64)> {
        self.hardware.counters()
    }

    fn stats(&self) -> QueueStats {
        self.gate.run_action(|state| QueueStats {
            queued: state.waiting.len(),
            interrupts: self.events.total(),
            ..state.stats
        })
    }

    fn stop(&self) -> Result<StopReport, IoFailure> {
        let (in_flight, mut aborted) = self.gate.run_action(|state| {
            if state.mode == Mode::Stopped {
                return Err(IoFailure::new(IoReturn::NotPermitted, Cause::DriverStoppedAlready));
            }
            // No new request starts from here; those waiting are failed.
            state.mode = Mode::Stopped;
            Ok((state.stats.in_flight, self.abort_waiting(state)))
        })?;
        // Let the device finish what it holds (the loop still collects).
        let _ = self.waiter.wait_until(REQUEST_TIMEOUT_MS, &mut || {
            self.run_work_loop();
            self.in_flight() == 0
        });
        let why = IoFailure::new(IoReturn::Aborted, Cause::DriverStopped);
        let (unfinished, prepared_left) =
            self.gate.run_action(|state| (self.stop_hardware(state, &why), state.transfers.check_stopped()));
        aborted += unfinished;
        let drained = in_flight.saturating_sub(unfinished);
        Ok(StopReport { drained, aborted, prepared_left })
    }

    fn start(&self) -> Result<(), IoFailure> {
        self.gate.run_action(|state| {
            if state.mode == Mode::Running {
                return Err(IoFailure::new(IoReturn::Busy, Cause::DriverRunningAlready));
            }
            self.hardware.reopen()?;
            state.mode = Mode::Running;
            Ok(())
        })
    }

    fn transfer(
        &self,
        operation: BlockOperation,
        lba: u64,
        count: u64,
        buffer: &mut DmaBuffer,
        offset: u64,
        options: &TransferOptions,
    ) -> Result<(), IoFailure> {
        let DiskShape { block_size, block_count, max_request_blocks, .. } = self.shape;
        // The whole transfer is checked first, so that no part of a bad one runs.
        check((block_size, block_count), operation, (lba, count), buffer, offset)?;
        let mut done = 0;
        while done < count {
            let blocks = (count - done).min(max_request_blocks);
            let part_offset = offset + done * u64::from(block_size);
            // The buffer stays borrowed by this call until the part is over.
            // The whole was checked above and a part is at most `max`: it goes
            // straight to the queue, not through the checks again.
            let part = request_for(operation, lba + done, blocks, buffer.alias_for_call(), part_offset, options);
            let handle = self.enqueue(part).map_err(|rejected| rejected.failure)?;
            self.wait(handle).result?;
            done += blocks;
        }
        Ok(())
    }
}

fn request_for(
    operation: BlockOperation,
    lba: u64,
    count: u64,
    buffer: DmaBuffer,
    offset: u64,
    options: &TransferOptions,
) -> BlockRequest {
    BlockRequest { operation, lba, count, buffer, offset, options: *options, deferral: Deferral::WaitForBounceMemory }
}
