//! What both NVMe test kernels check on `nvme0n1` (pc, and q35 where the
//! controller sits behind VT-d): 32 requests in flight at once, of random
//! sizes up to what one command carries (MDTS), reads and writes, into buffers below 4 GiB, above it, and
//! made of scattered pages; every byte checked here and, through the runner,
//! against the image file, read back 512 KiB at a time; the PRP-list and the SGL forms of data pointer
//! each used, as the driver's counters show.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest};
use dmakit::digest::sha256_hex;
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{DmaBuffer, IoDirection, IoMemoryDescriptor};
use dmakit::memory::Constraints;
use dmakit::testing::random::Random;
use dmakit::{driver, pattern, println};
use spin::Once;
use x86_64::PhysAddr;

/// The scratch region: the whole 16 MiB disk (the runner makes a fresh image
/// for each test kernel).
const REGION: u64 = 0;
/// Requests in flight at once.
const REQUESTS: u64 = 32;
/// Sectors each request owns (512 KiB): a request is anywhere inside its own.
const AREA: u64 = 1_024;
const FOUR_GIB: u64 = 1 << 32;

static ATTACHED: Once<Arc<dyn BlockDevice>> = Once::new();

fn disk() -> Arc<dyn BlockDevice> {
    ATTACHED
        .call_once(|| {
            driver::attach(&dmakit_drivers::all());
            driver::find_block_device("nvme0n1").expect("the NVMe namespace became nvme0n1")
        })
        .clone()
}

/// Where a buffer lies.
#[derive(Clone, Copy, Debug)]
enum Placement {
    Below4GiB,
    Above4GiB,
    ScatteredPages,
}

fn buffer(placement: Placement, bytes: u64) -> DmaBuffer {
    match placement {
        Placement::Below4GiB => {
            DmaBuffer::allocate(platform(), bytes, IoDirection::InOut, Constraints::below(PhysAddr::new(FOUR_GIB)))
        }
        Placement::Above4GiB => DmaBuffer::allocate(platform(), bytes, IoDirection::InOut, Constraints::NONE),
        Placement::ScatteredPages => {
            // Whole pages, each allocated on its own, alternately below and
            // above 4 GiB: never physically contiguous.
            let mut pieces = Vec::new();
            let mut left = bytes;
            while left > 0 {
                let piece = left.min(4096);
                let placement = match pieces.len() % 2 {
                    0 => Constraints::NONE,
                    _ => Constraints::below(PhysAddr::new(FOUR_GIB)),
                };
                pieces.push((piece, placement));
                left -= piece;
            }
            let descriptor = IoMemoryDescriptor::allocate_scattered(platform(), &pieces, IoDirection::InOut)
                .expect("scattered pages");
            DmaBuffer::from_descriptor(descriptor)
        }
    }
    .expect("a buffer")
}

/// The driver's counters by data-pointer form.
fn pointer_counts(disk: &dyn BlockDevice) -> Vec<(&'static str, u64)> {
    disk.driver_counters()
}

/// What a write of round `round` starting at `first` puts in sector `lba`.
fn written_sector(first: u64, lba: u64, round: u8) -> Vec<u8> {
    let base = (lba - first) * 512;
    (base..base + 512).map(|i| (i as u8) ^ (first as u8) ^ round.wrapping_mul(37) ^ (i >> 9) as u8).collect()
}

/// What a write of `count` sectors at `first` in round `round` puts there.
fn written(first: u64, count: u64, round: u8) -> Vec<u8> {
    (first..first + count).flat_map(|lba| written_sector(first, lba, round)).collect()
}

/// What the region holds, as the writes so far made it: the image's pattern
/// where none wrote, else the last write's bytes. Kept as a list of writes,
/// not a copy of the disk: 16 MiB of copy would not fit the heap, and in
/// frames it would crawl through the non-coherent machine's cache model.
struct Mirror {
    /// (first sector, count, round), in the order they finished.
    writes: Vec<(u64, u64, u8)>,
}

impl Mirror {
    fn sectors(&self, lba: u64, count: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity((count * 512) as usize);
        for sector in lba..lba + count {
            let last = self.writes.iter().rev().find(|(first, count, _)| (*first..first + count).contains(&sector));
            match last {
                Some(&(first, _, round)) => bytes.extend_from_slice(&written_sector(first, sector, round)),
                None => {
                    let mut pattern_bytes = [0u8; 512];
                    pattern::sector(sector, b'N', &mut pattern_bytes);
                    bytes.extend_from_slice(&pattern_bytes);
                }
            }
        }
        bytes
    }
}

pub fn thirty_two_requests_of_random_sizes_in_flight_and_every_byte_is_right() {
    let disk = disk();
    let mut mirror = Mirror { writes: Vec::new() };
    let before = pointer_counts(disk.as_ref());
    let mut random = Random(0x4e56_4d45);
    for round in 0..2u8 {
        let mut plans = Vec::new();
        let mut handles = Vec::new();
        for area in 0..REQUESTS {
            let count = match area % 4 {
                // At most 4 KiB: at most two pages, PRP1 and PRP2 alone.
                1 => 1 + random.below(8),
                // Below the SGL threshold (32 KiB) and above two pages: a PRP list.
                3 => 17 + random.below(47),
                _ => 1 + random.below(AREA.min(disk.max_request_blocks())),
            };
            let lba = REGION + area * AREA + random.below(AREA - count + 1);
            let operation = if random.below(2) == 0 { BlockOperation::Read } else { BlockOperation::Write };
            let placement = [Placement::Below4GiB, Placement::Above4GiB, Placement::ScatteredPages][area as usize % 3];
            let mut data = buffer(placement, count * 512);
            if operation == BlockOperation::Write {
                data.write_bytes(0, &written(lba, count, round)).expect("filled");
            }
            handles.push(disk.submit(BlockRequest::new(operation, lba, count, data, 0)).expect("submitted"));
            plans.push((operation, lba, count, placement));
        }
        // Requests own disjoint areas: the order they finish in does not
        // change what the region holds.
        for ((operation, lba, count, placement), handle) in plans.into_iter().zip(handles) {
            let finished = disk.wait(handle);
            finished.result.unwrap_or_else(|failure| panic!("{operation:?} {lba}+{count} ({placement:?}): {failure}"));
            match operation {
                BlockOperation::Read => {
                    let got = finished.buffer.expect("the buffer back").to_vec(0, (count * 512) as usize).unwrap();
                    assert!(got == mirror.sectors(lba, count), "read {lba}+{count} into {placement:?} differs");
                }
                BlockOperation::Write => mirror.writes.push((lba, count, round)),
            }
        }
    }
    // Everything read back, area by area, and the runner compares the image
    // file; then 1 MiB in one `read`, more than one command carries: split.
    for area in 0..REQUESTS {
        let lba = REGION + area * AREA;
        let mut piece = buffer(Placement::Below4GiB, AREA * 512);
        disk.read(lba, AREA, &mut piece, 0).expect("read back");
        let bytes = piece.to_vec(0, (AREA * 512) as usize).unwrap();
        assert!(bytes == mirror.sectors(lba, AREA), "area {area} differs");
        println!("host-check nvme {lba} {AREA} {}", sha256_hex(&bytes));
    }
    let mut whole = buffer(Placement::Above4GiB, 2048 * 512);
    disk.read(REGION, 2048, &mut whole, 0).expect("1 MiB in one read");
    assert!(whole.to_vec(0, 2048 * 512).unwrap() == mirror.sectors(REGION, 2048), "the 1 MiB read differs");
    let after = pointer_counts(disk.as_ref());
    let used: Vec<(&str, u64)> =
        after.iter().zip(&before).map(|((name, now), (_, then))| (*name, now - then)).collect();
    println!("nvme0n1: commands by data pointer: {used:?}");
    for (name, count) in &used {
        assert!(*count > 0, "no command used {name}: {used:?}");
    }
}

/// A buffer of two pieces, the first ending inside a page: no PRP list can
/// describe it, so the DMA layer bounces it (the driver never does), and the
/// read still brings the right bytes.
pub fn a_buffer_that_breaks_the_prp_rule_is_bounced_by_the_dma_layer_and_read_right() {
    use dmakit::dma::DmaPlatform;
    let disk = disk();
    let pieces = [(4608, Constraints::NONE), (3584, Constraints::NONE)];
    let descriptor =
        IoMemoryDescriptor::allocate_scattered(platform(), &pieces, IoDirection::InOut).expect("two pieces");
    let mut data = DmaBuffer::from_descriptor(descriptor).expect("a buffer");
    let before = platform().accounting().stats().bounced_transfers;
    let lba = 20_000;
    disk.read(lba, 16, &mut data, 0).expect("the read");
    let bounced = platform().accounting().stats().bounced_transfers - before;
    let mut expected = vec![0u8; 16 * 512];
    pattern::fill(lba, b'N', &mut expected);
    assert!(data.to_vec(0, expected.len()).unwrap() == expected, "the bytes read differ");
    assert_eq!(bounced, 1, "the DMA layer bounced the transfer once");
    println!("nvme0n1: a 4608 + 3584 byte buffer was bounced ({bounced} transfer) and read right");
}

/// A stop shuts the controller down (CC.SHN = 01b, CSTS.SHST = 10b awaited)
/// before it disables it; a start brings it up again, and the namespace reads
/// as it did (read only: the runner checks the image against the hashes
/// printed above).
pub fn a_stop_shuts_the_controller_down_and_a_start_brings_it_back() {
    let disk = disk();
    let bytes = 64 * 512;
    let mut before = buffer(Placement::Below4GiB, bytes);
    disk.read(4_000, 64, &mut before, 0).expect("the read before the stop");
    let report = disk.stop().expect("the stop");
    assert_eq!(report.aborted, 0, "nothing was in flight");
    disk.start().expect("the start after the shutdown");
    let mut after = buffer(Placement::ScatteredPages, bytes);
    disk.read(4_000, 64, &mut after, 0).expect("the read after the start");
    let (before, after) = (before.to_vec(0, bytes as usize).unwrap(), after.to_vec(0, bytes as usize).unwrap());
    assert!(before == after, "the namespace reads the same after the shutdown and the start");
    println!("nvme0n1: stopped (shut down, then disabled) and started again; 32 KiB read the same");
}
