//! The shell's `queue DEV N`: N reads submitted at once, and the order the
//! device finished them in.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::parse;
use crate::block::{BlockOperation, BlockRequest};
use crate::dma::kernel_platform::platform;
use crate::dma::{DmaBuffer, IoDirection};
use crate::memory::Constraints;
use crate::{driver, println};

/// Sectors per read: 4 KiB.
const SECTORS: u64 = 8;
/// The most reads one `queue` submits.
const MOST: u64 = 64;

/// `queue DEV N`: submits N 4 KiB reads spread over the disk, all before
/// waiting for any, then waits for them and says in which order they finished.
pub fn queue(arguments: &[&str]) -> Result<(), String> {
    let [name, _] = arguments else { return Err(String::from("usage: queue DEV N")) };
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let count = parse::argument(arguments, 1, "N")?;
    if !(1..=MOST).contains(&count) {
        return Err(format!("N must be 1 to {MOST}, not {count}"));
    }
    let places = disk.block_count() / SECTORS;
    if places < count {
        return Err(format!("{name} is too small for {count} reads of 4 KiB"));
    }
    let bytes = SECTORS * u64::from(disk.block_size());
    let mut requests = Vec::new();
    for index in 0..count {
        let buffer = DmaBuffer::allocate(platform(), bytes, IoDirection::In, Constraints::NONE)
            .map_err(|failure| format!("no buffer: {failure}"))?;
        // Spread over the disk: a device that sorts by position has a choice.
        let lba = (index * places / count) * SECTORS;
        requests.push(BlockRequest::new(BlockOperation::Read, lba, SECTORS, buffer, 0));
    }
    let before = disk.stats();
    // Together: every read is on the device (as far as it takes them) before
    // the work loop looks for the first completion.
    let mut handles = Vec::new();
    let mut refused = None;
    for submitted in disk.submit_together(requests) {
        match submitted {
            Ok(handle) => handles.push(handle),
            Err(rejected) => refused = refused.or(Some(format!("{name}: {}", rejected.failure))),
        }
    }
    if let Some(refused) = refused {
        for handle in handles {
            let _ = disk.wait(handle);
        }
        return Err(refused);
    }
    // How many the device holds right after the batch went in (some may
    // have finished already, and the rest wait in software for a slot).
    let held = disk.stats().in_flight;
    let first = handles[0].sequence();
    let mut finished: Vec<(u64, u64)> = Vec::new();
    let mut failures = Vec::new();
    for handle in handles {
        let number = handle.sequence() - first + 1;
        // Waiting for the request makes sure it finished; its completion number
        // says when, among all of them.
        let _ = disk.wait_any(core::slice::from_ref(&handle));
        let completion = handle.completion().unwrap_or(u64::MAX);
        if let Err(failure) = disk.wait(handle).result {
            failures.push(format!("read {number}: {failure}"));
        }
        finished.push((completion, number));
    }
    finished.sort_unstable();
    let after = disk.stats();
    println!(
        "submitted {count} reads of 4 KiB to {name} before waiting for any ({name} takes {} at once)",
        disk.queue_depth()
    );
    let order: Vec<String> = finished.iter().map(|(_, number)| format!("{number}")).collect();
    println!("finished in this order: {}", order.join(" "));
    println!("the device held {held} of them at once right after they were submitted");
    println!(
        "{} finished before one submitted earlier; the most {name} has held at once since boot: {}",
        after.out_of_order - before.out_of_order,
        after.deepest
    );
    for failure in failures {
        println!("{failure}");
    }
    Ok(())
}
