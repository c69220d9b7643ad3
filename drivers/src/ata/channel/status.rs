//! How a command ended: the engine's status and the drive's, read at its end,
//! as a result with the typed cause the block layer passes on.

use dmakit::dma::{AtaCause, Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::super::registers::*;
use super::Channel;

impl<R: RegisterIo> Channel<R> {
    /// The command's result from the engine's status (`bus_status`, read when
    /// it was stopped) and the drive's.
    pub(super) fn check_statuses(&self, bus_status: u8) -> Result<(), IoFailure> {
        if bus_status & BM_ERROR != 0 {
            let cause = Cause::Ata(AtaCause::BusMasterError { bus_master: bus_status });
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        if bus_status & BM_ACTIVE != 0 {
            // The drive finished while the engine still had PRD entries to fill:
            // fewer bytes moved than asked, and the count is not known.
            let cause = Cause::Ata(AtaCause::ShortTransfer);
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        let drive_status = self.status_after_command()?;
        // Reading the status (not the alternate one) acknowledges the drive's interrupt.
        self.command_block.read8(STATUS);
        if drive_status & STATUS_FAULT != 0 {
            let cause = Cause::Ata(AtaCause::DeviceFault { status: drive_status });
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        if drive_status & STATUS_ERROR != 0 {
            let error = self.command_block.read8(ERROR);
            // ATA gives every error a bit in the error register: ERR with
            // none set is a status no drive shows, so its ERR is not taken
            // for a drive's word either.
            let cause = match error {
                0 => AtaCause::ErrorRegisterEmpty { status: drive_status },
                _ => AtaCause::DriveError { status: drive_status, error },
            };
            return Err(IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
        }
        if drive_status & STATUS_DRQ != 0 {
            let cause = Cause::Ata(AtaCause::DataPhaseUnfinished { status: drive_status });
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        if drive_status & STATUS_READY == 0 {
            // A present drive is ready after every command it ends: without
            // DRDY (0 is also what a channel with no drive left reads) its
            // "no error" is not believed.
            let cause = Cause::Ata(AtaCause::DriveNotReady { status: drive_status });
            return Err(IoFailure::new(IoReturn::IoError, cause));
        }
        Ok(())
    }
}
