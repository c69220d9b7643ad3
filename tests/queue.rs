//! Test kernel: many requests in flight on every disk (virtio, AHCI with NCQ,
//! IDE queued in software), random reads and writes into buffers above and
//! below 4 GiB, completions in the device's order, a tiny bounce budget, and a
//! driver stopped with requests in flight.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, Finished, RequestHandle, TransferOptions, WriteCache};
use dmakit::digest::sha256_hex;
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{Cause, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand, IoReturn, Specification};
use dmakit::memory::Constraints;
use dmakit::testing::random::Random;
use dmakit::{driver, pattern, println};
use spin::Once;
use x86_64::PhysAddr;

dmakit::test_kernel!(
    every_disk_takes_32_requests_and_every_byte_is_right,
    completions_arrive_in_the_devices_order_not_the_submitters,
    a_tiny_bounce_budget_defers_loads_and_everything_completes,
    stopping_a_driver_with_requests_in_flight_gives_every_buffer_back,
    every_disk_flushes_its_volatile_cache_after_writes,
);

/// Where each test writes, far from what the other test kernels check: a
/// region of its own, so that the runner's check of one test's region is not
/// spoiled by a later test.
const BATCH_REGION: u64 = 24_000;
const ORDER_REGION: u64 = 26_100;
const BUDGET_REGION: u64 = 28_200;
const STOP_REGION: u64 = 30_300;
/// Past the stop test's region (30,300 + 2,048 sectors), before the end (32,768).
const FLUSH_REGION: u64 = 32_400;
/// Sectors each of the 32 requests owns (they never overlap, so the device
/// may finish them in any order and the disk's content is still known).
const AREA: u64 = 64;
const REQUESTS: u64 = 32;
const FOUR_GIB: u64 = 1 << 32;

/// The disks of the `pc` machine: (name, image tag, runner's disk name).
const DISKS: [(&str, u8, &str); 4] =
    [("vda", b'V', "virtio"), ("hda", b'A', "ata"), ("sda", b'S', "ahci"), ("nvme0n1", b'N', "nvme")];

/// A disk's name, its image's pattern tag, the runner's name for its image, and the disk.
type Disk = (&'static str, u8, &'static str, Arc<dyn BlockDevice>);

static ATTACHED: Once<Vec<Disk>> = Once::new();

fn disks() -> &'static [Disk] {
    ATTACHED.call_once(|| {
        driver::attach(&dmakit_drivers::all());
        let mut disks: Vec<Disk> = DISKS
            .iter()
            .map(|&(name, tag, host)| {
                let disk = driver::find_block_device(name).unwrap_or_else(|| panic!("{name} attached"));
                (name, tag, host, disk)
            })
            .collect();
        // On q35 (MACHINE=q35 make test) the modern virtio disk, behind the IOMMU, too.
        if let Some(modern) = driver::find_block_device("vdb") {
            disks.push(("vdb", b'M', "modern", modern));
        }
        disks
    })
}

/// xorshift64: a fixed pseudo-random sequence, so a failure repeats.
fn placement(high: bool) -> Constraints {
    if high { Constraints::NONE } else { Constraints::below(PhysAddr::new(FOUR_GIB)) }
}

/// One planned request: its area's blocks, and for a write the bytes it writes.
struct Planned {
    operation: BlockOperation,
    lba: u64,
    count: u64,
    data: Vec<u8>,
}

/// 32 requests of random kinds and sizes, one per area, into buffers
/// alternately above and below 4 GiB, made before any is submitted so that
/// submitting them is quick.
fn plan_batch(random: &mut Random, options: TransferOptions, region: u64) -> (Vec<Planned>, Vec<BlockRequest>) {
    let mut plans = Vec::new();
    let mut requests = Vec::new();
    for area in 0..REQUESTS {
        let count = 1 + random.below(AREA);
        let lba = region + area * AREA + random.below(AREA - count + 1);
        let operation = if random.below(2) == 0 { BlockOperation::Read } else { BlockOperation::Write };
        let high = area % 2 == 0;
        let mut buffer =
            DmaBuffer::allocate(platform(), count * 512, IoDirection::InOut, placement(high)).expect("buffer");
        assert_eq!(buffer.descriptor().physical_segment(0).unwrap().0.as_u64() >= FOUR_GIB, high);
        let mut data = Vec::new();
        if operation == BlockOperation::Write {
            data = (0..count * 512).map(|_| random.below(256) as u8).collect();
            buffer.write_bytes(0, &data).unwrap();
        }
        let mut request = BlockRequest::new(operation, lba, count, buffer, 0);
        request.options = options;
        plans.push(Planned { operation, lba, count, data });
        requests.push(request);
    }
    (plans, requests)
}

fn submit_all(disk: &dyn BlockDevice, requests: Vec<BlockRequest>) -> Vec<RequestHandle> {
    // Together: a device that finishes a read before the next submit returns
    // (NVMe under TCG) still gets them all at once.
    disk.submit_together(requests).into_iter().map(|submitted| submitted.expect("submitted")).collect()
}

/// Waits for every request, checks each read against `mirror` (what the scratch
/// region holds) and keeps `mirror` up to date with the writes. Returns the
/// submission numbers in the order the requests finished.
fn finish_batch(
    disk: &dyn BlockDevice,
    plans: &[Planned],
    handles: Vec<RequestHandle>,
    mirror: &mut [u8],
    region: u64,
) -> Vec<u64> {
    let mut finished_order = Vec::new();
    for (index, handle) in handles.into_iter().enumerate() {
        disk.wait_any(core::slice::from_ref(&handle)).expect("the request finishes");
        finished_order.push((handle.completion().expect("finished"), handle.sequence()));
        let Finished { buffer, result } = disk.wait(handle);
        result.unwrap_or_else(|failure| panic!("request {index}: {failure}"));
        let plan = &plans[index];
        let start = ((plan.lba - region) * 512) as usize;
        let bytes = &mut mirror[start..start + (plan.count * 512) as usize];
        match plan.operation {
            BlockOperation::Read => {
                let got = buffer.expect("buffer back").to_vec(0, bytes.len()).unwrap();
                assert!(got == *bytes, "request {index}: read {}+{} differs", plan.lba, plan.count);
            }
            BlockOperation::Write => bytes.copy_from_slice(&plan.data),
        }
    }
    finished_order.sort_unstable();
    finished_order.into_iter().map(|(_, sequence)| sequence).collect()
}

/// A batch from planning to the last check; returns the finishing order.
fn run_batch(
    disk: &dyn BlockDevice,
    random: &mut Random,
    mirror: &mut [u8],
    options: TransferOptions,
    region: u64,
) -> Vec<u64> {
    let (plans, requests) = plan_batch(random, options, region);
    let handles = submit_all(disk, requests);
    finish_batch(disk, &plans, handles, mirror, region)
}

fn scratch_mirror(tag: u8, region: u64) -> Vec<u8> {
    let mut mirror = vec![0; (REQUESTS * AREA * 512) as usize];
    pattern::fill(region, tag, &mut mirror);
    mirror
}

/// Reads the whole scratch region back and compares it with `mirror`; asks the
/// runner to check the image file too.
fn check_region(name: &str, host: &str, disk: &dyn BlockDevice, mirror: &[u8], region: u64) {
    let sectors = REQUESTS * AREA;
    let mut whole = DmaBuffer::allocate(platform(), sectors * 512, IoDirection::In, Constraints::NONE).unwrap();
    disk.read(region, sectors, &mut whole, 0).expect("read back");
    assert!(whole.to_vec(0, mirror.len()).unwrap() == mirror, "{name}: the scratch region differs");
    println!("host-check {host} {region} {sectors} {}", sha256_hex(mirror));
}

fn every_disk_takes_32_requests_and_every_byte_is_right() {
    for (name, tag, host, disk) in disks() {
        let mut random = Random(0x5eed_0000 + u64::from(*tag));
        let mut mirror = scratch_mirror(*tag, BATCH_REGION);
        let before = disk.stats();
        for _ in 0..2 {
            run_batch(disk.as_ref(), &mut random, &mut mirror, TransferOptions::default(), BATCH_REGION);
        }
        let after = disk.stats();
        assert_eq!(after.finished - before.finished, 2 * REQUESTS, "{name}");
        assert_eq!(after.failed, before.failed, "{name}: no request failed");
        // A queueing device held several at once (how many depends on how fast
        // it answers); IDE one, the rest waiting in software.
        if disk.queue_depth() > 1 {
            assert!(after.deepest > 1, "{name}: deepest queue {}", after.deepest);
        } else {
            assert_eq!(after.deepest, 1, "{name}: deepest queue");
        }
        println!("{name}: depth {}, deepest {} of 32 submitted at once", disk.queue_depth(), after.deepest);
        check_region(name, host, disk.as_ref(), &mirror, BATCH_REGION);
    }
}

fn completions_arrive_in_the_devices_order_not_the_submitters() {
    for (name, tag, host, disk) in disks() {
        let mut random = Random(0x0dd_0000 + u64::from(*tag));
        let mut mirror = scratch_mirror(*tag, ORDER_REGION);
        let before = disk.stats().out_of_order;
        let mut out_of_order = 0;
        let mut shown = String::new();
        // Whether a queueing device reorders a batch depends on how QEMU's I/O
        // threads happen to run: up to 16 batches, until one shows it.
        for batch in 0..16 {
            let order = run_batch(disk.as_ref(), &mut random, &mut mirror, TransferOptions::default(), ORDER_REGION);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if order != sorted && shown.is_empty() {
                shown = format!("{:?}", &order[..]);
            }
            out_of_order = disk.stats().out_of_order - before;
            if batch >= 3 && (out_of_order > 0 || disk.queue_depth() == 1) {
                break;
            }
        }
        if disk.queue_depth() > 1 {
            // The layer's count and the order the completions came in must
            // agree. Whether the device reorders at all is QEMU's business
            // (its I/O threads): a run where it kept order is reported, not
            // failed.
            assert_eq!(
                out_of_order > 0,
                !shown.is_empty(),
                "{name}: {out_of_order} counted out of order, seen: {shown}"
            );
            match shown.is_empty() {
                true => println!("{name}: kept submission order in every batch this time (QEMU's I/O threads decide)"),
                false => println!("{name}: finished in this order (submission numbers): {shown}"),
            }
        } else {
            assert_eq!(out_of_order, 0, "{name}: one at a time finishes in order");
            println!("{name}: one command at a time: completions in submission order");
        }
        check_region(name, host, disk.as_ref(), &mirror, ORDER_REGION);
    }
}

fn a_tiny_bounce_budget_defers_loads_and_everything_completes() {
    // vda takes 32 requests at once; restricted to 32 bits, its buffers above
    // 4 GiB bounce, up to 8 pages each, and the budget is 8 pages: most
    // requests must wait for pages the others give back.
    let (name, tag, host, disk) = disks().iter().find(|(name, ..)| *name == "vda").expect("vda");
    let narrow = Specification { num_address_bits: 32, ..Specification::UNLIMITED_64 };
    let options = TransferOptions { restrict: Some(narrow), force_double_buffer: false };
    let mut mirror = scratch_mirror(*tag, BUDGET_REGION);

    let accounting = platform().accounting();
    let limit = accounting.stats().page_limit;
    accounting.set_page_limit(8);
    let before = disk.stats();
    let mut random = Random(0xb0_0000);
    let (plans, requests) = plan_batch(&mut random, options, BUDGET_REGION);
    // Someone else holds 6 of the 8 pages while the batch is submitted: the
    // first request needing more than 2 must wait, and all behind it.
    let mut holder = DmaBuffer::allocate(platform(), 6 * 4096, IoDirection::In, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).unwrap();
    let held = DmaTransfer::prepare(&mut command, &mut holder, 0, 0, &TransferOptions::default()).expect("held");
    let handles = submit_all(disk.as_ref(), requests);
    let waiting = disk.stats().queued;
    // No device saw the held pages: completing gives them back.
    let _ = held.complete(0);
    finish_batch(disk.as_ref(), &plans, handles, &mut mirror, BUDGET_REGION);
    let after = disk.stats();
    let in_use = accounting.stats().pages_in_use;
    accounting.set_page_limit(limit);
    assert_eq!(after.failed, before.failed, "{name}: nothing failed");
    assert!(after.deferred_loads > before.deferred_loads, "{name}: loads were deferred");
    println!(
        "{name}: {} deferred load(s), {waiting} request(s) waiting in line, with an 8-page budget",
        after.deferred_loads - before.deferred_loads
    );
    assert_eq!(in_use, 0, "every bounce page came back");
    check_region(name, host, disk.as_ref(), &mirror, BUDGET_REGION);
}

fn stopping_a_driver_with_requests_in_flight_gives_every_buffer_back() {
    for (name, _, _, disk) in disks() {
        let mut handles = Vec::new();
        for area in 0..REQUESTS {
            let buffer = DmaBuffer::allocate(platform(), AREA * 512, IoDirection::In, Constraints::NONE).unwrap();
            let request = BlockRequest::new(BlockOperation::Read, STOP_REGION + area * AREA, AREA, buffer, 0);
            handles.push(disk.submit(request).expect("submitted"));
        }
        let at_stop = disk.stats();
        let report = disk.stop().expect("stopped");
        // The device may have finished some before the stop: the rest drained
        // or were aborted.
        assert_eq!(report.drained + report.aborted, at_stop.in_flight + at_stop.queued, "{name}: {report:?}");
        assert_eq!(report.prepared_left, 0, "{name}: no command left prepared");
        for handle in handles {
            let finished = disk.wait(handle);
            assert!(finished.buffer.is_some(), "{name}: every buffer comes back");
            if let Err(failure) = finished.result {
                assert_eq!(failure.code(), IoReturn::Aborted, "{name}: {failure}");
                assert_eq!(failure.cause(), Cause::DriverStopped);
            }
        }
        let mut buffer = DmaBuffer::allocate(platform(), 512, IoDirection::In, Constraints::NONE).unwrap();
        let refused = disk.read(0, 1, &mut buffer, 0).unwrap_err();
        assert_eq!(refused.cause(), Cause::DriverStopped, "{name}");
        disk.start().expect("started again");
        disk.read(0, 1, &mut buffer, 0).expect("reads after start");
        println!("{name}: {report:?}; started again");
    }
}

/// QEMU gives every disk here a volatile write cache (virtio-blk offers
/// `VIRTIO_BLK_F_FLUSH`, the ATA disks set IDENTIFY word 82 bit 5, the NVMe
/// controller sets VWC), so each flush below goes to the device, after writes
/// it finished, and comes back well; a flush on a stopped disk is refused.
fn every_disk_flushes_its_volatile_cache_after_writes() {
    for (name, _, _, disk) in disks() {
        assert_eq!(disk.write_cache(), WriteCache::Volatile, "{name}");
        let mut buffer = DmaBuffer::allocate(platform(), 4096, IoDirection::InOut, Constraints::NONE).unwrap();
        buffer.write_bytes(0, &[0x5a; 4096]).unwrap();
        disk.write(FLUSH_REGION, 8, &mut buffer, 0).expect("the write");
        let before = disk.stats();
        disk.flush().unwrap_or_else(|failure| panic!("{name}: {failure}"));
        let after = disk.stats();
        assert_eq!(after.flushes, before.flushes + 1, "{name}");
        assert_eq!(after.failed, before.failed, "{name}: the device answered the flush well");
        println!("{name}: flushed by the device");
    }
}
