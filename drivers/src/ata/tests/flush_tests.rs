//! Flush on a PIIX IDE channel: FLUSH CACHE EXT (EAh) on a 48-bit drive,
//! FLUSH CACHE (E7h) on a 28-bit one, a no-data command (no PRD table, no
//! engine) that is over when the drive drops BSY; a drive fault fails it
//! with the drive's status; a drive without a write cache is never sent one.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::block::{BlockDevice, BlockOperation, BlockRequest, HardwareQueue, WriteCache};
use dmakit::dma::{AtaCause, Cause, IoDirection, IoReturn};

use super::{Addressing, CacheFlush, disk, drive, drive_with, expected, high, setup};
use crate::ata::registers::*;

#[test]
fn a_48_bit_drive_gets_flush_cache_ext_after_the_write_with_no_table_and_no_engine() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let disk = disk(&setup, 0);
    assert_eq!(disk.hardware().shape().write_cache, WriteCache::Volatile);
    let mut source = high(setup.platform, 4 * 512, IoDirection::Out);
    source.write_bytes(0, &[0x99; 4 * 512]).unwrap();
    disk.write(20, 4, &mut source, 0).unwrap();
    let table_before = setup.fake.prd_table();
    disk.flush().unwrap();
    let commands: Vec<u8> = setup.fake.commands.lock().clone();
    assert_eq!(commands[commands.len() - 2..], [COMMAND_WRITE_DMA, COMMAND_FLUSH_CACHE_EXT]);
    let (table, command) = setup.channel.last_transfer();
    assert_eq!((table.len(), command), (0, COMMAND_FLUSH_CACHE_EXT), "no PRD entries for a flush");
    assert_eq!(setup.fake.prd_table(), table_before, "the controller was given no table for it");
    assert_eq!(disk.stats().flushes, 1);
}

#[test]
fn a_28_bit_drive_gets_flush_cache() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    disk.flush().unwrap();
    assert_eq!(setup.fake.commands.lock().last(), Some(&COMMAND_FLUSH_CACHE));
}

#[test]
fn a_drive_without_a_write_cache_is_never_sent_a_flush() {
    let setup = setup(Some(drive_with(Addressing::Lba48, CacheFlush::NoCache)), None);
    let disk = disk(&setup, 0);
    assert_eq!(disk.hardware().shape().write_cache, WriteCache::WriteThrough);
    disk.flush().unwrap();
    let flushes = [COMMAND_FLUSH_CACHE, COMMAND_FLUSH_CACHE_EXT];
    assert!(!setup.fake.commands.lock().iter().any(|command| flushes.contains(command)));
}

#[test]
fn a_flush_is_over_only_when_the_drive_drops_busy_and_holds_the_channel_until_then() {
    let setup = setup(Some(drive(Addressing::Lba48)), Some(drive(Addressing::Lba48)));
    let (master, slave) = (disk(&setup, 0), disk(&setup, 1));
    setup.fake.slow_flush.store(true, Ordering::Relaxed);
    let flush = master.submit_flush().unwrap();
    master.run_work_loop();
    assert!(!flush.is_finished(), "the drive is still busy flushing");
    // The other drive's read waits: the channel runs one command at a time.
    let target = high(setup.platform, 512, IoDirection::In);
    let reading = slave.submit(BlockRequest::new(BlockOperation::Read, 5, 1, target, 0)).unwrap();
    assert_eq!(slave.stats().queued, 1, "told Busy, it waits in line");
    setup.fake.finish_flush();
    let finished = master.wait(flush);
    assert_eq!((finished.result, finished.buffer.is_none()), (Ok(()), true));
    let read = slave.wait(reading);
    assert_eq!(read.buffer.unwrap().to_vec(0, 512).unwrap(), expected(5, 1));
}

#[test]
fn a_device_fault_on_a_flush_fails_it_with_the_drives_status_and_the_disk_runs_on() {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    let disk = disk(&setup, 0);
    setup.fake.device_fault.store(true, Ordering::Relaxed);
    let failure = disk.flush().unwrap_err();
    assert_eq!(failure.code(), IoReturn::IoError);
    assert!(matches!(failure.cause(), Cause::Ata(AtaCause::DeviceFault { .. })), "{failure}");
    setup.fake.device_fault.store(false, Ordering::Relaxed);
    let mut target = high(setup.platform, 2 * 512, IoDirection::In);
    disk.read(7, 2, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 2 * 512).unwrap(), expected(7, 2));
    disk.flush().unwrap();
}
