//! The simulated non-coherent machine: the CPU sees memory through a cache the
//! device does not snoop, so bytes move between the two only where someone
//! cleans or invalidates; memory shared with a device for its life bypasses it.

use x86_64::PhysAddr;

use super::*;
use crate::dma::{CoherentMemory, FrameFill, Specification};

fn noncoherent() -> &'static SimulatedPlatform {
    SimulatedPlatform::leak_noncoherent(1024)
}

/// What RAM (the device's view) holds at `address`.
fn ram(platform: &SimulatedPlatform, address: PhysAddr, length: usize) -> Vec<u8> {
    let mut bytes = alloc::vec![0; length];
    platform.device_read(address.as_u64(), &mut bytes);
    bytes
}

/// The CPU writes `bytes` at `address`, through its cache.
fn cpu_write(platform: &SimulatedPlatform, address: PhysAddr, bytes: &[u8]) {
    // SAFETY: the tests pass frames they allocated and still own.
    unsafe { platform.write_physical(address, bytes) }
}

/// What the CPU reads at `address`, through its cache.
fn cpu_read(platform: &SimulatedPlatform, address: PhysAddr, length: usize) -> Vec<u8> {
    let mut bytes = alloc::vec![0; length];
    // SAFETY: as in `cpu_write`.
    unsafe { platform.read_physical(address, &mut bytes) };
    bytes
}

#[test]
fn the_cpu_sees_memory_through_a_cache_the_device_does_not_snoop() {
    let platform = noncoherent();
    assert_eq!(platform.coherence(), Coherence::NonCoherent);
    assert_eq!(SimulatedPlatform::leak(1).coherence(), Coherence::Coherent, "`leak` stays coherent");
    let frame = platform.allocate_frames(1, Constraints::NONE, FrameFill::Zeroed).unwrap();
    cpu_write(platform, frame, &[1; 16]);
    assert!(platform.is_cached(frame.as_u64()));
    assert_eq!(ram(platform, frame, 16), [0; 16], "the CPU's write sits in its cache");
    platform.clean_for_device(frame, 16);
    assert_eq!(ram(platform, frame, 16), [1; 16], "a clean writes it back");
    platform.device_write(frame.as_u64(), &[2; 16]);
    assert_eq!(cpu_read(platform, frame, 16), [1; 16], "the CPU reads its stale copy");
    cpu_write(platform, frame, &[3; 4]);
    platform.invalidate_for_cpu(frame, 16);
    assert_eq!(
        cpu_read(platform, frame, 16),
        [2; 16],
        "an invalidate reloads from RAM and drops the CPU's unwritten bytes"
    );
    cpu_write(platform, frame, &[4; 16]);
    platform.flush_for_device(frame, 16);
    assert_eq!(ram(platform, frame, 16), [4; 16], "flush_for_device writes back too (IOMMU tables)");
    platform.free_frames(frame, 1);
    assert!(!platform.is_cached(frame.as_u64()), "freed frames have no cached copy");
}

#[test]
fn shared_memory_needs_no_maintenance() {
    let platform = noncoherent();
    let ring = CoherentMemory::allocate(platform, 4096, Specification::UNLIMITED_64).unwrap();
    let address = ring.device_address().as_u64();
    ring.write_bytes(0, &[1, 2, 3]).unwrap();
    assert_eq!(ram(platform, PhysAddr::new(address), 3), [1, 2, 3], "the device sees the CPU's write at once");
    platform.device_write(address + 16, &[9, 8, 7]);
    let mut seen = [0u8; 3];
    ring.read_bytes(16, &mut seen).unwrap();
    assert_eq!(seen, [9, 8, 7], "the CPU sees the device's write at once");
    assert!(!platform.is_cached(address), "mapped uncached");
    ring.release().unwrap();
}
