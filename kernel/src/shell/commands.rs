//! The shell's commands and its read-eval loop.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::PhysAddr;
use x86_64::instructions::interrupts;

use super::left::Collect;
use super::line::{Edit, LineEditor, MAX_LINE};
use super::parse::{self, DmaReadOptions};
use super::scatter::{self, Outcome};
use crate::arch::qemu::{ExitCode, exit};
use crate::block::{BlockDevice, BlockOperation, TransferOptions, WriteCache};
use crate::digest::sha256_hex;
use crate::dma::kernel_platform::platform;
use crate::dma::{DmaBuffer, DmaPlatform, IoDirection, Specification, trace};
use crate::input_ring::{Arrival, Received};
use crate::memory::{Constraints, heap, physical};
use crate::{driver, print, println};

/// Where the shell's input comes from.
pub trait Input {
    /// The next byte, waiting for it (and whether bytes were lost just before
    /// it); `None` at the end of the input.
    fn next_byte(&mut self) -> Option<Received>;
}

/// The serial console: while no byte comes, serves the network, and sleeps in
/// `hlt` when nothing moves (the timer, the UART's receive interrupt or a
/// device's interrupt wakes it).
pub struct SerialInput;

impl Input for SerialInput {
    fn next_byte(&mut self) -> Option<Received> {
        loop {
            if let Some(received) = crate::serial::read_input() {
                return Some(received);
            }
            if crate::net::stack::poll() {
                continue;
            }
            // Interrupts off between the last look and `hlt` (`sti; hlt` is
            // atomic): an interrupt after the poll leaves news (a received
            // byte, a packet), and is not slept through until the next tick.
            interrupts::disable();
            if crate::serial::input_waiting() || crate::net::registry::has_news() {
                interrupts::enable();
                continue;
            }
            crate::net::stack::sleep(interrupts::enable_and_hlt);
        }
    }
}

/// A script, for tests: its bytes, then the end.
pub struct ScriptInput<'a>(pub core::slice::Iter<'a, u8>);

impl Input for ScriptInput<'_> {
    fn next_byte(&mut self) -> Option<Received> {
        self.0.next().map(|&byte| Received { byte, arrival: Arrival::InOrder })
    }
}

const PROMPT: &str = "dmakit> ";
/// The most sectors `read`, `write` and `dma read` move at once (1 MiB).
const MAX_SECTORS: u64 = 2048;

/// Reads and runs commands until the input ends (or `poweroff`).
pub fn run(input: &mut dyn Input) {
    let mut editor = LineEditor::default();
    print!("{PROMPT}");
    while let Some(Received { byte, arrival }) = input.next_byte() {
        if arrival == Arrival::AfterLostBytes {
            editor.bytes_lost();
        }
        match editor.feed(byte) {
            Edit::Nothing => {}
            Edit::Echo(text) => print!("{text}"),
            Edit::Abandoned => {
                println!("^C");
                print!("{PROMPT}");
            }
            Edit::TooLong => {
                println!();
                println!("error: line longer than {MAX_LINE} characters: not run");
                print!("{PROMPT}");
            }
            Edit::InputLost => {
                println!();
                println!(
                    "error: bytes of this line were lost on the way in (the shell's {}-byte input buffer was full; \
                     {} dropped since boot): not run",
                    crate::serial::INPUT_RING_BYTES,
                    crate::serial::dropped_input_bytes()
                );
                print!("{PROMPT}");
            }
            Edit::ForeignByte(byte) => {
                println!();
                println!(
                    "error: the line had byte {byte:#04x}, which the shell does not take (printable ASCII only): \
                     not run"
                );
                print!("{PROMPT}");
            }
            Edit::Line(line) => {
                println!();
                if let Err(message) = execute(&line) {
                    println!("error: {message}");
                }
                print!("{PROMPT}");
            }
        }
    }
    println!();
}

/// Refuses arguments to a command that takes none: a typo like `lsblk vda`
/// should say so, not quietly list every disk.
fn no_arguments(command: &str, arguments: &[&str]) -> Result<(), String> {
    match arguments {
        [] => Ok(()),
        _ => Err(format!("usage: {command} (no arguments; got '{}')", arguments.join(" "))),
    }
}

/// Runs one command line; an `Err` is the message to show.
pub fn execute(line: &str) -> Result<(), String> {
    // The line editor refuses these already; a line given here directly is
    // refused whole too, never run with a part of it.
    if let Some(character) = parse::foreign_character(line) {
        return Err(format!(
            "the line has {character:?} (U+{:04X}), which the shell does not take (printable ASCII only): not run",
            u32::from(character)
        ));
    }
    // split_whitespace splits at tabs too.
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&command, arguments)) = words.split_first() else { return Ok(()) };
    match command {
        "help" | "mem" | "ioreg" | "lsblk" | "stats" | "net" | "poweroff" | "exit" | "quit" => {
            no_arguments(command, arguments)?
        }
        _ => {}
    }
    match command {
        "help" => help(),
        "mem" => mem(),
        "ioreg" => driver::print_registry(),
        "lsblk" => lsblk(),
        "read" => read(arguments)?,
        "dump" => dump(arguments)?,
        "write" => write(arguments)?,
        "dma" => match arguments.split_first() {
            Some((&"read", rest)) => dma_read(rest)?,
            Some((&("step" | "show" | "sync" | "continue"), _)) => super::step::step(arguments)?,
            _ => return Err(String::from("usage: dma read DEV LBA COUNT [options], or dma step (see help)")),
        },
        "trace" => match arguments {
            ["on"] => {
                trace::set_enabled(true);
                println!("DMA tracing is on");
            }
            ["off"] => {
                trace::set_enabled(false);
                println!("DMA tracing is off");
            }
            _ => return Err(String::from("usage: trace on|off")),
        },
        "stats" => stats(),
        "net" => net(),
        "iommu" => iommu(arguments)?,
        "bench" => bench(arguments)?,
        "stop" => stop(arguments)?,
        "queue" => super::queue::queue(arguments)?,
        "experiment" => super::experiments::experiment(arguments)?,
        "start" => start(arguments)?,
        "flush" => flush(arguments)?,
        "poweroff" | "exit" | "quit" => {
            println!("powering off");
            exit(ExitCode::Success)
        }
        other => return Err(format!("unknown command '{other}': type help")),
    }
    Ok(())
}

fn help() {
    println!("commands:");
    println!("  help                     this list");
    println!("  mem                      frame allocator zones, heap and bounce memory");
    println!("  ioreg                    the driver registry tree");
    println!("  lsblk                    disks: name, driver, block size, capacity");
    println!("  read DEV LBA COUNT       read COUNT sectors; print their sha256 and first bytes");
    println!("  dump DEV LBA COUNT [OFFSET [LENGTH]]");
    println!("                           read COUNT sectors; hex dump LENGTH bytes (256) from OFFSET (0)");
    println!("  write DEV LBA COUNT PAT  write COUNT sectors of PAT repeated: PAT starting with a digit");
    println!("                           is one byte 0-255 (7, 0xa5), anything else is text (dmakit)");
    println!("  dma read DEV LBA COUNT [--bits N] [--boundary N] [--max-segment N]");
    println!("           [--above-4g] [--force-double-buffer] [--trace] [--scatter N]");
    println!("                           one read with your own limits added to the device's;");
    println!("                           --scatter N: into N pages none of which is next to another");
    println!("  trace on|off             show every DMA step of every transfer");
    println!("  stats                    bounce accounting, and each disk's queue");
    println!("  net                      each network interface: packets, interrupts, prepares and");
    println!("                           synchronizes per packet; the stack's echo and report services");
    println!("  experiment skip-copy-back|skip-fill DEV LBA COUNT");
    println!("                           switch one bounce copy off for one transfer and see what goes wrong");
    println!("  dma step DEV LBA         one read paused at each step; then dma show, dma sync in|out,");
    println!("                           dma continue (the device is played by the shell)");
    println!("  experiment synchronize   one bounced transfer step by step: what synchronize(In) and (Out) do");
    println!("  experiment early-sync    a receive buffer given back with synchronize(Out) while the device writes");
    println!("  experiment skip-sync-rx  a received packet read without synchronize(In): bounced, and in place");
    println!("  experiment no-bounce DEV LBA");
    println!("                           give the 32-bit IDE controller a buffer above 4 GiB without bouncing");
    println!("  experiment cross-64k DEV LBA");
    println!("                           let one PRD region cross a 64 KiB line (hda) and see why it is forbidden");
    println!("  experiment prp-offset DEV LBA");
    println!("                           hand an NVMe controller (nvme0n1) a PRP list whose second entry starts");
    println!("                           inside a page: it answers PRP Offset Invalid, nothing changes");
    println!("  experiment skip-invalidate DEV");
    println!("                           unmap a read's page WITHOUT the IOTLB invalidation: the next read, given");
    println!("                           the same IOVA, lands in the old page (q35 only: vdb, hda, sda, nvme0n1)");
    println!("  experiment dma-steal DEV the IDE bus master (hda) plays a malicious device: it reads a secret no");
    println!("                           driver lent it and writes it to the disk; behind the IOMMU (q35) it faults");
    println!("  queue DEV N [--bits N] [--above-4g] [--no-wait] [--digest]");
    println!("                           N reads submitted at once: see the order the device finishes them;");
    println!("                           --bits/--above-4g as dma read (bounced reads may wait: deferred loads);");
    println!("                           --no-wait leaves them in flight (stop DEV drains or aborts them;");
    println!("                           queue DEV, start DEV or stats collects them); --digest prints the");
    println!("                           sha256 of the data read, in the order submitted");
    println!("  flush DEV                flush the disk's volatile write cache: the writes it finished are");
    println!("                           on the medium (a disk without such a cache has nothing to flush)");
    println!("  stop DEV | start DEV     stop a disk's driver (requests in flight drain or abort,");
    println!("                           then the device's memory goes back), or start it again");
    println!("  iommu                    IOMMU units, capabilities, domains, live mappings, faults");
    println!("  iommu break BB:DD.F      the function's next transfer gets IOVAs unmapped before");
    println!("                           the device uses them: watch the fault (q35 only)");
    println!("  bench [--qd N]           a quick read benchmark of each disk (N requests in flight)");
    println!("  poweroff | exit | quit   leave QEMU (end of piped input does too)");
    println!("numbers: 4096, 0x1000, 64K, 1M; disks: vda, vdb... (virtio), hda, hdb... (ATA), sda (AHCI)");
    println!("keys: Up/Down recall the last 16 lines, Ctrl-U erases the line, Ctrl-C abandons it");
}

fn bench(arguments: &[&str]) -> Result<(), String> {
    match arguments {
        [] => crate::bench::quick(None),
        ["--qd", depth] => {
            let depth = parse::number(depth).ok_or_else(|| format!("--qd takes a number, not '{depth}'"))?;
            if !(1..=256).contains(&depth) {
                return Err(format!("--qd must be 1 to 256, not {depth}"));
            }
            crate::bench::quick(Some(depth as usize));
        }
        _ => return Err(format!("usage: bench [--qd N] (got '{}')", arguments.join(" "))),
    }
    Ok(())
}

/// The disk a one-argument command names.
fn named_disk(arguments: &[&str], usage: &str) -> Result<(String, Arc<dyn BlockDevice>), String> {
    let [name] = arguments else { return Err(String::from(usage)) };
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    Ok((String::from(*name), disk))
}

fn stop(arguments: &[&str]) -> Result<(), String> {
    let (name, disk) = named_disk(arguments, "usage: stop DEV")?;
    let report = disk.stop().map_err(|failure| format!("{name}: {failure}"))?;
    println!(
        "{name} stopped: {} request(s) in flight finished, {} aborted, {} command(s) left prepared",
        report.drained, report.aborted, report.prepared_left
    );
    let left = super::left::count(&name);
    if left > 0 {
        println!(
            "{left} of them were left by queue --no-wait: over now, their buffers wait to be collected \
             (start {name}, stats or queue {name})"
        );
    }
    Ok(())
}

fn start(arguments: &[&str]) -> Result<(), String> {
    let (name, disk) = named_disk(arguments, "usage: start DEV")?;
    // The stop finished every read left in flight: collect them before the
    // disk takes new ones.
    super::left::collect(Some(&name), Collect::Everything);
    disk.start().map_err(|failure| format!("{name}: {failure}"))?;
    println!("{name} started");
    Ok(())
}

/// `flush DEV`: named `flush`, not `sync`, which the shell uses for DMA's
/// synchronize (`dma sync`).
fn flush(arguments: &[&str]) -> Result<(), String> {
    let (name, disk) = named_disk(arguments, "usage: flush DEV")?;
    disk.flush().map_err(|failure| format!("{name}: flush failed: {failure}"))?;
    match disk.write_cache() {
        WriteCache::Volatile => {
            println!("{name}: the device wrote its volatile cache to the medium: every write finished before is there")
        }
        WriteCache::WriteThrough => {
            println!("{name}: no volatile write cache, nothing to flush: every finished write is on the medium already")
        }
    }
    Ok(())
}

fn iommu(arguments: &[&str]) -> Result<(), String> {
    match arguments {
        [] => {
            for line in crate::iommu::report() {
                println!("{line}");
            }
        }
        ["break", location] => {
            let function = crate::pci::enumerate()
                .into_iter()
                .find(|function| function.location() == *location)
                .ok_or_else(|| format!("no PCI function {location} (ioreg lists them as BB:DD.F)"))?;
            // The experiment fires on a disk read: a function without a disk
            // would stay armed for ever, so it is refused before its IOMMU
            // domain is made.
            if driver::disks_of_function(location).is_empty() {
                return Err(format!(
                    "{location} has no disk, so no read of yours would reach it; choose a function with one \
                     (ioreg shows the disks below each function)"
                ));
            }
            crate::dma::experiment::install();
            crate::iommu::set_experiment(function.requester_id(), crate::iommu::Experiment::UnmapBeforeTheDevice)
                .map_err(|failure| format!("{location}: {failure}"))?;
            println!(
                "armed: the next transfer of {location} is unmapped before its device runs; read its disk, then type iommu"
            );
        }
        _ => return Err(String::from("usage: iommu [break BB:DD.F]")),
    }
    Ok(())
}

fn mem() {
    for zone in physical::zone_stats().into_iter().flatten() {
        println!(
            "zone {:<6} {:>26} {:>8} frames total {:>8} free ({} MiB free)",
            zone.kind.name(),
            format!("{:#x}..{:#x}", zone.start, zone.end),
            zone.total,
            zone.free,
            (zone.free * 4096) >> 20
        );
    }
    let (used, free) = heap::usage();
    println!("heap {} KiB used, {} KiB free", used / 1024, free / 1024);
    let stats = platform().accounting().stats();
    println!("bounce memory {} of {} pages in use", stats.pages_in_use, stats.page_limit);
}

fn stats() {
    // Reads `queue --no-wait` left that are over come back first, so the
    // counts below include them.
    super::left::collect(None, Collect::WhatIsOver);
    for line in super::reports::stats_lines() {
        println!("{line}");
    }
}

fn net() {
    for line in super::reports::net_lines() {
        println!("{line}");
    }
}

fn lsblk() {
    println!("{:<8} {:<12} {:>6} {:>12}  model", "NAME", "DRIVER", "BLOCK", "CAPACITY");
    for (name, disk) in driver::block_devices() {
        let bytes = disk.block_count() * u64::from(disk.block_size());
        println!(
            "{name:<8} {:<12} {:>6} {:>12}  {}",
            disk.driver_name(),
            disk.block_size(),
            parse::size(bytes),
            disk.description()
        );
    }
}

/// The disk, LBA and count of `read`/`write`/`dma read`, checked.
fn target(arguments: &[&str]) -> Result<(Arc<dyn BlockDevice>, u64, u64), String> {
    let name = arguments.first().ok_or("missing DEV (try lsblk)")?;
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let lba = parse::argument(arguments, 1, "LBA")?;
    let count = parse::argument(arguments, 2, "COUNT")?;
    if count == 0 || count > MAX_SECTORS {
        return Err(format!("COUNT must be 1 to {MAX_SECTORS}, not {count}"));
    }
    parse::sectors_on_disk(name, lba, count, disk.block_count())?;
    Ok((disk, lba, count))
}

/// A buffer for a disk read (`In`: the device writes it) or write (`Out`).
pub(super) fn buffer(bytes: u64, direction: IoDirection, placement: Constraints) -> Result<DmaBuffer, String> {
    DmaBuffer::allocate(platform(), bytes, direction, placement)
        .map_err(|error| format!("no buffer of {bytes} bytes: {error}"))
}

/// Prints a hex dump of `data`, 16 bytes a row, each row headed by its offset
/// (`data` starts at offset `first`).
fn hex_dump(data: &[u8], first: u64) {
    for (row, chunk) in data.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        let text: String = chunk.iter().map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '.' }).collect();
        println!("{:06x}  {}  {text}", first + row as u64 * 16, hex.join(" "));
    }
}

/// Prints the sha256 of `data` and a hex dump of its first 64 bytes.
fn show(data: &[u8]) {
    println!("sha256 {}", sha256_hex(data));
    hex_dump(&data[..data.len().min(64)], 0);
}

/// Reads `count` sectors at `lba` of `disk` into a fresh buffer; their bytes.
fn read_sectors(disk: &Arc<dyn BlockDevice>, lba: u64, count: u64) -> Result<Vec<u8>, String> {
    let bytes = count * u64::from(disk.block_size());
    let mut target = buffer(bytes, IoDirection::In, Constraints::NONE)?;
    disk.read(lba, count, &mut target, 0).map_err(|error| format!("read failed: {error}"))?;
    target.to_vec(0, bytes as usize).map_err(|error| format!("reading back the buffer failed: {error}"))
}

fn read(arguments: &[&str]) -> Result<(), String> {
    if arguments.len() != 3 {
        return Err(String::from("usage: read DEV LBA COUNT"));
    }
    let (disk, lba, count) = target(arguments)?;
    show(&read_sectors(&disk, lba, count)?);
    Ok(())
}

/// Bytes `dump` shows when not told how many.
const DUMP_LENGTH: u64 = 256;

fn dump(arguments: &[&str]) -> Result<(), String> {
    if !(3..=5).contains(&arguments.len()) {
        return Err(String::from("usage: dump DEV LBA COUNT [OFFSET [LENGTH]]"));
    }
    let (disk, lba, count) = target(arguments)?;
    let read = count * u64::from(disk.block_size());
    let offset = if arguments.len() > 3 { parse::argument(arguments, 3, "OFFSET")? } else { 0 };
    if offset >= read {
        return Err(format!("OFFSET {offset} is past the {read} bytes read (COUNT {count} sectors)"));
    }
    // Without LENGTH, the default stops at the end of what was read.
    let length = match arguments.get(4) {
        Some(_) => parse::argument(arguments, 4, "LENGTH")?,
        None => DUMP_LENGTH.min(read - offset),
    };
    if length == 0 || offset.checked_add(length).is_none_or(|end| end > read) {
        return Err(format!(
            "bytes {offset}..{} are not all in the {read} bytes read (COUNT {count} sectors); LENGTH must be 1 to {}",
            offset.saturating_add(length),
            read - offset
        ));
    }
    let data = read_sectors(&disk, lba, count)?;
    hex_dump(&data[offset as usize..(offset + length) as usize], offset);
    Ok(())
}

fn write(arguments: &[&str]) -> Result<(), String> {
    if arguments.len() != 4 {
        return Err(String::from("usage: write DEV LBA COUNT PATTERN"));
    }
    let (disk, lba, count) = target(arguments)?;
    let bytes = count * u64::from(disk.block_size());
    let pattern = parse::pattern(arguments[3])?;
    let data: Vec<u8> = pattern.iter().copied().cycle().take(bytes as usize).collect();
    let mut source = buffer(bytes, IoDirection::Out, Constraints::NONE)?;
    source.write_bytes(0, &data).map_err(|error| format!("filling the buffer failed: {error}"))?;
    disk.write(lba, count, &mut source, 0).map_err(|error| format!("write failed: {error}"))?;
    println!("wrote {count} sector(s) at {lba}; sha256 {}", sha256_hex(&data));
    Ok(())
}

fn dma_read(arguments: &[&str]) -> Result<(), String> {
    let (disk, lba, count) = target(arguments.get(..3).ok_or("usage: dma read DEV LBA COUNT [options]")?)?;
    let options: DmaReadOptions = parse::dma_read_options(&arguments[3..])?;
    let bytes = count * u64::from(disk.block_size());
    let placement = if options.above_4g { Constraints::NONE } else { Constraints::below(PhysAddr::new(1 << 32)) };
    let mut target = match options.scatter {
        Some(pages) => scatter::buffer(bytes, pages, placement)?,
        None => buffer(bytes, IoDirection::In, placement)?,
    };
    let (address, _) = target
        .descriptor()
        .physical_segment(0)
        .map_err(|error| format!("no physical address for the buffer: {error}"))?;
    if options.above_4g && address.as_u64() < 1 << 32 {
        return Err(String::from("no memory above 4 GiB on this machine (boot with MEM=6G)"));
    }
    let restrict = Specification {
        num_address_bits: options.bits.unwrap_or(0),
        boundary: options.boundary.unwrap_or(0),
        max_segment_size: options.max_segment.unwrap_or(0),
        ..Specification::UNLIMITED_64
    };
    println!(
        "buffer: {bytes} bytes at physical {:#x} ({} 4 GiB); device {} with your limits: {} address bits, boundary {}, max segment {}",
        address.as_u64(),
        if address.as_u64() >= 1 << 32 { "above" } else { "below" },
        disk.driver_name(),
        options.bits.map_or(String::from("device's"), |bits| format!("{bits}")),
        options.boundary.map_or(String::from("device's"), |b| format!("{b:#x}")),
        options.max_segment.map_or(String::from("device's"), |m| format!("{m:#x}")),
    );
    let pieces = scatter::physical_runs(target.descriptor());
    if options.scatter.is_some() {
        let starts: Vec<u64> = pieces.iter().map(|&(start, _)| start).collect();
        let apart = match scatter::any_adjacent(&starts) {
            true => "two of them adjacent",
            false => "none next to another",
        };
        let listed: Vec<String> = starts.iter().map(|start| format!("{start:#x}")).collect();
        println!("scatter: {} pieces of a page, {apart}: {}", pieces.len(), listed.join(" "));
    }
    let before = platform().accounting().stats();
    let was_tracing = options.trace && !trace::set_enabled(true);
    let transfer = TransferOptions { restrict: Some(restrict), force_double_buffer: options.force_double_buffer };
    let result = disk.transfer(BlockOperation::Read, lba, count, &mut target, 0, &transfer);
    if was_tracing {
        trace::set_enabled(false);
    }
    result.map_err(|error| format!("dma read failed: {error}"))?;
    let after = platform().accounting().stats();
    let segments = disk.last_segments();
    let bounced = after.bytes_from_bounce - before.bytes_from_bounce;
    println!("the device got {} segment(s):", segments.len());
    let mut offset = 0;
    for segment in segments.iter().take(8) {
        // Behind an IOMMU a segment is an IOVA: show where it led in memory
        // (the buffer's own pages, as nothing was bounced).
        let physical = target.descriptor().physical_segment(offset).map(|(address, _)| address.as_u64());
        match physical {
            Ok(physical) if bounced == 0 && physical != segment.address.as_u64() => println!(
                "  IOVA {:#x} + {:#x} bytes -> physical {physical:#x} (the IOMMU translated it)",
                segment.address.as_u64(),
                segment.length
            ),
            _ => println!("  {:#x} + {:#x} bytes", segment.address.as_u64(), segment.length),
        }
        offset += segment.length;
    }
    if segments.len() > 8 {
        println!("  ... {} more", segments.len() - 8);
    }
    if bounced > 0 {
        println!(
            "bounced: {bounced} bytes came back through bounce buffers, in {} copies",
            after.copies_from_bounce - before.copies_from_bounce
        );
    } else {
        println!("bounced: nothing; the device wrote straight into the buffer (zero copies)");
    }
    if options.scatter.is_some() {
        let translated = segments
            .first()
            .zip(pieces.first())
            .is_some_and(|(segment, piece)| bounced == 0 && segment.address.as_u64() != piece.0);
        let outcome = Outcome { pieces: pieces.len(), segments: segments.len(), bounced, translated };
        println!("{}", scatter::explain(outcome));
    }
    if let (true, Some(first)) = (options.force_double_buffer, segments.first()) {
        let start = first.address.as_u64();
        let aligned = if start % 4096 == 0 { "page-aligned" } else { "NOT page-aligned" };
        println!("force-double-buffer: the transfer used one fresh {aligned} buffer at {start:#x}");
    }
    show(&target.to_vec(0, bytes as usize).map_err(|error| format!("reading back the buffer failed: {error}"))?);
    Ok(())
}
