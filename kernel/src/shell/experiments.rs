//! The shell's `experiment`: switch one safety step of a transfer off, once,
//! and show what goes wrong. The disks' contents are put back afterwards.
//!
//! Both experiments force the transfer through a bounce buffer
//! (`ForceDoubleBuffer`), so they work on every disk, and skip one of the two
//! copies a bounce buffer needs:
//! - `skip-copy-back` (a read): `complete` does not copy the device's bytes out
//!   of the bounce buffer; the buffer keeps what it held before.
//! - `skip-fill` (a write): `prepare` does not fill the bounce buffer from the
//!   buffer; the device writes whatever the bounce frames held to the disk.
//!
//! `no-bounce` gives a 32-bit device a buffer above 4 GiB without bouncing:
//! its address register keeps the low 32 bits, and the data lands 4 GiB lower,
//! on a page the experiment took first and filled with a canary.
//!
//! `cross-64k` reads 64 KiB into a buffer that straddles a 64 KiB line, with
//! the split at the device's boundary switched off: on `hda` one PRD region
//! crosses it. QEMU does not mind; real PIIX hardware would.
//!
//! `prp-offset` hands an NVMe controller a PRP list whose second entry starts
//! inside a page (`prp_offset.rs`): it answers "PRP Offset Invalid".
//!
//! `skip-invalidate` unmaps a transfer's page without the IOTLB invalidation,
//! and the next transfer, given the same IOVA, lands in the old page
//! (`skip_invalidate.rs`, q35 only).
//!
//! `dma-steal` plays a malicious device: the IDE bus master reads a secret no
//! driver lent it and writes it to the disk; behind the IOMMU the read faults
//! (`dma_steal.rs`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::parse;
use crate::block::{BlockDevice, BlockOperation, TransferOptions};
use crate::dma::experiment::Skip;
use crate::dma::kernel_platform::platform;
use crate::dma::{
    DmaBuffer, DmaPlatform, IoDirection, IoDmaCommand, IoFailure, IoMemoryDescriptor, IoReturn, Specification,
    SyncOptions, experiment,
};
use crate::memory::Constraints;
use crate::memory::reserved::ReservedFrame;
use crate::{driver, println};

/// The most sectors an experiment moves.
const MOST: u64 = 64;
/// What the buffer holds before the read: easy to spot.
const OLD_BYTE: u8 = 0x5a;
/// What the experiment's write means to write.
const MEANT: &[u8] = b"what the CPU meant to write. ";

const USAGE: &str = "usage: experiment skip-copy-back|skip-fill DEV LBA COUNT, \
     experiment cross-64k|no-bounce|prp-offset DEV LBA, experiment synchronize|early-sync|skip-sync-rx, \
     experiment skip-invalidate|dma-steal DEV";
/// 4 GiB: what a 32-bit address register cannot hold.
const FOUR_GIB: u64 = 1 << 32;
/// What the canary page holds before the device's write.
const CANARY: u8 = 0xc5;
/// 64 KiB: the PIIX's region boundary.
const LINE: u64 = 0x10000;

/// `experiment STEP DEV LBA COUNT`.
pub fn experiment(arguments: &[&str]) -> Result<(), String> {
    // The experiments reach the DMA layer only through its hooks.
    experiment::install();
    if arguments == ["synchronize"] {
        return synchronize_step_by_step();
    }
    if arguments == ["early-sync"] {
        return super::early_sync::early_sync();
    }
    if arguments == ["skip-sync-rx"] {
        return super::skip_sync_rx::skip_sync_rx();
    }
    if let ["dma-steal", name] = arguments {
        return super::dma_steal::dma_steal(name);
    }
    if let ["skip-invalidate", name] = arguments {
        return super::skip_invalidate::skip_invalidate(name);
    }
    if let ["prp-offset", name, lba] = arguments {
        return super::prp_offset::prp_offset(name, lba);
    }
    if let [step @ ("cross-64k" | "no-bounce"), name, lba] = arguments {
        let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
        let lba = parse::number(lba).ok_or_else(|| format!("bad number '{lba}' for LBA"))?;
        return match *step {
            "cross-64k" => cross_64k(name, &disk, lba),
            _ => no_bounce(name, &disk, lba),
        };
    }
    let [step, name, _, _] = arguments else { return Err(String::from(USAGE)) };
    let step = match *step {
        "skip-copy-back" => Skip::CopyBack,
        "skip-fill" => Skip::Fill,
        other => return Err(format!("unknown experiment '{other}': {USAGE}")),
    };
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let lba = parse::argument(arguments, 2, "LBA")?;
    let count = parse::argument(arguments, 3, "COUNT")?;
    if count == 0 || count > MOST {
        return Err(format!("COUNT must be 1 to {MOST}, not {count}"));
    }
    parse::sectors_on_disk(name, lba, count, disk.block_count())?;
    let bytes = (count * u64::from(disk.block_size())) as usize;
    match step {
        Skip::CopyBack => skip_copy_back(name, &disk, lba, count, bytes),
        Skip::Fill => skip_fill(name, &disk, lba, count, bytes),
        Skip::Boundary | Skip::Reach | Skip::InternalAlignment => Err(String::from(USAGE)),
    }
}

/// Every transfer of the experiment goes through one bounce buffer.
const FORCED: TransferOptions = TransferOptions { restrict: None, force_double_buffer: true };

/// A buffer anywhere in memory (above 4 GiB when there is any there).
fn buffer(bytes: usize, direction: IoDirection) -> Result<DmaBuffer, String> {
    super::commands::buffer(bytes as u64, direction, Constraints::NONE)
}

/// The first 16 bytes of `data` (fewer if it is shorter), in hex.
pub(super) fn first_bytes(data: &[u8]) -> String {
    let hex: Vec<String> = data.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    hex.join(" ")
}

/// Runs one transfer with `step` skipped; says whether the step was reached.
fn with_step_skipped(
    step: Skip,
    disk: &Arc<dyn BlockDevice>,
    operation: BlockOperation,
    (lba, count): (u64, u64),
    buffer: &mut DmaBuffer,
) -> Result<(), String> {
    let accounting = platform().accounting();
    accounting.arm_experiment(step);
    let result = disk.transfer(operation, lba, count, buffer, 0, &FORCED);
    let unused = accounting.disarm_experiment();
    result.map_err(|failure| format!("the transfer failed: {failure}"))?;
    if unused {
        return Err(String::from("the transfer never reached that step (nothing was bounced)"));
    }
    Ok(())
}

fn skip_copy_back(name: &str, disk: &Arc<dyn BlockDevice>, lba: u64, count: u64, bytes: usize) -> Result<(), String> {
    let mut target = buffer(bytes, IoDirection::In)?;
    target.write_bytes(0, &vec![OLD_BYTE; bytes]).map_err(|failure| format!("{failure}"))?;
    println!(
        "the buffer holds {OLD_BYTE:#04x} everywhere; reading {count} sector(s) of {name} through a bounce buffer,"
    );
    println!("and complete will NOT copy the device's bytes out of it (the step the driver relies on for reads)");
    with_step_skipped(Skip::CopyBack, disk, BlockOperation::Read, (lba, count), &mut target)?;
    let segments = disk.last_segments();
    if let Some(segment) = segments.first() {
        println!("the device wrote into the bounce buffer at {:#x}, not into your buffer", segment.address.as_u64());
    }
    let stale = target.to_vec(0, bytes).map_err(|failure| format!("{failure}"))?;
    println!("your buffer after the read:   {} ...", first_bytes(&stale));
    disk.transfer(BlockOperation::Read, lba, count, &mut target, 0, &FORCED)
        .map_err(|failure| format!("the second read failed: {failure}"))?;
    let real = target.to_vec(0, bytes).map_err(|failure| format!("{failure}"))?;
    println!("the same read with the copy:  {} ...", first_bytes(&real));
    let unchanged = stale.iter().filter(|&&byte| byte == OLD_BYTE).count();
    println!(
        "without the copy back, {unchanged} of {bytes} bytes still held {OLD_BYTE:#04x}: the CPU read its own stale \
         memory and took it for the disk's data. The disk was not touched."
    );
    Ok(())
}

fn skip_fill(name: &str, disk: &Arc<dyn BlockDevice>, lba: u64, count: u64, bytes: usize) -> Result<(), String> {
    // Keep what the sectors hold, to put it back at the end.
    let mut saved = buffer(bytes, IoDirection::InOut)?;
    disk.read(lba, count, &mut saved, 0).map_err(|failure| format!("reading the sectors first failed: {failure}"))?;
    let original = saved.to_vec(0, bytes).map_err(|failure| format!("{failure}"))?;
    let meant: Vec<u8> = MEANT.iter().copied().cycle().take(bytes).collect();
    let mut source = buffer(bytes, IoDirection::Out)?;
    source.write_bytes(0, &meant).map_err(|failure| format!("{failure}"))?;
    println!("writing {count} sector(s) of \"{}\" to {name} through a bounce buffer,", MEANT.escape_ascii());
    println!("and prepare will NOT fill the bounce buffer from your buffer (the step the driver relies on for writes)");
    with_step_skipped(Skip::Fill, disk, BlockOperation::Write, (lba, count), &mut source)?;
    if let Some(segment) = disk.last_segments().first() {
        println!("the device read the bounce buffer at {:#x} as its frames were left", segment.address.as_u64());
    }
    let mut check = buffer(bytes, IoDirection::In)?;
    disk.read(lba, count, &mut check, 0).map_err(|failure| format!("reading back failed: {failure}"))?;
    let written = check.to_vec(0, bytes).map_err(|failure| format!("{failure}"))?;
    println!("you meant to write:  {} ...", first_bytes(&meant));
    println!("the disk now holds:  {} ...", first_bytes(&written));
    let right = written.iter().zip(&meant).filter(|(got, want)| got == want).count();
    println!(
        "{right} of {bytes} bytes are what you wrote; the rest is whatever the bounce frames held before (zeros if \
         they were never used, else an earlier transfer's data): it went to disk."
    );
    disk.write(lba, count, &mut saved, 0).map_err(|failure| format!("putting the sectors back failed: {failure}"))?;
    disk.read(lba, count, &mut check, 0).map_err(|failure| format!("reading back failed: {failure}"))?;
    let restored = check.to_vec(0, bytes).map_err(|failure| format!("{failure}"))? == original;
    match restored {
        true => println!("the sectors were put back as they were."),
        false => println!("WARNING: the sectors could not be put back as they were."),
    }
    Ok(())
}

fn cross_64k(name: &str, disk: &Arc<dyn BlockDevice>, lba: u64) -> Result<(), String> {
    let sectors = LINE / u64::from(disk.block_size());
    parse::sectors_on_disk(name, lba, sectors, disk.block_count())?;
    // 128 KiB starting on a 64 KiB line, below 4 GiB so nothing bounces; the
    // read goes to its middle, across the line.
    let placement = Constraints { alignment: LINE, ..Constraints::below(x86_64::PhysAddr::new(1 << 32)) };
    let mut target = DmaBuffer::allocate(platform(), 2 * LINE, IoDirection::In, placement)
        .map_err(|failure| format!("no buffer: {failure}"))?;
    let offset = LINE / 2;
    let line = target.descriptor().physical_segment(0).map_err(|failure| format!("{failure}"))?.0.as_u64() + LINE;
    println!(
        "reading 64 KiB of {name} into physical {:#x}..{:#x}, across the 64 KiB line at {line:#x},",
        line - offset,
        line + offset
    );
    println!("with the split at the device's boundary switched off for this one transfer");
    let accounting = platform().accounting();
    accounting.arm_experiment(Skip::Boundary);
    let result = disk.transfer(BlockOperation::Read, lba, sectors, &mut target, offset, &TransferOptions::default());
    let unused = accounting.disarm_experiment();
    result.map_err(|failure| format!("the read failed: {failure}"))?;
    if unused {
        println!("{name}'s device has no boundary rule: its segments may cross any line, nothing changed");
        return Ok(());
    }
    let crossed = disk.last_segments().into_iter().find(|segment| {
        let start = segment.address.as_u64();
        start / LINE != (start + segment.length - 1) / LINE
    });
    let Some(segment) = crossed else {
        println!("no region crossed the line (behind an IOMMU the device saw IOVAs that did not)");
        return Ok(());
    };
    let start = segment.address.as_u64();
    println!(
        "the controller got a region of {:#x} bytes at {start:#x}: it crosses {:#x}",
        segment.length,
        (start / LINE + 1) * LINE
    );
    let got = target.to_vec(offset, LINE as usize).map_err(|failure| format!("{failure}"))?;
    let mut check = buffer(LINE as usize, IoDirection::In)?;
    disk.read(lba, sectors, &mut check, 0).map_err(|failure| format!("the check read failed: {failure}"))?;
    let right = got == check.to_vec(0, LINE as usize).map_err(|failure| format!("{failure}"))?;
    println!(
        "QEMU {} the data right: its bus master adds the full address.",
        if right { "got" } else { "did NOT get" }
    );
    println!("The PIIX datasheet forbids this: a PRD region must not cross a 64 KiB boundary. The engine latches the");
    println!("high address bits of a region and counts only the low 16, so on real hardware the address would wrap");
    println!(
        "at the line, and the region's second half would land at {:#x}, the start of the same 64 KiB block:",
        start & !(LINE - 1)
    );
    println!("memory that is not the buffer's. ISA DMA had 64 KiB pages for the same reason (and a 16 MiB limit:");
    println!("its address register had 24 bits).");
    Ok(())
}

/// A one-page buffer above 4 GiB whose alias 4 GiB lower is a frame we could
/// take: where a 32-bit device's cut address lands.
fn buffer_with_free_alias() -> Result<(DmaBuffer, ReservedFrame), String> {
    let mut tried = Vec::new();
    for _ in 0..64 {
        let buffer = buffer(4096, IoDirection::In)?;
        let high = buffer.descriptor().physical_segment(0).map_err(|failure| format!("{failure}"))?.0.as_u64();
        if (FOUR_GIB..2 * FOUR_GIB).contains(&high)
            && let Ok(alias) = ReservedFrame::take(x86_64::PhysAddr::new(high - FOUR_GIB))
        {
            return Ok((buffer, alias));
        }
        // Keep it, so the next try gets another frame.
        tried.push(buffer);
    }
    Err(String::from("found no page above 4 GiB whose alias below 4 GiB is free"))
}

fn no_bounce(name: &str, disk: &Arc<dyn BlockDevice>, lba: u64) -> Result<(), String> {
    let sectors = 4096 / u64::from(disk.block_size());
    parse::sectors_on_disk(name, lba, sectors, disk.block_count())?;
    let (mut target, mut alias) = buffer_with_free_alias()?;
    target.write_bytes(0, &[OLD_BYTE; 4096]).map_err(|failure| format!("{failure}"))?;
    alias.write(0, &[CANARY; 4096]);
    let high = target.descriptor().physical_segment(0).map_err(|failure| format!("{failure}"))?.0.as_u64();
    println!(
        "your buffer is at {high:#x} (above 4 GiB) and holds {OLD_BYTE:#04x}; the page at {:#x}, 4 GiB lower, is a",
        alias.address().as_u64()
    );
    println!("canary the experiment took, holding {CANARY:#04x}. Reading 8 sectors of {name} without the bounce:");
    let accounting = platform().accounting();
    accounting.arm_experiment(Skip::Reach);
    let result = disk.transfer(BlockOperation::Read, lba, sectors, &mut target, 0, &TransferOptions::default());
    let unused = accounting.disarm_experiment();
    result.map_err(|failure| format!("the read failed: {failure}"))?;
    if unused {
        println!("{name}'s device reaches the buffer (64-bit, or behind an IOMMU): nothing was cut, nothing to see");
        return Ok(());
    }
    if let Some(segment) = disk.last_segments().first() {
        println!("the controller was given {:#x}: the low 32 bits of {high:#x}", segment.address.as_u64());
    }
    let mut landed = [0u8; 4096];
    alias.read(0, &mut landed);
    let untouched = target.to_vec(0, 4096).map_err(|failure| format!("{failure}"))?;
    println!("the canary page now:  {} ...", first_bytes(&landed));
    println!("your buffer now:      {} ...", first_bytes(&untouched));
    // What the device wrote, counted against the sectors read again properly
    // (bounced): counting bytes that differ from the canary would miss the
    // disk's bytes that happen to equal it.
    let mut proper = buffer(4096, IoDirection::In)?;
    disk.read(lba, sectors, &mut proper, 0).map_err(|failure| format!("the read to compare failed: {failure}"))?;
    let disk_bytes = proper.to_vec(0, 4096).map_err(|failure| format!("{failure}"))?;
    let written = landed.iter().zip(&disk_bytes).filter(|(landed, disk)| landed == disk).count();
    println!(
        "{written} of the canary's 4096 bytes now hold the disk's data (read again through the bounce to compare),"
    );
    println!("and your buffer never got it. Without the canary, that page would have been someone else's memory:");
    println!("a page table, a heap block, another buffer.");
    alias.write(0, &[CANARY; 4096]);
    println!("the canary page goes back to the allocator; nothing else was touched.");
    Ok(())
}

/// What the CPU sees of `descriptor`'s first bytes now, or why it may not look.
pub(super) fn cpu_view(descriptor: &IoMemoryDescriptor) -> String {
    let mut first = [0u8; 8];
    match descriptor.read_at(0, &mut first, core::panic::Location::caller()) {
        Ok(_) => format!("{} ...", first_bytes(&first)),
        Err(failure) => format!("refused: {}", failure.cause()),
    }
}

/// `experiment synchronize`: one transfer of a 32-bit device on a buffer above
/// 4 GiB (so it bounces), with the device played by the shell, shown step by
/// step: what the CPU sees, and what synchronize(In) and (Out) change.
fn synchronize_step_by_step() -> Result<(), String> {
    let failed = |failure: IoFailure| format!("{failure}");
    let code = |code: IoReturn| format!("{code}");
    let descriptor =
        IoMemoryDescriptor::allocate(platform(), 4096, IoDirection::InOut, Constraints::NONE).map_err(code)?;
    descriptor.write_bytes(0, &[0x11; 4096]).map_err(code)?;
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).map_err(code)?;
    command.set_memory_descriptor(descriptor.clone(), false).map_err(code)?;
    let high = descriptor.physical_segment(0).map_err(code)?.0.as_u64();
    println!("1. the CPU fills a 4 KiB buffer at {high:#x} with 0x11; a 32-bit device will read and write it");
    command.prepare(0, 0).map_err(code)?;
    let segment = command.segments()[0];
    println!(
        "2. prepare: the device gets the bounce buffer at {:#x}, filled from the buffer (InOut)",
        segment.address.as_u64()
    );
    println!("   the CPU looks at its buffer:     {}", cpu_view(&descriptor));
    experiment::device_writes(&command, &[0x22; 4096]).map_err(failed)?;
    println!("3. the device writes 0x22 (played by the shell, into its segment)");
    let bounce = experiment::device_reads(&command, 8).map_err(failed)?;
    println!("   the bounce buffer now holds:     {} ... (the CPU's buffer still holds 0x11)", first_bytes(&bounce));
    command.synchronize(SyncOptions::IN).map_err(code)?;
    println!("4. synchronize(In): bounce -> buffer; the CPU may look now, before complete:");
    println!("   the CPU looks at its buffer:     {}", cpu_view(&descriptor));
    descriptor.write_bytes(0, &[0x33; 4096]).map_err(code)?;
    println!("5. the CPU changes its buffer to 0x33");
    let seen = experiment::device_reads(&command, 8).map_err(failed)?;
    println!("   the device reads its segment:    {} ... (still the old bytes)", first_bytes(&seen));
    command.synchronize(SyncOptions::OUT).map_err(code)?;
    let seen = experiment::device_reads(&command, 8).map_err(failed)?;
    println!("6. synchronize(Out): buffer -> bounce; the device reads: {} ...", first_bytes(&seen));
    experiment::device_writes(&command, &[0x44; 4096]).map_err(failed)?;
    println!("7. the device writes 0x44, then the driver completes the transfer");
    command.complete().map_err(code)?;
    command.clear_memory_descriptor(false).map_err(code)?;
    println!("   the CPU looks at its buffer:     {}", cpu_view(&descriptor));
    println!("Without step 4 the CPU would have read 0x11 and taken it for the device's data; without step 6 the");
    println!(
        "device would have read 0x22, not the CPU's change. With no bounce buffer (a 64-bit device, or x86 memory"
    );
    println!("it reaches) both steps copy nothing: x86 caches are coherent with DMA.");
    Ok(())
}
