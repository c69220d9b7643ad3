//! Keeping commands away from a drive that is still in one: the check before
//! every command, and the channel's software reset.
//!
//! A drive whose DMA command was cut short (the engine stopped at a timeout or a
//! stop, or by a bus-master error) stays in that command's data phase: BSY
//! clear, DRQ set. It ignores the next command, and when the engine is started
//! for that one it moves the OLD command's data through the NEW command's PRD
//! table, so a read of other sectors would end well holding the old ones. QEMU
//! finishes or cancels the command when the engine stops, so it never shows
//! this; real drives do. Hence: a channel whose command was cut short is reset
//! at once, and no command goes to a drive showing BSY or DRQ (it is reset
//! first, and refused if the reset does not bring it back).
//!
//! The software reset (ATA/ATAPI-6 and later): set SRST in the device control
//! register, hold it at least 5 µs, clear it, wait at least 2 ms, then wait for
//! BSY to clear (a drive may take up to 31 s). It resets both drives of the
//! channel and leaves drive 0 selected, so the driver selects its drive again
//! and looks at it. The same writes carry nIEN, as the channel's interrupt mode
//! needs.

use core::sync::atomic::Ordering;

use dmakit::dma::{AtaCause, Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::super::registers::*;
use super::{COMMAND_TIMEOUT_MS, Channel, Interrupts, waited_too_long};

/// SRST must stay set at least 5 µs; the waiter's shortest wait (1 ms) is more.
const RESET_HOLD_MS: u64 = 1;
/// After SRST is cleared the host waits at least 2 ms before it reads BSY.
const RESET_SETTLE_MS: u64 = 2;
/// How long a drive may stay busy after a reset (ATA allows 31 s).
const RESET_TIMEOUT_MS: u64 = 31_000;
/// How long a drive that has just ended a command may still show DRQ: the
/// engine can use up the table a moment before the drive ends the command.
const DATA_PHASE_GRACE_MS: u64 = 1;
/// BSY or DRQ: the drive is in a command.
const IN_COMMAND: u8 = STATUS_BUSY | STATUS_DRQ;

/// The device control byte for the channel's interrupt mode (nIEN set when
/// the waiter polls).
pub(super) fn device_control(interrupts: Interrupts) -> u8 {
    match interrupts {
        Interrupts::Enabled => 0,
        Interrupts::Disabled => CONTROL_NO_INTERRUPTS,
    }
}

impl<R: RegisterIo> Channel<R> {
    /// Selects `drive` (0 master, 1 slave; `lba_top` is LBA28's bits 24-27).
    pub(super) fn select(&self, drive: u8, lba_top: u8) {
        self.command_block.write8(DRIVE, DRIVE_LBA | drive << 4 | lba_top);
        self.selected.store(drive, Ordering::Relaxed);
        // Reading the alternate status four times gives the drive its 400 ns.
        for _ in 0..4 {
            self.control_block.read8(DEVICE_CONTROL);
        }
    }

    /// Waits until the drive is not busy; returns its (alternate) status.
    pub(super) fn wait_not_busy(&self) -> Result<u8, IoFailure> {
        self.wait_not_busy_for(COMMAND_TIMEOUT_MS)
    }

    fn wait_not_busy_for(&self, milliseconds: u64) -> Result<u8, IoFailure> {
        let mut status = 0;
        self.waiter
            .wait_until(milliseconds, &mut || {
                status = self.control_block.read8(DEVICE_CONTROL);
                status & STATUS_BUSY == 0
            })
            .map_err(waited_too_long)?;
        Ok(status)
    }

    /// The drive's status at the end of a command: BSY clear, and DRQ given a
    /// moment to clear. DRQ still set means the command did not end.
    pub(super) fn status_after_command(&self) -> Result<u8, IoFailure> {
        let mut status = self.wait_not_busy()?;
        if status & STATUS_DRQ != 0 {
            let _ = self.waiter.wait_until(DATA_PHASE_GRACE_MS, &mut || {
                status = self.control_block.read8(DEVICE_CONTROL);
                status & IN_COMMAND == 0
            });
        }
        Ok(status)
    }

    /// Before a command to `drive`: the drive selected now and then `drive`
    /// must be out of any command (BSY and DRQ clear: ATA's device selection
    /// protocol). If either is not, the channel is reset; if `drive` is still
    /// in a command after that, nothing may be issued to it.
    pub(super) fn ready_for_command(&self, drive: u8) -> Result<(), IoFailure> {
        let idle = || self.wait_not_busy().is_ok_and(|status| status & IN_COMMAND == 0);
        if idle() {
            // The same drive: the status just read was the target's. Selecting
            // it again would only cost register accesses on every command.
            if self.selected.load(Ordering::Relaxed) == drive {
                return Ok(());
            }
            self.select(drive, 0);
            if idle() {
                return Ok(());
            }
        }
        let status = self.control_block.read8(DEVICE_CONTROL);
        log::warn!("PiixAta: a drive is still in a command before drive {drive}'s (status {status:#04x}); resetting");
        self.software_reset(drive)
    }

    /// After `drive`'s command was cut short (its engine stopped before the
    /// drive ended it): resets the channel, so the drive cannot resume it
    /// through the next command's memory. A drive the reset does not bring
    /// back is refused its next command.
    pub(super) fn reset_after_cut_short(&self, drive: u8) {
        if let Err(failure) = self.software_reset(drive) {
            log::error!("PiixAta: drive {drive} after its command was cut short: {failure}");
        }
    }

    /// After `drive`'s command failed: a bus-master error cuts it short, and a
    /// drive still in it is cut short too.
    pub(super) fn recover_after_failure(&self, drive: u8, bus_status: u8) {
        let in_command = self.control_block.read8(DEVICE_CONTROL) & IN_COMMAND != 0;
        if bus_status & BM_ERROR != 0 || in_command {
            self.reset_after_cut_short(drive);
        }
    }

    /// After a quiesce, `reopen`: `drive` is checked (and reset if it is in a
    /// command) unless the other drive's command runs on the channel now.
    pub(super) fn reopen_drive(&self, drive: u8) -> Result<(), IoFailure> {
        let engine = self.engine.lock();
        if engine.in_flight.is_some() {
            // The check waits for the command before the drive's next one.
            return Ok(());
        }
        self.ready_for_command(drive)
    }

    /// The software reset of both drives, then `drive` selected again: `Err`
    /// if it stays in a command. The engine must be stopped (no DMA runs).
    fn software_reset(&self, drive: u8) -> Result<(), IoFailure> {
        let control = device_control(self.interrupt_mode);
        self.control_block.write8(DEVICE_CONTROL, control | CONTROL_SOFTWARE_RESET);
        let _ = self.waiter.wait_until(RESET_HOLD_MS, &mut || false);
        self.control_block.write8(DEVICE_CONTROL, control);
        let _ = self.waiter.wait_until(RESET_SETTLE_MS, &mut || false);
        // Drive 0 is selected now; the drive register may not be written
        // while it is busy. A timeout here shows in the check below.
        let _ = self.wait_not_busy_for(RESET_TIMEOUT_MS);
        self.select(drive, 0);
        let _ = self.wait_not_busy_for(RESET_TIMEOUT_MS);
        let status = self.control_block.read8(DEVICE_CONTROL);
        // What the engine and the drive signalled belonged to the command the
        // reset ended: clear the engine's bits, and read the status so that
        // INTRQ drops.
        self.bus_master.write8(BM_STATUS, BM_ERROR | BM_INTERRUPT);
        self.command_block.read8(STATUS);
        if status & IN_COMMAND != 0 {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::Ata(AtaCause::DriveNotIdle { status })));
        }
        Ok(())
    }
}
