//! Host tests of the DMA layer on a simulated machine.

mod causes;
mod contract;
mod defects;
mod experiments;
mod force_double_buffer;
mod invalidation;
mod mapped;
mod noncoherent;
mod ownership;
mod properties;
mod segment_limit;
mod slots;
mod synchronize_range;
mod undone_prepare;
mod virtual_boundary;
mod vtd_faults;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;

use super::simulated::SimulatedPlatform;
use super::{Coherence, DmaPlatform, IoDirection, IoDmaCommand, IoMemoryDescriptor, Segment};
use crate::memory::Constraints;
use x86_64::PhysAddr;

/// 4 GiB: the first address a 32-bit device cannot reach.
pub(super) const FOUR_GIB: u64 = 1 << 32;

std::thread_local! {
    /// The machines [`machine`] makes in this test's thread.
    static MACHINES: Cell<Coherence> = const { Cell::new(Coherence::Coherent) };
}

/// A fresh simulated machine with a 1024-page bounce budget: coherent, unless
/// the test runs inside [`on_noncoherent_machines`].
pub(super) fn machine() -> &'static SimulatedPlatform {
    match MACHINES.get() {
        Coherence::Coherent => SimulatedPlatform::leak(1024),
        Coherence::NonCoherent => SimulatedPlatform::leak_noncoherent(1024),
    }
}

/// Runs `test` with [`machine`] making non-coherent machines: an existing test
/// of the contract, run again where the CPU's cache hides what the device does.
pub(super) fn on_noncoherent_machines(test: fn()) {
    MACHINES.set(Coherence::NonCoherent);
    test();
    MACHINES.set(Coherence::Coherent);
}

/// A buffer in high memory (above 4 GiB) holding a known pattern.
pub(super) fn high_buffer(
    platform: &'static SimulatedPlatform,
    length: u64,
    direction: IoDirection,
) -> Arc<IoMemoryDescriptor> {
    let descriptor = IoMemoryDescriptor::allocate(platform, length, direction, Constraints::NONE).unwrap();
    assert!(descriptor.physical_segment(0).unwrap().0.as_u64() >= FOUR_GIB, "unconstrained buffers are high");
    descriptor.write_bytes(0, &pattern(length as usize, 7)).unwrap();
    descriptor
}

/// A buffer below 4 GiB holding a known pattern.
pub(super) fn low_buffer(
    platform: &'static SimulatedPlatform,
    length: u64,
    direction: IoDirection,
) -> Arc<IoMemoryDescriptor> {
    let below = Constraints::below(PhysAddr::new(FOUR_GIB));
    let descriptor = IoMemoryDescriptor::allocate(platform, length, direction, below).unwrap();
    descriptor.write_bytes(0, &pattern(length as usize, 7)).unwrap();
    descriptor
}

/// Deterministic bytes that differ from offset to offset and from seed to seed.
pub(super) fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Everything a descriptor holds.
pub(super) fn contents(descriptor: &IoMemoryDescriptor) -> Vec<u8> {
    let mut bytes = alloc::vec![0; descriptor.length() as usize];
    descriptor.read_bytes(0, &mut bytes).unwrap();
    bytes
}

/// What the device sees through all of the command's segments, in order.
pub(super) fn device_reads(platform: &SimulatedPlatform, command: &IoDmaCommand) -> Vec<u8> {
    let mut bytes = Vec::new();
    for segment in command.segments() {
        let mut piece = alloc::vec![0; segment.length as usize];
        platform.device_read(segment.address.as_u64(), &mut piece);
        bytes.extend_from_slice(&piece);
    }
    bytes
}

/// The device writes `data` through the segments, in order.
pub(super) fn device_writes(platform: &SimulatedPlatform, segments: &[Segment], data: &[u8]) {
    let mut done = 0;
    for segment in segments {
        let length = segment.length as usize;
        platform.device_write(segment.address.as_u64(), &data[done..done + length]);
        done += length;
    }
    assert_eq!(done, data.len(), "segments cover the data");
}

/// Whether `segments` meet a virtual boundary of `unit`, checked from the rule's
/// wording rather than with the code under test: every segment but the first
/// starts on a multiple of `unit`, every segment but the last ends on one.
pub(super) fn meets_virtual_boundary(segments: &[Segment], unit: u64) -> bool {
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(index, segment)| {
        (index == 0 || segment.address.as_u64().is_multiple_of(unit))
            && (index == last || segment.end().is_multiple_of(unit))
    })
}
