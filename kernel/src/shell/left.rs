//! Reads `queue DEV N --no-wait` left in flight: the shell keeps their handles
//! here, so that their buffers come back to it (and are freed) once the
//! device is done, never before. `queue DEV` and `start DEV` wait for what is
//! left on their disk first; `stats` collects what is over on every disk.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::block::{BlockDevice, RequestHandle};
use crate::println;

/// The reads one `queue --no-wait` left on one disk.
struct Left {
    name: String,
    disk: Arc<dyn BlockDevice>,
    handles: Vec<RequestHandle>,
}

/// Every disk's reads left in flight, in the order they were left.
static LEFT: Mutex<Vec<Left>> = Mutex::new(Vec::new());

/// How much of what is left to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collect {
    /// Every read, waiting for those not over yet (as `BlockDevice::wait`
    /// does: a device that does not finish in time is reset first).
    Everything,
    /// Only the reads that are over; the others stay in flight, and here.
    WhatIsOver,
}

/// Keeps `handles`, reads of disk `name` in flight, until they are collected.
pub fn keep(name: &str, disk: Arc<dyn BlockDevice>, handles: Vec<RequestHandle>) {
    LEFT.lock().push(Left { name: String::from(name), disk, handles });
}

/// Reads of disk `name` left in flight (collected or not yet).
pub fn count(name: &str) -> usize {
    LEFT.lock().iter().filter(|left| left.name == name).map(|left| left.handles.len()).sum()
}

/// Collects the reads left on disk `name` (every disk for `None`), as `how`
/// says, and prints a line per disk that had any.
pub fn collect(name: Option<&str>, how: Collect) {
    // Out of the list first: waiting runs the disk's work loop, which must
    // not find the list locked.
    let taken: Vec<Left> = {
        let mut left = LEFT.lock();
        let (taken, kept) = left.drain(..).partition(|left| name.is_none_or(|name| left.name == name));
        *left = kept;
        taken
    };
    for Left { name, disk, handles } in taken {
        let (mut well, mut failed, mut lost) = (0, Vec::new(), 0);
        let mut still = Vec::new();
        for handle in handles {
            if how == Collect::WhatIsOver {
                disk.run_work_loop();
                if !handle.is_finished() {
                    still.push(handle);
                    continue;
                }
            }
            let number = handle.sequence();
            let finished = disk.wait(handle);
            match finished.result {
                Ok(()) => well += 1,
                Err(failure) => failed.push(format!("#{number}: {}", failure.cause())),
            }
            // No buffer back: its memory was abandoned to a device that may
            // still reach it, and is never reused.
            if finished.buffer.is_none() {
                lost += 1;
            }
        }
        let collected = well + failed.len();
        if collected > 0 {
            println!(
                "{name}: collected {collected} read(s) queue --no-wait left: {well} finished well, {} failed{}; \
                 their buffers are back and freed{}",
                failed.len(),
                summary(&failed),
                match lost {
                    0 => String::new(),
                    lost => format!(" ({lost} kept for ever: the device may still reach them)"),
                }
            );
        }
        if !still.is_empty() {
            println!("{name}: {} read(s) of queue --no-wait still in flight; their buffers stay theirs", still.len());
            keep(&name, disk, still);
        }
    }
}

/// The first failures, for the report line.
fn summary(failed: &[String]) -> String {
    match failed {
        [] => String::new(),
        [first, ..] if failed.len() == 1 => format!(" ({first})"),
        [first, ..] => format!(" ({first}, and {} more)", failed.len() - 1),
    }
}
