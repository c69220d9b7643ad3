//! `CommandPool`: a device's DMA commands, made once, one per queue slot
//! (IOKit's `IOCommandPool`; FreeBSD gives each slot one busdma map). The block
//! layer keeps a disk's pool, in [`super::TransferSlots`]; drivers have none.
//!
//! A device that keeps many requests in flight needs one `IoDmaCommand` per
//! request: a command serves one transfer at a time. Making them when the disk
//! starts, and never while requests run, means a request never fails for lack of
//! a command, and the pool's size is the queue depth. A request takes its slot's
//! command out of the pool (it moves into the `DmaTransfer`) and puts it back
//! when the transfer is completed.

use alloc::vec::Vec;
use core::panic::Location;

use spin::Mutex;

use super::failure::{Cause, IoFailure};
use super::misuse::{Misuse, MisuseReport};
use super::{DmaPlatform, IoDmaCommand, IoReturn, Specification};

/// One command per slot; a slot's command is either in the pool or in a transfer.
pub struct CommandPool {
    platform: &'static dyn DmaPlatform,
    slots: Mutex<Vec<Option<IoDmaCommand>>>,
}

impl core::fmt::Debug for CommandPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CommandPool").field("depth", &self.depth()).field("out", &self.taken()).finish()
    }
}

impl CommandPool {
    /// `depth` commands for `specification` on `platform` (`BadArgument` for a
    /// depth of 0, or the command's own error).
    pub fn new(
        platform: &'static dyn DmaPlatform,
        specification: Specification,
        depth: usize,
    ) -> Result<CommandPool, IoFailure> {
        if depth == 0 {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::EmptyCommandPool));
        }
        let mut slots = Vec::with_capacity(depth);
        for _ in 0..depth {
            let command = IoDmaCommand::new(platform, specification)
                .map_err(|code| IoFailure::new(code, Cause::BadSpecification("the pool's commands")))?;
            slots.push(Some(command));
        }
        Ok(CommandPool { platform, slots: Mutex::new(slots) })
    }

    /// Commands in the pool, in or out: the queue depth.
    pub fn depth(&self) -> usize {
        self.slots.lock().len()
    }

    /// Commands out of the pool now (serving transfers).
    pub fn taken(&self) -> usize {
        self.slots.lock().iter().filter(|slot| slot.is_none()).count()
    }

    /// Takes slot `slot`'s command: `BadArgument` past the depth, `Busy` if it is
    /// out already (the slot has a request in flight).
    pub fn take(&self, slot: usize) -> Result<IoDmaCommand, IoFailure> {
        let mut slots = self.slots.lock();
        let depth = slots.len();
        let entry =
            slots.get_mut(slot).ok_or(IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot, depth }))?;
        entry.take().ok_or(IoFailure::new(IoReturn::Busy, Cause::SlotTaken { slot }))
    }

    /// Puts `command` back as slot `slot`'s. `Busy` if the slot holds a command
    /// already, or if this one is still bound to a buffer (it would carry that
    /// buffer into the next request); the slot then stays empty.
    pub fn give_back(&self, slot: usize, command: IoDmaCommand) -> Result<(), IoFailure> {
        let mut slots = self.slots.lock();
        let depth = slots.len();
        let entry =
            slots.get_mut(slot).ok_or(IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot, depth }))?;
        if entry.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::CommandInPoolAlready { slot }));
        }
        if !command.is_idle() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::CommandStillBound));
        }
        *entry = Some(command);
        Ok(())
    }

    /// At driver stop: reports each command still out of the pool (its transfer
    /// was never completed) as [`Misuse::PreparedAtStop`] and says how many.
    #[track_caller]
    pub fn check_stopped(&self) -> usize {
        let out = self.taken();
        for _ in 0..out {
            self.platform.accounting().misuse().report(MisuseReport {
                misuse: Misuse::PreparedAtStop,
                command: None,
                descriptor: None,
                location: Location::caller(),
            });
        }
        out
    }
}
