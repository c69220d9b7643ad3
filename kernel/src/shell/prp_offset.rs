//! `experiment prp-offset DEV LBA`: an NVMe read whose second PRP entry starts
//! inside a page, which the controller refuses with "PRP Offset Invalid".
//!
//! The buffer is two pieces: 2 KiB at the end of one page, then 6 KiB starting
//! 2 KiB into another. Two safety steps would keep that list from the
//! controller, and both are switched off for this one transfer through the
//! DMA layer's hooks: the DMA layer's bounce for the internal alignment (the
//! driver's specification says later segments start on a page: piece 2 would
//! be bounced to one) and the driver's own check of the PRP rules (it refuses
//! such segments with `PrpRuleBroken`). The controller reads the list, finds
//! an entry with an offset, and answers with the status before it moves a
//! byte: a read, so neither the disk nor any memory changes, which the
//! experiment shows with canaries around the pieces.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::PhysAddr;

use super::experiments::first_bytes;
use crate::block::{BlockDevice, BlockOperation, TransferOptions};
use crate::dma::experiment::{self, Skip};
use crate::dma::hooks::DriverCheck;
use crate::dma::kernel_platform::platform;
use crate::dma::{
    Cause, DmaBuffer, DmaPlatform, GenericStatus, IoDirection, IoFailure, IoMemoryDescriptor, NvmeCause, NvmeStatus,
    Segment,
};
use crate::memory::{Constraints, FRAME_SIZE};
use crate::{driver, println};

/// The read's size: the two pieces.
const BYTES: u64 = 0x2000;
/// Where each piece starts in its page, and the first piece's length.
const INSIDE: u64 = 0x800;
/// What the buffer holds before the read.
const OLD_BYTE: u8 = 0x5a;
/// What the bytes before each piece, in its page, hold.
const CANARY: u8 = 0xc5;

/// `experiment prp-offset DEV LBA`.
pub fn prp_offset(name: &str, lba: &str) -> Result<(), String> {
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    if disk.driver_name() != "Nvme" {
        return Err(format!(
            "{name} is a {} disk, not an NVMe one: PRP lists are NVMe's (try lsblk; nvme0n1)",
            disk.driver_name()
        ));
    }
    let lba = super::parse::number(lba).ok_or_else(|| format!("bad number '{lba}' for LBA"))?;
    let block_size = u64::from(disk.block_size());
    if !BYTES.is_multiple_of(block_size) {
        return Err(format!("{name}'s blocks are {block_size} bytes: the experiment reads 8 KiB"));
    }
    let count = BYTES / block_size;
    super::parse::sectors_on_disk(name, lba, count, disk.block_count())?;
    let before = sectors(&disk, lba, count)?;
    let (mut buffer, starts) = two_pieces()?;
    println!("reading {count} sectors (8 KiB) of {name} into a buffer of two pieces, holding {OLD_BYTE:#04x}:");
    println!(
        "  piece 1: {INSIDE:#x} bytes at {:#x}, the end of its page (the first entry may start inside one)",
        starts[0]
    );
    println!(
        "  piece 2: {:#x} bytes at {:#x}, {INSIDE:#x} into its page (no other entry may)",
        BYTES - INSIDE,
        starts[1]
    );
    println!(
        "the {INSIDE:#x} bytes before each piece in its page are a canary, {CANARY:#04x}. For this one transfer of"
    );
    println!("{name}, the DMA layer does not bounce piece 2 to a page, and the driver does not check its PRP entries.");
    let accounting = platform().accounting();
    accounting.arm_experiment(Skip::InternalAlignment);
    experiment::arm_check(disk.hooks_site(), DriverCheck::PrpRules);
    let result = disk.transfer(BlockOperation::Read, lba, count, &mut buffer, 0, &TransferOptions::default());
    let bounce_unused = accounting.disarm_experiment();
    let check_unused = experiment::disarm_check(disk.hooks_site());
    if bounce_unused {
        println!("(the DMA layer never came to its bounce for the internal alignment: nothing to switch off)");
    }
    if check_unused {
        println!("(the driver never came to its PRP check: the transfer did not get as far as a PRP list)");
    }
    let answered = report(&disk, result)?;
    let stale = buffer.to_vec(0, BYTES as usize).map_err(|failure| format!("{failure}"))?;
    let kept = stale.iter().filter(|&&byte| byte == OLD_BYTE).count();
    println!("your buffer now:     {} ... ({kept} of {BYTES} bytes still {OLD_BYTE:#04x})", first_bytes(&stale));
    let canaries = canaries_intact(starts);
    println!("the canaries:        {}", if canaries { "intact" } else { "OVERWRITTEN" });
    let same = sectors(&disk, lba, count)? == before;
    println!(
        "the sectors:         {}",
        if same { "as they were (a read writes nothing to the disk)" } else { "CHANGED" }
    );
    if answered {
        println!("The controller computes each entry's length from the entry's place alone: the first runs to the end");
        println!("of its page, every other is one whole page. An entry with an offset would make it move a page from");
        println!("there, past the piece's page into memory that is not the buffer's; so it checks the low 12 bits of");
        println!("every entry after the first and refuses the whole command before it moves a byte.");
    }
    Ok(())
}

/// The experiment's buffer, its two pieces' physical starts, and the canary
/// written before each piece in its page.
fn two_pieces() -> Result<(DmaBuffer, [u64; 2]), String> {
    let code = |code| format!("no buffer: {code}");
    let pieces = [(INSIDE, INSIDE, Constraints::NONE), (INSIDE, BYTES - INSIDE, Constraints::NONE)];
    let descriptor = IoMemoryDescriptor::allocate_scattered_at(platform(), &pieces, IoDirection::In).map_err(code)?;
    let mut starts = [0; 2];
    for (start, offset) in starts.iter_mut().zip([0, INSIDE]) {
        *start = descriptor.physical_segment(offset).map_err(code)?.0.as_u64();
    }
    let mut buffer = DmaBuffer::from_descriptor(descriptor).map_err(|failure| format!("{failure}"))?;
    buffer.write_bytes(0, &[OLD_BYTE; BYTES as usize]).map_err(|failure| format!("{failure}"))?;
    for start in starts {
        // SAFETY: the INSIDE bytes before each piece lie in a frame the
        // descriptor allocated (its pieces start INSIDE into them) but outside
        // its ranges: nothing else reads or writes them while it lives.
        unsafe { platform().write_physical(PhysAddr::new(start - INSIDE), &[CANARY; INSIDE as usize]) };
    }
    Ok((buffer, starts))
}

/// Whether the canaries before the pieces still hold [`CANARY`]. Called while
/// the buffer lives.
fn canaries_intact(starts: [u64; 2]) -> bool {
    starts.iter().all(|&start| {
        let mut canary = [0u8; INSIDE as usize];
        // SAFETY: as in `two_pieces`: the descriptor's own bytes outside its
        // ranges, which the buffer the caller holds keeps allocated.
        unsafe { platform().read_physical(PhysAddr::new(start - INSIDE), &mut canary) };
        canary.iter().all(|&byte| byte == CANARY)
    })
}

/// The sectors' bytes, read the ordinary way.
fn sectors(disk: &Arc<dyn BlockDevice>, lba: u64, count: u64) -> Result<Vec<u8>, String> {
    let mut check = DmaBuffer::allocate(platform(), BYTES, IoDirection::In, Constraints::NONE)
        .map_err(|failure| format!("no buffer: {failure}"))?;
    disk.read(lba, count, &mut check, 0).map_err(|failure| format!("reading the sectors failed: {failure}"))?;
    check.to_vec(0, BYTES as usize).map_err(|failure| format!("{failure}"))
}

/// Prints what the controller was given and what it answered; says whether
/// it answered PRP Offset Invalid.
fn report(disk: &Arc<dyn BlockDevice>, result: Result<(), IoFailure>) -> Result<bool, String> {
    let cause = match result {
        Ok(()) => {
            println!("the controller took the list and moved the data: it does not check PRP offsets");
            return Ok(false);
        }
        Err(failure) => failure.cause(),
    };
    let Cause::Nvme(NvmeCause::Status { status, do_not_retry }) = cause else {
        // The driver refused it, or something else failed before the controller saw it.
        println!("the list never reached the controller: {cause}");
        return Ok(false);
    };
    print_entries(&disk.last_segments());
    let retry = if do_not_retry { ", Do Not Retry" } else { "" };
    println!("the controller answered: {status}{retry}");
    Ok(status == NvmeStatus::Generic(GenericStatus::PrpOffsetInvalid))
}

/// PRP1 and PRP2 (or the list PRP2 points at) as the driver builds them from
/// `segments`: each segment's start, then each page boundary inside it.
fn print_entries(segments: &[Segment]) {
    let entries: Vec<u64> = segments
        .iter()
        .flat_map(|segment| {
            let start = segment.address.as_u64();
            let next_page = (start / FRAME_SIZE + 1) * FRAME_SIZE;
            core::iter::once(start).chain((next_page..start + segment.length).step_by(FRAME_SIZE as usize))
        })
        .collect();
    let mark = |entry: u64| if entry.is_multiple_of(FRAME_SIZE) { "" } else { "  <- starts inside its page" };
    println!("the controller was given (addresses as it sees them):");
    match entries.as_slice() {
        [prp1] => println!("  PRP1 = {prp1:#x}"),
        [prp1, prp2] => {
            println!("  PRP1 = {prp1:#x}");
            println!("  PRP2 = {prp2:#x}{}", mark(*prp2));
        }
        [prp1, listed @ ..] => {
            println!("  PRP1 = {prp1:#x}");
            println!("  PRP2 = a PRP list page holding:");
            for (index, entry) in listed.iter().enumerate() {
                println!("    entry {index}: {entry:#x}{}", mark(*entry));
            }
        }
        [] => println!("  no entries"),
    }
}
