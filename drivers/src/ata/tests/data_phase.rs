//! A drive left in a command's data phase: what a real drive does and QEMU does
//! not. Its DMA command cut short (a timeout, a stop, a bus-master error), it
//! keeps waiting to move that command's data, ignores the next command, and moves
//! the OLD data through the NEW command's PRD table once the engine starts again.

use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, QueuedDisk};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{AtaCause, Cause, IoDirection, IoFailure, IoReturn};

use super::super::fake::{Block, FakeChannel, FakePorts};
use super::super::identify::Addressing;
use super::super::registers::*;
use super::super::{AtaDisk, Channel, Interrupts};
use super::{OLD_BYTE, Setup, disk, drive, expected, high, high_with_old_bytes, setup};
use crate::test_support::WAITER;

/// Reads `sectors` from `lba` into a buffer of old bytes; a read that ends `Ok`
/// must hold exactly those sectors.
fn read_checked(setup: &Setup, disk: &QueuedDisk<AtaDisk<FakePorts>>, lba: u64, sectors: u64) -> Result<(), IoFailure> {
    let length = sectors * 512;
    let mut target = high_with_old_bytes(setup.platform, length);
    let result = disk.read(lba, sectors, &mut target, 0);
    let bytes = target.to_vec(0, length as usize).unwrap();
    // Every pattern sector starts with its own number.
    let held = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    match result {
        Ok(()) => assert!(
            bytes == expected(lba, sectors),
            "a read of sectors {lba}+{sectors} ended Ok holding other data (its first sector is sector {held})"
        ),
        Err(_) => assert_eq!(bytes, vec![OLD_BYTE; length as usize], "a failed read brought nothing back"),
    }
    result
}

#[test]
fn a_read_after_a_timed_out_one_gets_its_own_sectors() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    setup.fake.keeps_stopped_command.store(true, Ordering::Relaxed);
    setup.fake.late.store(true, Ordering::Relaxed);
    let failure = read_checked(&setup, &disk, 16, 8).unwrap_err();
    assert_eq!(failure.code(), IoReturn::Timeout);
    let resets_at_the_timeout = setup.fake.resets.load(Ordering::Relaxed);
    setup.fake.late.store(false, Ordering::Relaxed);
    disk.start().unwrap();
    read_checked(&setup, &disk, 100, 8).expect("the drive was reset, so the read runs");
    assert_eq!(resets_at_the_timeout, 1, "the quiesce reset the channel after the stop");
}

#[test]
fn a_drive_the_reset_cannot_bring_back_is_not_started_again() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    setup.fake.keeps_stopped_command.store(true, Ordering::Relaxed);
    *setup.fake.hung_drive.lock() = Some(0);
    setup.fake.late.store(true, Ordering::Relaxed);
    assert_eq!(read_checked(&setup, &disk, 16, 8).unwrap_err().code(), IoReturn::Timeout);
    setup.fake.late.store(false, Ordering::Relaxed);
    // The quiesce's reset did nothing: `start` finds the drive still in the command.
    let status = STATUS_READY | STATUS_DRQ;
    let refused = IoFailure::new(IoReturn::NotReady, Cause::Ata(AtaCause::DriveNotIdle { status }));
    assert_eq!(disk.start(), Err(refused), "start on a drive still in its command");
    assert_eq!(read_checked(&setup, &disk, 100, 8).unwrap_err().cause(), Cause::DriverStopped, "still stopped");
    *setup.fake.hung_drive.lock() = None;
    disk.start().expect("this time the reset brings the drive back");
    read_checked(&setup, &disk, 100, 8).unwrap();
}

#[test]
fn a_read_after_a_bus_master_error_gets_its_own_sectors() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    setup.fake.keeps_stopped_command.store(true, Ordering::Relaxed);
    setup.fake.bus_error.store(true, Ordering::Relaxed);
    let failure = read_checked(&setup, &disk, 0, 8).unwrap_err();
    let cause = Cause::Ata(AtaCause::BusMasterError { bus_master: BM_ERROR });
    assert_eq!(failure, IoFailure::new(IoReturn::IoError, cause));
    let resets_at_the_error = setup.fake.resets.load(Ordering::Relaxed);
    setup.fake.bus_error.store(false, Ordering::Relaxed);
    read_checked(&setup, &disk, 200, 8).expect("the drive was reset, so the read runs");
    assert_eq!(resets_at_the_error, 1, "the channel was reset when the error was collected");
    assert_eq!(setup.fake.resets.load(Ordering::Relaxed), 1, "and not again before the next read");
}

/// A channel on `fake` whose interrupts are `interrupts`.
fn channel_with(
    platform: &'static SimulatedPlatform,
    fake: &Arc<FakeChannel>,
    interrupts: Interrupts,
) -> Arc<Channel<FakePorts>> {
    let port = |block| FakePorts(fake.clone(), block);
    let channel =
        Channel::new(port(Block::Command), port(Block::Control), port(Block::BusMaster), platform, &WAITER, interrupts);
    Arc::new(channel.unwrap())
}

#[test]
fn a_drive_showing_drq_before_a_command_is_reset_first() {
    for (interrupts, control) in [(Interrupts::Enabled, 0), (Interrupts::Disabled, CONTROL_NO_INTERRUPTS)] {
        // The slave, with the master selected: the driver selects it, and
        // selects it again after the reset (which selects the master).
        let platform = SimulatedPlatform::leak(1024);
        let fake = FakeChannel::new(platform, Some(drive(Addressing::Lba28)), Some(drive(Addressing::Lba28)));
        let channel = channel_with(platform, &fake, interrupts);
        let identity = channel.identify(1).unwrap().unwrap();
        let slave = QueuedDisk::new(AtaDisk::new(channel.clone(), 1, identity), &WAITER).unwrap();
        channel.identify(0).unwrap().unwrap();
        let setup = Setup { platform, fake: fake.clone(), channel };
        fake.stall(1, 40, 8);
        read_checked(&setup, &slave, 100, 8).expect("the drive was reset before the command");
        assert_eq!(fake.resets.load(Ordering::Relaxed), 1, "{interrupts:?}: one reset, before the command");
        assert_eq!(fake.device_control(), control, "{interrupts:?}: nIEN as the channel's interrupts need");
        assert_eq!(fake.commands.lock().last(), Some(&COMMAND_READ_DMA));
    }
}

#[test]
fn a_drive_that_stays_in_its_data_phase_through_a_reset_is_refused() {
    // The slave hangs; the reset brings back the master and selects it, so
    // the driver must select the slave again to see that it did not come back.
    let setup = setup(Some(drive(Addressing::Lba28)), Some(drive(Addressing::Lba28)));
    let slave = disk(&setup, 1);
    *setup.fake.hung_drive.lock() = Some(1);
    setup.fake.stall(1, 40, 8);
    let commands = setup.fake.commands.lock().len();
    let failure = read_checked(&setup, &slave, 100, 8).unwrap_err();
    let status = STATUS_READY | STATUS_DRQ;
    assert_eq!(failure, IoFailure::new(IoReturn::NotReady, Cause::Ata(AtaCause::DriveNotIdle { status })));
    assert_eq!(setup.fake.commands.lock().len(), commands, "no command was written to the drive");
    assert!(setup.fake.last_table.lock().is_empty(), "the engine was never started");
    assert_eq!(setup.fake.resets.load(Ordering::Relaxed), 1, "one reset was tried first");
}

#[test]
fn stopping_one_drive_leaves_the_other_drives_read_running() {
    // The master's stop finds the slave's read on the channel's engine: the
    // master holds nothing in the device, so the engine and the read run on.
    let setup = setup(Some(drive(Addressing::Lba28)), Some(drive(Addressing::Lba28)));
    let (master, slave) = (disk(&setup, 0), disk(&setup, 1));
    setup.fake.keeps_stopped_command.store(true, Ordering::Relaxed);
    setup.fake.late.store(true, Ordering::Relaxed);
    let length = 8 * 512;
    let buffer = high(setup.platform, length, IoDirection::In);
    let handle = slave.submit(BlockRequest::new(BlockOperation::Read, 16, 8, buffer, 0)).unwrap();
    master.stop().unwrap();
    assert_eq!(setup.fake.finish_late(), 8 * 512, "the slave's DMA was still running after the master's stop");
    setup.fake.late.store(false, Ordering::Relaxed);
    let finished = slave.wait(handle);
    finished.result.expect("the slave's read was not cut short");
    let bytes = finished.buffer.expect("completed, not abandoned").to_vec(0, length as usize).unwrap();
    assert_eq!(bytes, expected(16, 8), "the slave's own sectors");
    assert_eq!(setup.fake.resets.load(Ordering::Relaxed), 0, "nothing to reset");
    read_checked(&setup, &slave, 300, 8).expect("the slave reads on");
}
