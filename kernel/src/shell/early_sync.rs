//! `experiment early-sync`: a receive buffer handed back to the device the
//! wrong way. A driver polls a buffer the device has not finished, sees no
//! whole frame yet, and gives the buffer back with `synchronize(Out)`: with a
//! bounce buffer, that copies the CPU's stale bytes over what the device had
//! already written. Linux shipped this bug in 2022 inside swiotlb, whose
//! `sync_for_device` for a `DMA_FROM_DEVICE` buffer started to copy the
//! original buffer into the bounce buffer; drivers that synced a receive
//! buffer the device was still filling lost data, and the change was reverted
//! (commit bddac7c1e02b, "Revert swiotlb: rework fix info leak with
//! DMA_FROM_DEVICE"). The rule it leaves: a buffer the device may still be
//! writing is given back without a copy towards the device
//! (`synchronize_range(Out, 0, 0)` here).

use alloc::format;
use alloc::string::String;
use alloc::vec;

use super::experiments::first_bytes;
use crate::dma::kernel_platform::platform;
use crate::dma::{IoDirection, IoDmaCommand, IoMemoryDescriptor, IoReturn, Specification, SyncOptions, experiment};
use crate::memory::Constraints;
use crate::println;

/// The frame's size, and how far the device got before the driver looked.
const FRAME: usize = 4096;
const WRITTEN_EARLY: usize = 2048;
/// The header the driver looks at too early.
const HEADER: u64 = 16;

/// How the driver gives the buffer back after its early look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GiveBack {
    /// `synchronize(Out)`: the whole buffer is copied towards the device.
    WholeOut,
    /// `synchronize_range(Out, 0, 0)`: nothing is copied.
    NothingCopied,
}

/// `experiment early-sync`.
pub fn early_sync() -> Result<(), String> {
    println!("A receive buffer of 4 KiB above 4 GiB for a 32-bit device: prepared once, so it bounces.");
    println!("The device writes a 4 KiB frame of 0x22 in two halves; the driver looks after the first.");
    let wrong = round(GiveBack::WholeOut)?;
    println!("--- the same, given back with synchronize_range(Out, 0, 0), which copies nothing:");
    let right = round(GiveBack::NothingCopied)?;
    println!(
        "Given back with synchronize(Out), {wrong} bytes of the frame were the CPU's stale bytes; given back with"
    );
    println!("nothing copied, {right}. A buffer the device may still be writing is never synchronized towards it.");
    Ok(())
}

/// One frame received, the buffer given back after an early look as `give_back`
/// says; returns how many of the frame's bytes the CPU got wrong.
fn round(give_back: GiveBack) -> Result<usize, String> {
    let code = |code: IoReturn| format!("{code}");
    let failed = |failure: crate::dma::IoFailure| format!("{failure}");
    let descriptor =
        IoMemoryDescriptor::allocate(platform(), FRAME as u64, IoDirection::In, Constraints::NONE).map_err(code)?;
    descriptor.write_bytes(0, &[0x11; FRAME]).map_err(code)?;
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).map_err(code)?;
    command.set_memory_descriptor(descriptor.clone(), false).map_err(code)?;
    command.prepare(0, 0).map_err(code)?;
    let frame = [0x22u8; FRAME];
    experiment::device_writes_at(&command, 0, &frame[..WRITTEN_EARLY]).map_err(failed)?;
    println!("1. the device has written bytes 0..{WRITTEN_EARLY} of the frame into its bounce buffer");
    command.synchronize_range(SyncOptions::IN, 0, HEADER).map_err(code)?;
    println!("2. the driver looks too early: synchronize_range(In, 0, {HEADER}) shows the header, no length yet");
    match give_back {
        GiveBack::WholeOut => {
            command.synchronize(SyncOptions::OUT).map_err(code)?;
            println!("3. it gives the buffer back with synchronize(Out): the CPU's whole buffer -> bounce buffer");
        }
        GiveBack::NothingCopied => {
            command.synchronize_range(SyncOptions::OUT, 0, 0).map_err(code)?;
            println!("3. it gives the buffer back with synchronize_range(Out, 0, 0): nothing is copied");
        }
    }
    let bounce = experiment::device_reads(&command, 2 * HEADER as usize).map_err(failed)?;
    println!("   the bounce buffer at 16..32:   {}", first_bytes(&bounce[HEADER as usize..]));
    experiment::device_writes_at(&command, WRITTEN_EARLY as u64, &frame[WRITTEN_EARLY..]).map_err(failed)?;
    println!(
        "4. the device writes bytes {WRITTEN_EARLY}..{FRAME} and reports a {FRAME}-byte frame; complete copies it back"
    );
    command.complete().map_err(code)?;
    command.clear_memory_descriptor(false).map_err(code)?;
    let mut got = vec![0u8; FRAME];
    descriptor.read_bytes(0, &mut got).map_err(code)?;
    let wrong = got.iter().filter(|&&byte| byte != 0x22).count();
    println!("   the frame the CPU got: {wrong} of its {FRAME} bytes are not the device's");
    Ok(wrong)
}
