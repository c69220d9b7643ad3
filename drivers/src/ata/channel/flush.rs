//! A flush on an IDE channel: FLUSH CACHE EXT (EAh) or FLUSH CACHE (E7h), a
//! no-data command. The drive is given no PRD table and the engine is not
//! started (nothing moves, so no memory is lent); the drive is busy while it
//! writes its cache to the medium and drops BSY (with an interrupt) when done,
//! or reports ERR, which `check_statuses` reads as for any command.

use dmakit::dma::{AtaCause, Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;

use super::super::identify::CacheFlush;
use super::super::registers::*;
use super::{Channel, Ending, Engine, Running};

impl<R: RegisterIo> Channel<R> {
    /// Issues `flush`'s command to `drive` if the channel is free (`Busy`
    /// while a command runs on it). A drive without a cache has no command:
    /// the block layer never asks it (its shape says write-through).
    pub(super) fn program_flush(&self, drive: u8, flush: CacheFlush) -> Result<(), IoFailure> {
        let mut engine = self.engine.lock();
        let Engine { prd_table, last_table, last_command, in_flight } = &mut *engine;
        if in_flight.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Ata(AtaCause::ChannelBusy)));
        }
        // Stopped for good: no command goes to the drive any more.
        prd_table.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped))?;
        let Some(command) = flush.command() else {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::Ata(AtaCause::NoWriteCache)));
        };
        self.ready_for_command(drive)?;
        // The LBA and count registers mean nothing to a flush.
        self.select(drive, 0);
        last_table.clear();
        *last_command = command;
        self.command_block.write8(COMMAND, command);
        *in_flight = Some(Running { drive, lba: 0, sectors: 0, bytes: 0, ending: Ending::DriveNotBusy });
        Ok(())
    }
}
