//! `with_transfer`: one whole transfer in one call, bind, prepare, hand the
//! segments to the caller's closure, complete and unbind, built on the
//! command's public calls.

use alloc::sync::Arc;

use super::address::Segment;
use super::{IoDmaCommand, IoMemoryDescriptor, IoReturn, SyncOptions, TransferOptions};

impl IoDmaCommand {
    /// One whole transfer in one call: binds `descriptor`, prepares
    /// `[offset, offset + length)` (0 = to the end), forces double buffering if
    /// `options` ask, hands the device segments to `transfer`, then completes
    /// (copying bounced data back for `In`) and unbinds, whatever `transfer`
    /// returned. With `options.restrict`, the transfer runs on a temporary command
    /// whose specification is this one's tightened by the restriction. `Busy` if
    /// this command is prepared already: its caller's prepare is left alone.
    #[track_caller]
    pub fn with_transfer<T>(
        &mut self,
        descriptor: Arc<IoMemoryDescriptor>,
        offset: u64,
        length: u64,
        options: &TransferOptions,
        transfer: impl FnOnce(&[Segment]) -> Result<T, IoReturn>,
    ) -> Result<T, IoReturn> {
        if self.is_prepared() {
            return Err(IoReturn::Busy);
        }
        let mut restricted;
        let command = match options.restrict {
            Some(restrict) => {
                restricted = IoDmaCommand::new(self.platform(), self.specification().restricted_by(&restrict))?;
                &mut restricted
            }
            None => self,
        };
        command.set_memory_descriptor(descriptor, false)?;
        let result = command.prepare(offset, length).and_then(|()| {
            if options.force_double_buffer {
                // The move fills the new buffer from the descriptor: no `Out` needed.
                command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER)?;
            }
            transfer(command.segments())
        });
        let completed = command.clear_memory_descriptor(true);
        let value = result?;
        completed?;
        Ok(value)
    }
}
