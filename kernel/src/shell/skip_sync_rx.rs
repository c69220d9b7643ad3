//! `experiment skip-sync-rx`: a driver reads a received packet without
//! `synchronize(In)`, through its own pointer, as a driver that forgot would.
//! Twice: in a buffer above 4 GiB for a 32-bit device (the packet sits in the
//! bounce buffer), and in a buffer the device reaches in place (on a machine
//! whose DMA does not snoop, the CPU reads its stale cached copy; boot with
//! `COHERENCE=noncoherent` to see that half go wrong too).

use alloc::format;
use alloc::string::String;
use alloc::vec;

use x86_64::PhysAddr;

use super::experiments::first_bytes;
use crate::dma::kernel_platform::platform;
use crate::dma::{
    Coherence, DmaPlatform, IoDirection, IoDmaCommand, IoMemoryDescriptor, IoReturn, Specification, SyncOptions,
    experiment,
};
use crate::memory::{Constraints, FRAME_SIZE};
use crate::println;

/// The packet's size.
const PACKET: usize = 1500;

/// Where the receive buffer lies.
#[derive(Clone, Copy)]
enum Placement {
    /// Above 4 GiB, for a 32-bit device: bounced.
    Bounced,
    /// Below 4 GiB: the device writes it in place.
    InPlace,
}

/// `experiment skip-sync-rx`.
pub fn skip_sync_rx() -> Result<(), String> {
    let machine = match platform().coherence() {
        Coherence::Coherent => "this machine's DMA snoops the CPU's caches (x86)",
        Coherence::NonCoherent => "this machine's DMA does not snoop the CPU's caches (dma.coherence=noncoherent)",
    };
    println!("A 1500-byte packet of 0x22 received into a 4 KiB buffer that held 0x11; {machine}.");
    for placement in [Placement::Bounced, Placement::InPlace] {
        receive(placement)?;
    }
    println!("A driver reads what synchronize(In) (or synchronize_range(In, 0, n)) gave the CPU, never before.");
    Ok(())
}

/// One packet into a buffer placed as `placement`, read before and after
/// synchronize(In).
fn receive(placement: Placement) -> Result<(), String> {
    let code = |code: IoReturn| format!("{code}");
    let (constraints, words) = match placement {
        Placement::Bounced => {
            (Constraints::NONE, "above 4 GiB, for a 32-bit device: the packet goes to a bounce buffer")
        }
        Placement::InPlace => {
            (Constraints::below(PhysAddr::new(1 << 32)), "below 4 GiB: the device writes the buffer in place")
        }
    };
    let descriptor =
        IoMemoryDescriptor::allocate(platform(), FRAME_SIZE, IoDirection::In, constraints).map_err(code)?;
    descriptor.write_bytes(0, &[0x11; FRAME_SIZE as usize]).map_err(code)?;
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).map_err(code)?;
    command.set_memory_descriptor(descriptor.clone(), false).map_err(code)?;
    command.prepare(0, 0).map_err(code)?;
    experiment::device_writes(&command, &[0x22; PACKET]).map_err(|failure| format!("{failure}"))?;
    let buffer = descriptor.physical_segment(0).map_err(code)?.0;
    println!("{words}; the device wrote the packet and reported {PACKET} bytes");
    println!("   without synchronize(In) the driver reads: {} ...", cpu_reads(buffer));
    command.synchronize_range(SyncOptions::IN, 0, PACKET as u64).map_err(code)?;
    println!("   after synchronize_range(In, 0, {PACKET}):   {} ...", cpu_reads(buffer));
    command.complete().map_err(code)?;
    command.clear_memory_descriptor(false).map_err(code)?;
    Ok(())
}

/// What the CPU reads at `address` through its own pointer (its caches
/// included), bypassing the DMA layer's ownership check as a forgetful driver
/// would.
fn cpu_reads(address: PhysAddr) -> String {
    let mut first = vec![0u8; 8];
    // SAFETY: the experiment owns the buffer at `address` (allocated above and
    // freed only after); reading it changes nothing.
    unsafe { platform().read_physical(address, &mut first) };
    first_bytes(&first)
}
