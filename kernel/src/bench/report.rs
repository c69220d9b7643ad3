//! What `make bench` and the shell's `bench` print.

use super::paths::{bench_runs, bounce_costs_us, copy_bandwidths, disk_sha256, frame_alloc_free_ns, measure};
use super::queue_depth::{Pattern, read_at_depth};
use super::read_throughputs;
use super::summary::{QUICK_NOISE_NOTE, QuickPlan, quick_lines, quick_plan};
use alloc::string::String;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::{driver, println};

/// The name a disk's figures carry: its kind of device.
fn kind(name: &str) -> &'static str {
    match name {
        // vdb exists on q35 only: the modern virtio disk behind the IOMMU.
        "vdb" => "vdb",
        _ if name.starts_with("vd") => "virtio",
        _ if name.starts_with("sd") => "ahci",
        _ if name.starts_with("nvme") => "nvme",
        _ => "ata",
    }
}

/// One queue-depth figure: `requests` reads of `size` bytes at `depth`.
struct DepthRun {
    figure: &'static str,
    pattern: Pattern,
    size: u64,
    requests: u64,
    depth: usize,
}

/// The queue-depth figures of `make bench`, for every disk.
const DEPTH_RUNS: [DepthRun; 6] = [
    DepthRun { figure: "seq128k_qd1", pattern: Pattern::Sequential, size: 128 << 10, requests: 512, depth: 1 },
    DepthRun { figure: "seq128k_qd32", pattern: Pattern::Sequential, size: 128 << 10, requests: 512, depth: 32 },
    DepthRun { figure: "rand4k_qd1", pattern: Pattern::Random, size: 4 << 10, requests: 2048, depth: 1 },
    DepthRun { figure: "rand4k_qd32", pattern: Pattern::Random, size: 4 << 10, requests: 2048, depth: 32 },
    DepthRun { figure: "seq4k_qd1", pattern: Pattern::Sequential, size: 4 << 10, requests: 4096, depth: 1 },
    DepthRun { figure: "seq1m_qd1", pattern: Pattern::Sequential, size: 1 << 20, requests: 64, depth: 1 },
];

/// Prints one disk's queue-depth figures as `BENCH` lines.
fn depth_figures(kind: &str, disk: &dyn BlockDevice) {
    for run in &DEPTH_RUNS {
        match read_at_depth(disk, run.pattern, run.size, run.requests, run.depth) {
            Ok(result) => match run.pattern {
                Pattern::Sequential => {
                    println!("BENCH {kind}_{}={:.1} MB/s", run.figure, result.megabytes_per_second())
                }
                Pattern::Random => println!("BENCH {kind}_{}={:.0} IOPS", run.figure, result.iops()),
            },
            Err(error) => println!("BENCH_ERROR {kind}_{}: {error}", run.figure),
        }
    }
}

/// The shell's `bench`: 16 MiB (or the whole disk) of each disk, along each
/// read path, one request in flight; with a queue depth (`bench --qd N`),
/// sequential 128 KiB and random 4 KiB reads with N in flight instead. A disk
/// of 0 bytes is refused; a path that cannot be measured says why, and the
/// others are measured all the same. Ends with a line saying how noisy one
/// short pass is, and that `make bench` is the measurement.
pub fn quick(depth: Option<usize>) {
    for (name, disk) in driver::block_devices() {
        let block = u64::from(disk.block_size());
        let plan = quick_plan(disk.block_count() * block);
        let QuickPlan::Measure { bytes, .. } = plan else {
            print_lines(quick_lines(&name, plan, &[]));
            continue;
        };
        if let Some(depth) = depth {
            // Requests no larger than the disk: a tiny disk gets smaller ones.
            let fit = |wanted: u64| wanted.min(bytes - bytes % block).max(block);
            let (sequential_size, random_size) = (fit(128 << 10), fit(4 << 10));
            let sequential_count = (bytes / sequential_size).max(1);
            let sequential =
                read_at_depth(disk.as_ref(), Pattern::Sequential, sequential_size, sequential_count, depth);
            let random = read_at_depth(disk.as_ref(), Pattern::Random, random_size, 1024, depth);
            match (sequential, random) {
                (Ok(sequential), Ok(random)) => println!(
                    "{name}: queue depth {depth}: sequential {} reads {:.1} MB/s, random {} reads {:.0} IOPS \
                     (the device takes {} at once)",
                    crate::shell::parse::size(sequential_size),
                    sequential.megabytes_per_second(),
                    crate::shell::parse::size(random_size),
                    random.iops(),
                    disk.queue_depth()
                ),
                (Err(error), _) | (_, Err(error)) => println!("{name}: benchmark failed: {error}"),
            }
            continue;
        }
        let figures: Vec<(&str, _)> =
            read_throughputs(disk.as_ref(), bytes).into_iter().map(|(path, rate)| (path.description(), rate)).collect();
        print_lines(quick_lines(&name, plan, &figures));
    }
    println!("{QUICK_NOISE_NOTE}");
}

fn print_lines(lines: Vec<String>) {
    for line in lines {
        println!("{line}");
    }
}

/// The full benchmark `make bench` runs; prints `BENCH name=value unit` lines.
pub fn full() {
    for (name, disk) in driver::block_devices() {
        let kind = kind(&name);
        let bytes = disk.block_count() * u64::from(disk.block_size());
        match disk_sha256(disk.as_ref()) {
            Ok(digest) => println!("BENCH_SHA256 {kind} {digest}"),
            Err(error) => println!("BENCH_ERROR {kind} sha256: {error}"),
        }
        let runs = bench_runs(&name);
        for (run, rate) in runs.iter().zip(measure(disk.as_ref(), bytes, &runs)) {
            match rate {
                Ok(rate) => println!("BENCH {kind}_read_{}={rate:.1} MB/s", run.figure),
                Err(error) => println!("BENCH_ERROR {kind}_read_{}: {error}", run.figure),
            }
        }
        depth_figures(kind, disk.as_ref());
    }
    match copy_bandwidths() {
        Ok((memcpy, sync_copy)) => {
            println!("BENCH memcpy={memcpy:.1} MB/s");
            println!("BENCH sync_copy={sync_copy:.1} MB/s");
        }
        Err(error) => println!("BENCH_ERROR copies: {error}"),
    }
    match bounce_costs_us() {
        Ok((with_copy, bookkeeping)) => {
            println!("BENCH bounce_128k_cpu={with_copy:.1} us");
            println!("BENCH bounce_128k_bookkeeping={bookkeeping:.1} us");
        }
        Err(error) => println!("BENCH_ERROR bounce costs: {error}"),
    }
    println!("BENCH frame_alloc_free={:.1} ns", frame_alloc_free_ns());
}
