//! `RequestHandle`: the submitter's claim on a request in flight; the buffer
//! comes back through it when the request is finished.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::Finished;

/// Where the work loop leaves a finished request for its submitter. It is made
/// at submission, so the loop only fills it in.
#[derive(Debug)]
pub(super) struct Ticket {
    sequence: u64,
    /// The how-manyth request of its disk to finish (from 1); 0 until then.
    completion: AtomicU64,
    finished: Mutex<Option<Finished>>,
}

impl Ticket {
    pub(super) fn new(sequence: u64) -> Arc<Ticket> {
        Arc::new(Ticket { sequence, completion: AtomicU64::new(0), finished: Mutex::new(None) })
    }

    pub(super) fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The request is over, the `completion`th of its disk: hands its buffer
    /// and result to the submitter.
    pub(super) fn fulfil(&self, completion: u64, finished: Finished) {
        self.completion.store(completion, Ordering::Release);
        *self.finished.lock() = Some(finished);
    }
}

/// A submitted request. Waiting on it (`BlockDevice::wait`) gives the buffer
/// back; dropping it lets the request run to its end unwatched, and the buffer
/// is freed then (never while the device may use it).
#[derive(Debug)]
#[must_use = "a request's buffer and result come back only through its handle"]
pub struct RequestHandle {
    ticket: Arc<Ticket>,
}

impl RequestHandle {
    pub(super) fn new(ticket: Arc<Ticket>) -> RequestHandle {
        RequestHandle { ticket }
    }

    /// The request's number on its disk, in submission order (from 1).
    pub fn sequence(&self) -> u64 {
        self.ticket.sequence
    }

    /// The how-manyth request of its disk this one was to finish (from 1), once
    /// it is over: compare with [`RequestHandle::sequence`] to see the device's
    /// order.
    pub fn completion(&self) -> Option<u64> {
        match self.ticket.completion.load(Ordering::Acquire) {
            0 => None,
            completion => Some(completion),
        }
    }

    /// Whether the request is over (the buffer is waiting to be taken).
    pub fn is_finished(&self) -> bool {
        self.ticket.finished.lock().is_some()
    }

    /// Whether this handle is the one behind `ticket`.
    pub(super) fn holds(&self, ticket: &Arc<Ticket>) -> bool {
        Arc::ptr_eq(&self.ticket, ticket)
    }

    /// The finished request, if it is over.
    pub(super) fn take(&self) -> Option<Finished> {
        self.ticket.finished.lock().take()
    }
}
