//! Test kernel: a device error in the middle of a deep queue. The runner puts
//! QEMU's blkdebug between every disk and its image, failing any request that
//! touches sector 30000 with EIO; with 32 requests in flight only the one that
//! covers it may fail, and the disk goes on working.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest};
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{DmaBuffer, IoDirection, IoReturn};
use dmakit::memory::Constraints;
use dmakit::{driver, pattern, println};
use spin::Once;

dmakit::test_kernel!(an_error_in_a_deep_queue_fails_only_the_request_that_met_it);
dmakit::disk_error_at!(30000);

/// The sector blkdebug fails (the number in `disk_error_at!` above).
const BAD_SECTOR: u64 = 30000;
const AREA: u64 = 64;
/// Requests start this far apart, leaving a gap after each: QEMU's virtio-blk
/// merges requests for adjacent sectors into one host I/O, and an error then
/// fails every request of the merge, which is QEMU's doing, not the driver's.
const STRIDE: u64 = AREA + 8;
const REQUESTS: u64 = 32;
/// Request 15 of 32 covers the bad sector.
const FIRST: u64 = BAD_SECTOR - 15 * STRIDE - 10;

/// A disk's name, its image's pattern tag, and the disk.
type Disk = (&'static str, u8, Arc<dyn BlockDevice>);

static ATTACHED: Once<Vec<Disk>> = Once::new();

fn disks() -> &'static [Disk] {
    ATTACHED.call_once(|| {
        driver::attach(&dmakit_drivers::all());
        [("vda", b'V'), ("hda", b'A'), ("sda", b'S'), ("nvme0n1", b'N')]
            .into_iter()
            .map(|(name, tag)| (name, tag, driver::find_block_device(name).unwrap_or_else(|| panic!("{name}"))))
            .collect()
    })
}

fn an_error_in_a_deep_queue_fails_only_the_request_that_met_it() {
    for (name, tag, disk) in disks() {
        let before = disk.stats();
        let mut handles = Vec::new();
        for index in 0..REQUESTS {
            let buffer = DmaBuffer::allocate(platform(), AREA * 512, IoDirection::In, Constraints::NONE).unwrap();
            let request = BlockRequest::new(BlockOperation::Read, FIRST + index * STRIDE, AREA, buffer, 0);
            handles.push(disk.submit(request).expect("submitted"));
        }
        for (index, handle) in handles.into_iter().enumerate() {
            let lba = FIRST + index as u64 * STRIDE;
            let finished = disk.wait(handle);
            let covers_bad = (lba..lba + AREA).contains(&BAD_SECTOR);
            match finished.result {
                Err(failure) => {
                    assert!(covers_bad, "{name}: request {index} at {lba} failed: {failure}");
                    assert_eq!(failure.code(), IoReturn::IoError, "{name}: {failure}");
                    println!("{name}: request {index} (sectors {lba}+{AREA}) failed as it should: {failure}");
                }
                Ok(()) => {
                    assert!(!covers_bad, "{name}: the request over sector {BAD_SECTOR} succeeded");
                    let mut expected = vec![0; (AREA * 512) as usize];
                    pattern::fill(lba, *tag, &mut expected);
                    let got = finished.buffer.expect("buffer").to_vec(0, expected.len()).unwrap();
                    assert!(got == expected, "{name}: request {index} read wrong bytes");
                }
            }
        }
        let after = disk.stats();
        assert_eq!(after.failed - before.failed, 1, "{name}: exactly one request failed");
        let mut buffer = DmaBuffer::allocate(platform(), 512, IoDirection::In, Constraints::NONE).unwrap();
        disk.read(0, 1, &mut buffer, 0).unwrap_or_else(|failure| panic!("{name}: the disk stopped working: {failure}"));
    }
}
