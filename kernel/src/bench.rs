//! Benchmarks: sequential disk reads (direct and double-buffered), memcpy and
//! bounce-copy bandwidth, frame allocation cost. `make bench` boots the kernel
//! with `bench` on its command line; the shell's `bench` runs a short version.

use alloc::sync::Arc;
use alloc::vec;

use x86_64::PhysAddr;

use crate::block::{BlockDevice, TransferOptions};
use crate::clock::Instant;
use crate::digest::Sha256Stream;
use crate::dma::kernel_platform::platform;
use crate::dma::{DmaPlatform, IoDirection, IoDmaCommand, IoMemoryDescriptor, IoReturn, Specification};
use crate::memory::{Constraints, physical};
use crate::{driver, println};

/// Bytes per read request, as in the Linux comparison (one request in flight).
const REQUEST: u64 = 128 * 1024;

fn megabytes_per_second(bytes: u64, nanoseconds: u64) -> f64 {
    bytes as f64 * 1000.0 / nanoseconds.max(1) as f64
}

fn low_buffer(bytes: u64) -> Result<Arc<IoMemoryDescriptor>, IoReturn> {
    IoMemoryDescriptor::allocate(platform(), bytes, IoDirection::In, Constraints::below(PhysAddr::new(1 << 32)))
}

/// Reads `bytes` from the start of `disk` in 128 KiB requests; MB/s (10^6 B/s).
pub fn read_throughput(disk: &dyn BlockDevice, bytes: u64, double_buffer: bool) -> Result<f64, IoReturn> {
    let buffer = low_buffer(REQUEST)?;
    let sectors = REQUEST / u64::from(disk.block_size());
    let options = TransferOptions { restrict: None, force_double_buffer: double_buffer };
    let start = Instant::now();
    let mut lba = 0;
    while lba * u64::from(disk.block_size()) < bytes {
        disk.transfer(IoDirection::In, lba, sectors, &buffer, 0, &options)?;
        lba += sectors;
    }
    Ok(megabytes_per_second(lba * u64::from(disk.block_size()), start.elapsed_ns()))
}

/// The shell's `bench`: 16 MiB (or the whole disk) of each disk, both ways.
pub fn quick() {
    for (name, disk) in driver::block_devices() {
        let bytes = (disk.block_count() * u64::from(disk.block_size())).min(16 << 20);
        let direct = read_throughput(disk.as_ref(), bytes, false);
        let bounced = read_throughput(disk.as_ref(), bytes, true);
        match (direct, bounced) {
            (Ok(direct), Ok(bounced)) => println!(
                "{name}: {} MiB in 128 KiB reads: direct {direct:.1} MB/s, double-buffered {bounced:.1} MB/s",
                bytes >> 20
            ),
            (Err(error), _) | (_, Err(error)) => println!("{name}: benchmark failed: {error}"),
        }
    }
}

/// The full benchmark `make bench` runs; prints `BENCH name=value unit` lines.
pub fn full() {
    for (name, disk) in driver::block_devices() {
        let kind = if name.starts_with("vd") { "virtio" } else { "ata" };
        let bytes = disk.block_count() * u64::from(disk.block_size());
        match disk_sha256(disk.as_ref()) {
            Ok(digest) => println!("BENCH_SHA256 {kind} {digest}"),
            Err(error) => println!("BENCH_ERROR {kind} sha256: {error}"),
        }
        for (suffix, bounce) in [("direct", false), ("bounced", true)] {
            match read_throughput(disk.as_ref(), bytes, bounce) {
                Ok(rate) => println!("BENCH {kind}_read_{suffix}={rate:.1} MB/s"),
                Err(error) => println!("BENCH_ERROR {kind}_read_{suffix}: {error}"),
            }
        }
    }
    match copy_bandwidths() {
        Ok((memcpy, sync_copy)) => {
            println!("BENCH memcpy={memcpy:.1} MB/s");
            println!("BENCH sync_copy={sync_copy:.1} MB/s");
        }
        Err(error) => println!("BENCH_ERROR copies: {error}"),
    }
    println!("BENCH frame_alloc_free={:.1} ns", frame_alloc_free_ns());
}

/// The sha256 of the whole disk (read in 1 MiB pieces, not timed).
fn disk_sha256(disk: &dyn BlockDevice) -> Result<alloc::string::String, IoReturn> {
    const PIECE: u64 = 1 << 20;
    let buffer = low_buffer(PIECE)?;
    let mut hasher = Sha256Stream::new();
    let mut data = vec![0u8; PIECE as usize];
    let total = disk.block_count() * u64::from(disk.block_size());
    let mut done = 0;
    while done < total {
        let length = PIECE.min(total - done);
        let sectors = length / u64::from(disk.block_size());
        disk.read(done / u64::from(disk.block_size()), sectors, &buffer, 0)?;
        buffer.read_bytes(0, &mut data[..length as usize])?;
        hasher.update(&data[..length as usize]);
        done += length;
    }
    Ok(hasher.finish_hex())
}

/// `core` memcpy over 32 MiB in 128 KiB pieces, and the bounce copies of
/// prepare/complete (a command forced to double-buffer 128 KiB at a time), in MB/s.
fn copy_bandwidths() -> Result<(f64, f64), IoReturn> {
    const SIZE: u64 = 32 << 20;
    let source = low_buffer(SIZE)?;
    let target = low_buffer(SIZE)?;
    let from = source.physical_segment(0)?.0;
    let to = target.physical_segment(0)?.0;
    // core's memcpy (compiler_builtins, `rep movs`), in the same 128 KiB pieces
    // the bounce copies use.
    let (from, to) = (physical::to_virtual(from).as_ptr::<u8>(), physical::to_virtual(to).as_mut_ptr::<u8>());
    let start = Instant::now();
    for offset in (0..SIZE as usize).step_by(REQUEST as usize) {
        // SAFETY: both buffers are ours, distinct, mapped and SIZE bytes long.
        unsafe { core::ptr::copy_nonoverlapping(from.add(offset), to.add(offset), REQUEST as usize) };
    }
    let memcpy = megabytes_per_second(SIZE, start.elapsed_ns());

    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_64)?;
    let before = platform().accounting().stats();
    let start = Instant::now();
    for offset in (0..SIZE).step_by(REQUEST as usize) {
        let forced = TransferOptions { restrict: None, force_double_buffer: true };
        command.with_transfer(target.clone(), offset, REQUEST, &forced, |_| Ok(()))?;
    }
    let elapsed = start.elapsed_ns();
    let after = platform().accounting().stats();
    let copied =
        (after.bytes_to_bounce - before.bytes_to_bounce) + (after.bytes_from_bounce - before.bytes_from_bounce);
    Ok((memcpy, megabytes_per_second(copied, elapsed)))
}

/// Nanoseconds per allocate + free of one frame.
fn frame_alloc_free_ns() -> f64 {
    const PAIRS: u64 = 100_000;
    let start = Instant::now();
    for _ in 0..PAIRS {
        if let Ok(frame) = physical::allocate_frame() {
            let _ = physical::free_frame(frame);
        }
    }
    start.elapsed_ns() as f64 / PAIRS as f64
}
