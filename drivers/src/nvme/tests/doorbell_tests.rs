//! Doorbells spaced by CAP.DSTRD: every doorbell the driver rings (admin and
//! I/O queues) is on the stride's grid, which the fake checks, and a register
//! window that does not reach the highest one is refused at the start.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, QueuedDisk};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, NvmeCause};
use dmakit::pattern;

use super::super::fake::{BLOCK, FAKE_REGISTER_BYTES, FakeNvme, FakeRegisters};
use super::super::structures::{IO_READ, IO_WRITE, PSDT_PRP, PSDT_SGL};
use super::super::{Controller, NvmeDisk, NvmeOptions};
use super::{BLOCKS, Setup, buffer, expected};
use crate::test_support::WAITER;

fn fake_with_stride(platform: &'static SimulatedPlatform, stride: u8) -> Arc<FakeNvme> {
    let mut image = vec![0; (BLOCKS * BLOCK) as usize];
    pattern::fill(0, b'N', &mut image);
    FakeNvme::with_stride(platform, image, 64, true, stride)
}

#[test]
fn io_runs_through_doorbells_sixteen_bytes_apart_with_dstrd_2() {
    let platform = SimulatedPlatform::leak(2048);
    let fake = fake_with_stride(platform, 2);
    let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap();
    let setup = Setup { platform, fake, disk: QueuedDisk::new(disk, &WAITER).unwrap() };
    for (blocks, path) in [(8, PSDT_PRP), (200, PSDT_SGL)] {
        let mut source = buffer(&setup, blocks);
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i % 253) as u8).collect();
        source.write_bytes(0, &data).unwrap();
        setup.disk.write(40, blocks, &mut source, 0).unwrap();
        assert!(setup.fake.image.lock()[40 * 512..(40 + blocks as usize) * 512] == data, "{blocks} blocks written");
        let mut target = buffer(&setup, blocks);
        setup.disk.read(2000, blocks, &mut target, 0).unwrap();
        assert!(target.to_vec(0, (blocks * BLOCK) as usize).unwrap() == expected(2000, blocks), "{blocks} blocks");
        let log = setup.fake.log.lock();
        let io: Vec<_> =
            log.iter().filter(|entry| entry.0 == 1).rev().take(2).map(|entry| (entry.1, entry.2)).collect();
        assert_eq!(io, [(IO_READ, path), (IO_WRITE, path)], "{blocks} blocks");
    }
    // Many in a row: the completion head doorbell wraps the ring too.
    let mut target = buffer(&setup, 8);
    for round in 0..150 {
        setup.disk.read(1000 + round, 8, &mut target, 0).unwrap();
    }
    assert!(target.to_vec(0, 8 * 512).unwrap() == expected(1149, 8), "the last read's bytes");
    // And a stop and start rings the admin doorbells again on the grid.
    setup.disk.stop().unwrap();
    setup.disk.start().unwrap();
    setup.disk.read(7, 8, &mut target, 0).unwrap();
    assert!(target.to_vec(0, 8 * 512).unwrap() == expected(7, 8), "read after the start");
}

#[test]
fn a_register_window_short_of_the_highest_doorbell_is_refused_at_the_start() {
    let platform = SimulatedPlatform::leak(16);
    let start = |stride: u8, mapped: u64| {
        let fake = fake_with_stride(platform, stride);
        Controller::new(Arc::new(FakeRegisters(fake)), mapped, &WAITER).map(drop).map_err(|failure| failure.cause())
    };
    // DSTRD 2: CQ 1's head doorbell is at 0x1030, its last byte at 0x1033.
    assert_eq!(start(2, 0x1034), Ok(()));
    let short = NvmeCause::DoorbellsOutsideRegisters { needed: 0x1034, mapped: 0x1033 };
    assert_eq!(start(2, 0x1033), Err(Cause::Nvme(short)));
    // DSTRD 12 still lies within what a 16-bit offset reaches; 13 does not,
    // however much is mapped.
    assert_eq!(start(12, 1 << 16), Ok(()));
    let far = NvmeCause::DoorbellsOutsideRegisters { needed: 0x1000 + 3 * (4 << 13) + 4, mapped: 1 << 20 };
    assert_eq!(start(13, 1 << 20), Err(Cause::Nvme(far)));
}
