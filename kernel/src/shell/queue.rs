//! The shell's `queue DEV N`: N reads submitted at once, and the order the
//! device finished them in. With `--bits`/`--above-4g` they may need bounce
//! pages, and wait for them (deferred loads); with `--no-wait` they are left
//! in flight, their handles kept by `left.rs`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::left::{self, Collect};
use super::parse::{self, QUEUE_USAGE, QueueOptions, Waiting};
use crate::block::{BlockOperation, BlockRequest, TransferOptions};
use crate::dma::kernel_platform::platform;
use crate::dma::{DmaBuffer, DmaPlatform, IoDirection, Specification};
use crate::memory::Constraints;
use crate::{driver, println};

/// Sectors per read: 4 KiB.
const SECTORS: u64 = 8;
/// The most reads one `queue` submits.
const MOST: u64 = 64;

/// 4 GiB: what a 32-bit address register cannot hold.
const FOUR_GIB: u64 = 1 << 32;

/// `queue DEV N [options]`: submits N 4 KiB reads spread over the disk, all
/// before waiting for any, then waits for them and says in which order they
/// finished (or, `--no-wait`, leaves them in flight).
pub fn queue(arguments: &[&str]) -> Result<(), String> {
    let [name, _, rest @ ..] = arguments else { return Err(String::from(QUEUE_USAGE)) };
    let options: QueueOptions = parse::queue_options(rest)?;
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let count = parse::argument(arguments, 1, "N")?;
    if !(1..=MOST).contains(&count) {
        return Err(format!("N must be 1 to {MOST}, not {count}"));
    }
    let places = disk.block_count() / SECTORS;
    if places < count {
        return Err(format!("{name} is too small for {count} reads of 4 KiB"));
    }
    // What an earlier `--no-wait` left on this disk comes back first: its
    // handles are waited for, never dropped unseen.
    left::collect(Some(name), Collect::Everything);
    let bytes = SECTORS * u64::from(disk.block_size());
    let transfer = TransferOptions {
        restrict: options.bits.map(|bits| Specification { num_address_bits: bits, ..Specification::UNLIMITED_64 }),
        force_double_buffer: false,
    };
    let mut requests = Vec::new();
    for index in 0..count {
        // Unconstrained buffers come from the highest zone: above 4 GiB when
        // the machine has memory there.
        let buffer = DmaBuffer::allocate(platform(), bytes, IoDirection::In, Constraints::NONE)
            .map_err(|failure| format!("no buffer: {failure}"))?;
        let address = buffer.descriptor().physical_segment(0).map_err(|code| format!("{code}"))?.0.as_u64();
        if options.above_4g && address < FOUR_GIB {
            return Err(String::from("no memory above 4 GiB on this machine (boot with MEM=6G)"));
        }
        // Spread over the disk: a device that sorts by position has a choice.
        let lba = (index * places / count) * SECTORS;
        let mut request = BlockRequest::new(BlockOperation::Read, lba, SECTORS, buffer, 0);
        request.options = transfer;
        requests.push(request);
    }
    let before = disk.stats();
    let bounce_before = platform().accounting().stats();
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
    if options.waiting == Waiting::NotAtAll {
        let submitted = handles.len();
        let waiting = disk.stats().queued;
        left::keep(name, disk.clone(), handles);
        println!(
            "submitted {submitted} reads of 4 KiB to {name} and did not wait: the device holds {held}, {waiting} wait \
             in software ({name} takes {} at once)",
            disk.queue_depth()
        );
        println!(
            "their buffers are the requests' until they are collected: stop {name} drains or aborts them; \
             queue {name}, start {name} or stats collects them"
        );
        return Ok(());
    }
    let first = handles[0].sequence();
    let mut finished: Vec<(u64, u64)> = Vec::new();
    let mut failures = Vec::new();
    let mut data = Vec::new();
    for handle in handles {
        let number = handle.sequence() - first + 1;
        // Waiting for the request makes sure it finished; its completion number
        // says when, among all of them.
        let _ = disk.wait_any(core::slice::from_ref(&handle));
        let completion = handle.completion().unwrap_or(u64::MAX);
        let done = disk.wait(handle);
        match (done.result, done.buffer) {
            (Err(failure), _) => failures.push(format!("read {number}: {failure}")),
            (Ok(()), Some(buffer)) if options.digest => {
                data.extend(buffer.to_vec(0, bytes as usize).map_err(|failure| format!("{failure}"))?)
            }
            (Ok(()), _) => {}
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
    let deferred = after.deferred_loads - before.deferred_loads;
    let bounce_after = platform().accounting().stats();
    if options.bits.is_some() || options.above_4g || deferred > 0 {
        println!(
            "{} of them were bounced; {deferred} waited for bounce pages first (deferred loads: the budget is {} \
             pages)",
            bounce_after.bounced_transfers - bounce_before.bounced_transfers,
            bounce_after.page_limit
        );
    }
    if options.digest {
        match failures.len() {
            0 => println!("their data, in the order submitted: sha256 {}", crate::digest::sha256_hex(&data)),
            failed => println!("their data: no digest, {failed} of them failed"),
        }
    }
    for failure in failures {
        println!("{failure}");
    }
    Ok(())
}
