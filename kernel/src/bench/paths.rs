//! The read-path benchmarks: sequential disk reads, one request in flight
//! (direct, bounced, forced double-buffered, through the IOMMU), memcpy and
//! bounce-copy bandwidth, frame allocation cost.

use alloc::vec;
use alloc::vec::Vec;

use x86_64::PhysAddr;

use crate::block::{BlockDevice, BlockOperation, TransferOptions};
use crate::clock::Instant;
use crate::digest::Sha256Stream;
use crate::dma::kernel_platform::platform;
use crate::dma::{
    Cause, DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand, IoFailure, IoMemoryDescriptor, IoReturn,
    Specification,
};
use crate::memory::{Constraints, physical};

use super::summary::REQUEST;

fn megabytes_per_second(bytes: u64, nanoseconds: u64) -> f64 {
    bytes as f64 * 1000.0 / nanoseconds.max(1) as f64
}

/// How the benchmark's reads reach memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// Into a buffer below 4 GiB that every device reaches: zero copies.
    Direct,
    /// Into a buffer above 4 GiB through a 32-bit device (PIIX) or a 32-bit
    /// restriction (virtio): the real bouncing a 32-bit device needs, one copy
    /// per read (bounce -> buffer, exactly the bytes the device moved).
    Bounced,
    /// Into a buffer below 4 GiB with `synchronize(ForceDoubleBuffer)` after
    /// each prepare, which by contract fills the new buffer with the whole range
    /// and copies it back: two copies per read.
    ForcedDoubleBuffer,
    /// Into a buffer below 4 GiB at a start 2 bytes past a dword: a device
    /// whose data pointers must start on a dword (NVMe's PRPs) cannot take it,
    /// so the command bounces it, one copy per read, whatever the address
    /// width. Not in [`ReadPath::ALL`]: only NVMe's figures use it.
    UnalignedStart,
}

impl ReadPath {
    /// Every path, in the order the benchmark prints them.
    pub const ALL: [ReadPath; 3] = [ReadPath::Direct, ReadPath::Bounced, ReadPath::ForcedDoubleBuffer];

    /// How the shell's `bench` names the figure.
    pub const fn description(self) -> &'static str {
        match self {
            ReadPath::ForcedDoubleBuffer => "forced double buffering",
            other => other.name(),
        }
    }

    /// The figure's suffix.
    pub const fn name(self) -> &'static str {
        match self {
            ReadPath::Direct => "direct",
            ReadPath::Bounced => "bounced",
            ReadPath::ForcedDoubleBuffer => "forced",
            ReadPath::UnalignedStart => "unaligned",
        }
    }
}

fn buffer(bytes: u64, placement: Constraints) -> Result<DmaBuffer, IoFailure> {
    DmaBuffer::allocate(platform(), bytes, IoDirection::In, placement)
}

/// Where in its buffer a read along [`ReadPath::UnalignedStart`] starts: even
/// (the block layer's rule) but not a multiple of 4.
const UNALIGNED_OFFSET: u64 = 2;

/// A buffer of one request, the options that send reads along `path`, and
/// where in the buffer the reads start.
fn path_setup(path: ReadPath) -> Result<(DmaBuffer, TransferOptions, u64), IoFailure> {
    let below_4_gib = Constraints::below(PhysAddr::new(1 << 32));
    let (placement, options, offset) = match path {
        ReadPath::Direct => (below_4_gib, TransferOptions::default(), 0),
        ReadPath::Bounced => {
            let narrow = Specification { num_address_bits: 32, ..Specification::UNLIMITED_64 };
            // Unconstrained buffers come from the highest zone: above 4 GiB.
            (Constraints::NONE, TransferOptions { restrict: Some(narrow), force_double_buffer: false }, 0)
        }
        ReadPath::ForcedDoubleBuffer => (below_4_gib, TransferOptions { restrict: None, force_double_buffer: true }, 0),
        ReadPath::UnalignedStart => (below_4_gib, TransferOptions::default(), UNALIGNED_OFFSET),
    };
    let buffer = buffer(REQUEST + offset, placement)?;
    let first = buffer.descriptor().physical_segment(0);
    let first = first.map_err(|code| IoFailure::new(code, Cause::PageNotMapped { offset: 0 }))?;
    let high = first.0.as_u64() >= 1 << 32;
    if path == ReadPath::Bounced && !high {
        let cause = Cause::Other("no memory above 4 GiB to bounce from: give the machine more than 4 GiB");
        return Err(IoFailure::new(IoReturn::NoMemory, cause));
    }
    Ok((buffer, options, offset))
}

/// How a measured path treats the disk's IOMMU domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Domain {
    /// As it is (no IOMMU, or left alone).
    Unchanged,
    /// Switched to pass-through for the path: the device uses physical
    /// addresses, and what it cannot reach is bounced.
    PassThrough(u16),
    /// Switched back to translation for the path.
    Translated(u16),
}

/// One figure: a read path, the domain's mode while it runs, and its name.
pub(super) struct Run {
    pub(super) figure: &'static str,
    path: ReadPath,
    domain: Domain,
}

/// Reads the first `bytes` of `disk` once along each path, in 128 KiB requests,
/// and gives each path with its MB/s (10^6 B/s), or with the failure that
/// stopped it, in [`ReadPath::ALL`]'s order. The paths take turns region by
/// region (1 MiB each), so that all three are measured over the same stretch
/// of time and the host's ups and downs hit them alike.
pub fn read_throughputs(disk: &dyn BlockDevice, bytes: u64) -> Vec<(ReadPath, Result<f64, IoFailure>)> {
    let runs = ReadPath::ALL.map(|path| Run { figure: path.name(), path, domain: Domain::Unchanged });
    ReadPath::ALL.into_iter().zip(measure(disk, bytes, &runs)).collect()
}

/// Each run's MB/s over the first `bytes` of `disk`, runs taking turns 1 MiB
/// at a time, or the failure that stopped the run: a run that fails (no
/// buffer, a transfer refused, its domain not switched) is left out of the
/// regions after, and the others go on. A run that switches the domain does
/// so before each of its regions (the device is idle between requests);
/// translation is back on at the end, whatever happened.
pub(super) fn measure(disk: &dyn BlockDevice, bytes: u64, runs: &[Run]) -> Vec<Result<f64, IoFailure>> {
    const REGION: u64 = 1 << 20;
    let mut setups: Vec<Result<(DmaBuffer, TransferOptions, u64), IoFailure>> =
        runs.iter().map(|run| path_setup(run.path)).collect();
    let mut nanoseconds = vec![0u64; runs.len()];
    let mut region = 0;
    while region < bytes {
        let end = (region + REGION).min(bytes);
        for ((run, setup), spent) in runs.iter().zip(setups.iter_mut()).zip(nanoseconds.iter_mut()) {
            let Ok((buffer, options, offset)) = setup else { continue };
            match read_region(disk, run.domain, buffer, options, *offset, region..end) {
                Ok(elapsed) => *spent += elapsed,
                Err(failure) => *setup = Err(failure),
            }
        }
        region = end;
    }
    for run in runs {
        if let Domain::PassThrough(device) | Domain::Translated(device) = run.domain {
            let _ = crate::iommu::set_passthrough(device, false);
        }
    }
    setups
        .into_iter()
        .zip(nanoseconds)
        .map(|(setup, spent)| setup.map(|_| megabytes_per_second(bytes, spent)))
        .collect()
}

/// Reads `bytes` of `disk` into `buffer` (from `offset` in it) in requests of
/// up to [`REQUEST`], with `domain` set first; the nanoseconds the reads took.
fn read_region(
    disk: &dyn BlockDevice,
    domain: Domain,
    buffer: &mut DmaBuffer,
    options: &TransferOptions,
    offset: u64,
    bytes: core::ops::Range<u64>,
) -> Result<u64, IoFailure> {
    match domain {
        Domain::Unchanged => {}
        Domain::PassThrough(device) => crate::iommu::set_passthrough(device, true)?,
        Domain::Translated(device) => crate::iommu::set_passthrough(device, false)?,
    }
    let block = u64::from(disk.block_size());
    let sectors = REQUEST / block;
    let start = Instant::now();
    let mut position = bytes.start;
    while position < bytes.end {
        let count = sectors.min((bytes.end - position).div_ceil(block));
        disk.transfer(BlockOperation::Read, position / block, count, buffer, offset, options)?;
        position += count * block;
    }
    Ok(start.elapsed_ns())
}

/// The runs `make bench` measures on `name`: on q35, where the IDE disk, vdb
/// and the NVMe controller sit behind the IOMMU, each figure says whether the
/// domain translated.
pub(super) fn bench_runs(name: &str) -> Vec<Run> {
    let behind_iommu = |wanted: &dyn Fn(&crate::pci::PciDevice) -> bool| {
        crate::pci::enumerate()
            .into_iter()
            .find(|function| wanted(function))
            .map(|function| function.requester_id())
            .filter(|&id| crate::iommu::mapper_for(id).is_some())
    };
    let by_id = |vendor: u16, device: u16| {
        behind_iommu(&|function: &crate::pci::PciDevice| (function.vendor_id, function.device_id) == (vendor, device))
    };
    let run = |figure, path, domain| Run { figure, path, domain };
    let everyday = || ReadPath::ALL.into_iter().map(|path| run(path.name(), path, Domain::Unchanged));
    match name {
        "hda" => {
            if let Some(id) = by_id(0x8086, 0x7010) {
                return alloc::vec![
                    run("direct", ReadPath::Direct, Domain::PassThrough(id)),
                    run("bounced", ReadPath::Bounced, Domain::PassThrough(id)),
                    run("mapped", ReadPath::Bounced, Domain::Translated(id)),
                    run("forced", ReadPath::ForcedDoubleBuffer, Domain::PassThrough(id)),
                ];
            }
        }
        "vdb" => {
            if let Some(id) = by_id(0x1af4, 0x1042) {
                return alloc::vec![
                    run("untranslated", ReadPath::Direct, Domain::PassThrough(id)),
                    run("translated", ReadPath::Direct, Domain::Translated(id)),
                ];
            }
        }
        // NVMe reaches 64 bits: `bounced` is the 32-bit restriction, as for
        // virtio; `unaligned` is the bounce its own PRP rule forces. Behind the
        // IOMMU the paths run in pass-through as hda's do (translation would
        // map the high buffer below 4 GiB instead of bouncing it: `mapped`).
        _ if name.starts_with("nvme") => {
            let nvme = |function: &crate::pci::PciDevice| {
                (function.class, function.subclass, function.interface) == (0x01, 0x08, 0x02)
            };
            return match behind_iommu(&nvme) {
                Some(id) => alloc::vec![
                    run("direct", ReadPath::Direct, Domain::PassThrough(id)),
                    run("bounced", ReadPath::Bounced, Domain::PassThrough(id)),
                    run("mapped", ReadPath::Bounced, Domain::Translated(id)),
                    run("forced", ReadPath::ForcedDoubleBuffer, Domain::PassThrough(id)),
                    run("unaligned", ReadPath::UnalignedStart, Domain::PassThrough(id)),
                ],
                None => everyday().chain([run("unaligned", ReadPath::UnalignedStart, Domain::Unchanged)]).collect(),
            };
        }
        _ => {}
    }
    everyday().collect()
}

/// The sha256 of the whole disk (read in 1 MiB pieces, not timed).
pub(super) fn disk_sha256(disk: &dyn BlockDevice) -> Result<alloc::string::String, IoFailure> {
    const PIECE: u64 = 1 << 20;
    let mut buffer = buffer(PIECE, Constraints::below(PhysAddr::new(1 << 32)))?;
    let mut hasher = Sha256Stream::new();
    let mut data = vec![0u8; PIECE as usize];
    let total = disk.block_count() * u64::from(disk.block_size());
    let mut done = 0;
    while done < total {
        let length = PIECE.min(total - done);
        let sectors = length / u64::from(disk.block_size());
        disk.read(done / u64::from(disk.block_size()), sectors, &mut buffer, 0)?;
        buffer.read_bytes(0, &mut data[..length as usize])?;
        hasher.update(&data[..length as usize]);
        done += length;
    }
    Ok(hasher.finish_hex())
}

/// `core` memcpy over 32 MiB in 128 KiB pieces, and the bounce copies of
/// prepare/complete (a command forced to double-buffer 128 KiB at a time), in MB/s.
pub(super) fn copy_bandwidths() -> Result<(f64, f64), IoReturn> {
    const SIZE: u64 = 32 << 20;
    let below_4_gib = Constraints::below(PhysAddr::new(1 << 32));
    let source = IoMemoryDescriptor::allocate(platform(), SIZE, IoDirection::In, below_4_gib)?;
    let target = IoMemoryDescriptor::allocate(platform(), SIZE, IoDirection::In, below_4_gib)?;
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
pub(super) fn frame_alloc_free_ns() -> f64 {
    const PAIRS: u64 = 100_000;
    let start = Instant::now();
    for _ in 0..PAIRS {
        if let Ok(frame) = physical::allocate_frame() {
            let _ = physical::free_frame(frame);
        }
    }
    start.elapsed_ns() as f64 / PAIRS as f64
}

/// What one bounced 128 KiB read costs the CPU, without a device: prepare and
/// complete of a buffer above 4 GiB for a 32-bit command, in microseconds, once
/// with the device reporting every byte moved (bookkeeping plus the one copy
/// back) and once with none (bookkeeping alone: bounce allocation, planning,
/// freeing).
pub(super) fn bounce_costs_us() -> Result<(f64, f64), IoFailure> {
    const ROUNDS: u64 = 200;
    let mut high = buffer(REQUEST, Constraints::NONE)?;
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32)
        .map_err(|code| IoFailure::new(code, Cause::BadSpecification("the benchmark's 32-bit command")))?;
    let mut per_round = [0.0; 2];
    for (slot, moved) in [REQUEST, 0].into_iter().enumerate() {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            let transfer = DmaTransfer::prepare(&mut command, &mut high, 0, 0, &TransferOptions::default())?;
            // Whatever the result (an underrun for 0 bytes), the buffer is back.
            let _ = transfer.complete(moved);
        }
        per_round[slot] = start.elapsed_ns() as f64 / (ROUNDS * 1000) as f64;
    }
    Ok((per_round[0], per_round[1]))
}
