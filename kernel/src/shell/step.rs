//! The shell's `dma step`: one read, paused at each step of its life so the
//! learner can look (`dma show`), synchronize by hand (`dma sync in|out`) and go
//! on (`dma continue`).
//!
//! The disk is read first, for real, into a scratch buffer; the transfer being
//! stepped is then a command for a 32-bit device on a buffer above 4 GiB (so it
//! bounces: the 32-bit restriction is the shell's, added to every disk, vda's
//! too), and its device is played by the shell, which writes those sectors
//! into the command's segments when told to continue. A real driver could not
//! stop between its device's interrupt and `complete`; the played device can.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::experiments::{cpu_view, first_bytes};
use super::parse;
use super::step_report::{prepared_lines, sync_out_damage};
use crate::dma::kernel_platform::platform;
use crate::dma::{IoDirection, IoDmaCommand, IoMemoryDescriptor, Specification, SyncOptions, experiment};
use crate::memory::Constraints;
use crate::{driver, println};

/// Where a stepped transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Prepared: the device owns the memory and has not run yet.
    Prepared,
    /// The device has written its segments; `complete` has not run.
    DeviceDone,
}

/// Whether the bytes the played device wrote are still in the bounce buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceData {
    /// Not overwritten (or not written yet).
    Intact,
    /// `dma sync out` copied the CPU's buffer over them.
    Overwritten,
}

/// The transfer being stepped.
struct Stepping {
    stage: Stage,
    device_data: DeviceData,
    descriptor: Arc<IoMemoryDescriptor>,
    command: IoDmaCommand,
    /// What the disk holds: what the played device writes.
    disk_bytes: Vec<u8>,
}

static STEPPING: Mutex<Option<Stepping>> = Mutex::new(None);

/// Sectors a stepped read may move (one page: easy to show).
const SECTORS: u64 = 8;
/// What the buffer holds before the read.
const OLD_BYTE: u8 = 0x5a;

/// `dma step DEV LBA`, `dma show`, `dma sync in|out`, `dma continue`.
pub fn step(words: &[&str]) -> Result<(), String> {
    match words {
        ["step", name, lba] => start(name, lba),
        ["show"] => with_stepping(show),
        ["sync", way @ ("in" | "out")] => with_stepping(|stepping| {
            let options = if *way == "in" { SyncOptions::IN } else { SyncOptions::OUT };
            let length = stepping.disk_bytes.len();
            let failed = |failure| format!("{failure}");
            let before = experiment::device_reads(&stepping.command, length).map_err(failed)?;
            stepping.command.synchronize(options).map_err(|code| format!("synchronize failed: {code}"))?;
            println!(
                "synchronize({}): {}",
                if *way == "in" { "In" } else { "Out" },
                if *way == "in" { "bounce buffer -> buffer" } else { "buffer -> bounce buffer" }
            );
            show(stepping)?;
            // Only a sync towards the device can overwrite what the device wrote.
            let after = experiment::device_reads(&stepping.command, length).map_err(failed)?;
            if let Some(lines) = sync_out_damage(&stepping.disk_bytes, &before, &after) {
                stepping.device_data = DeviceData::Overwritten;
                for line in lines {
                    println!("{line}");
                }
            }
            Ok(())
        }),
        ["continue"] => advance(),
        _ => Err(String::from("usage: dma step DEV LBA, then dma show, dma sync in|out, dma continue")),
    }
}

fn with_stepping(action: impl FnOnce(&mut Stepping) -> Result<(), String>) -> Result<(), String> {
    let mut stepping = STEPPING.lock();
    let stepping = stepping.as_mut().ok_or("no transfer is being stepped (start one with dma step DEV LBA)")?;
    action(stepping)
}

fn show(stepping: &mut Stepping) -> Result<(), String> {
    let bounce = experiment::device_reads(&stepping.command, 8).map_err(|failure| format!("{failure}"))?;
    let segment = stepping.command.segments()[0];
    println!("  the CPU's buffer:               {}", cpu_view(&stepping.descriptor));
    println!("  the bounce buffer at {:#x}: {} ...", segment.address.as_u64(), first_bytes(&bounce));
    Ok(())
}

fn start(name: &str, lba: &str) -> Result<(), String> {
    if STEPPING.lock().is_some() {
        return Err(String::from("a transfer is being stepped already: dma continue until it completes"));
    }
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let lba = parse::number(lba).ok_or_else(|| format!("bad number '{lba}' for LBA"))?;
    parse::sectors_on_disk(name, lba, SECTORS, disk.block_count())?;
    let bytes = SECTORS * u64::from(disk.block_size());
    let code = |code| format!("{code}");
    // The disk's bytes, read for real now; the played device delivers them later.
    let scratch = IoMemoryDescriptor::allocate(platform(), bytes, IoDirection::In, Constraints::NONE).map_err(code)?;
    let mut scratch = crate::dma::DmaBuffer::from_descriptor(scratch).map_err(|failure| format!("{failure}"))?;
    disk.read(lba, SECTORS, &mut scratch, 0).map_err(|failure| format!("reading {name} failed: {failure}"))?;
    let disk_bytes = scratch.to_vec(0, bytes as usize).map_err(|failure| format!("{failure}"))?;
    let descriptor =
        IoMemoryDescriptor::allocate(platform(), bytes, IoDirection::In, Constraints::NONE).map_err(code)?;
    descriptor.write_bytes(0, &alloc::vec![OLD_BYTE; bytes as usize]).map_err(code)?;
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).map_err(code)?;
    command.set_memory_descriptor(descriptor.clone(), false).map_err(code)?;
    command.prepare(0, 0).map_err(code)?;
    let high = descriptor.physical_segment(0).map_err(code)?.0.as_u64();
    for line in prepared_lines(name, lba, SECTORS, bytes, high, OLD_BYTE) {
        println!("{line}");
    }
    println!("  (the disk was read first; its bytes are what the device, played by the shell, will write)");
    let mut stepping =
        Stepping { stage: Stage::Prepared, device_data: DeviceData::Intact, descriptor, command, disk_bytes };
    show(&mut stepping)?;
    *STEPPING.lock() = Some(stepping);
    println!("try: dma show, dma sync in, dma continue");
    Ok(())
}

fn advance() -> Result<(), String> {
    let mut slot = STEPPING.lock();
    let stepping = slot.as_mut().ok_or("no transfer is being stepped (start one with dma step DEV LBA)")?;
    match stepping.stage {
        Stage::Prepared => {
            experiment::device_writes(&stepping.command, &stepping.disk_bytes)
                .map_err(|failure| format!("{failure}"))?;
            stepping.stage = Stage::DeviceDone;
            println!("step 2 of 3, device done: the device wrote the sectors into its segment and interrupted;");
            println!("  complete has not run, so the CPU's buffer does not have them yet.");
            show(stepping)?;
            println!("try: dma sync in (look early), dma continue (complete)");
        }
        Stage::DeviceDone => {
            let mut stepping = slot.take().ok_or("no transfer")?;
            stepping.command.complete().map_err(|code| format!("complete failed: {code}"))?;
            println!("step 3 of 3, completed: bounce buffer -> buffer, bounce memory freed; the buffer is the CPU's.");
            println!("  the CPU's buffer:               {}", cpu_view(&stepping.descriptor));
            stepping.command.clear_memory_descriptor(false).map_err(|code| format!("{code}"))?;
            let mut held = alloc::vec![0u8; stepping.disk_bytes.len()];
            let matches = stepping.descriptor.read_bytes(0, &mut held).is_ok() && held == stepping.disk_bytes;
            match (matches, stepping.device_data) {
                (true, _) => println!("  it holds the disk's sectors: yes"),
                (false, DeviceData::Overwritten) => println!(
                    "  it holds the disk's sectors: NO: dma sync out copied the CPU's stale bytes over what the device wrote"
                ),
                (false, DeviceData::Intact) => println!("  it holds the disk's sectors: NO"),
            }
        }
    }
    Ok(())
}
