//! The fake HBA's lying mode: a script of [`Lie`]s, one taken at each write
//! of PxCI, for the property test in `tests/hostile_tests.rs` that holds the
//! driver to believing nothing it cannot check. The fake still moves data
//! only through the PRDT it was given; the lies are about what its registers
//! and the command header say afterwards, and in lying mode it records every
//! range it wrote, for the test to hold against the segments the block layer
//! lent.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{FakeHba, State};

/// The PxCI or PxSACT register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// PxCI: commands issued.
    Issued,
    /// PxSACT: NCQ commands the drive holds.
    Active,
}

/// One lie, told about the commands run for the PxCI write it is taken at
/// (until the next one or a COMRESET, unless it says for ever).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// The commands run as an honest HBA's would.
    Honest,
    /// After the command, `slot`'s bit shows in `register` (the HBA does not
    /// run it): a slot the driver may never have issued, or the one just
    /// finished (finishing twice).
    Phantom {
        /// The bit's slot.
        slot: u8,
        /// Where it shows.
        register: Busy,
    },
    /// A queued command's PxSACT bit clears (its data moved) while its PxCI
    /// bit stays set: the drive finished what the HBA had not sent it.
    CompletedBeforeIssue,
    /// The command header's byte count (PRDBC) says this many bytes more
    /// than moved.
    ByteCountAbove(u32),
    /// PxTFD reads as this after the command.
    TaskFile(u32),
    /// PxIS gets these bits at the command (errors or not).
    Interrupts(u32),
    /// PxSERR gets these bits at the command.
    Link(u32),
    /// From this command on PxTFD reads as this, through every COMRESET
    /// (BSY or DRQ that never clears).
    TaskFileForever(u32),
    /// From this command on the port never stops (PxCMD.CR and FR stay set:
    /// the fake's `stuck`).
    NeverStops,
    /// The commands are taken and never answered (`silent`, for this write).
    Silent,
    /// This sector fails the commands that read or write it (`bad_lba`),
    /// from here on.
    BadSector(u64),
}

/// What the lying mode keeps.
#[derive(Default)]
pub struct Hostility {
    /// Whether lies are told and writes recorded.
    enabled: bool,
    /// Lies still to tell, the next last.
    script: Vec<Lie>,
    /// The lie told about the commands of the last PxCI write.
    current: Option<Lie>,
    /// A task file shown for ever.
    forever: Option<u32>,
    /// Every range of memory the fake wrote: (address, bytes).
    writes: Vec<(u64, u64)>,
}

impl Hostility {
    /// PxTFD as the driver reads it, for `real`.
    pub(super) fn task_file(&self, real: u32) -> u32 {
        match (self.forever, self.current) {
            (Some(task_file), _) => task_file,
            (None, Some(Lie::TaskFile(task_file))) => task_file,
            _ => real,
        }
    }

    /// PxCI (`Busy::Issued`) or PxSACT as the driver reads it, for `real`.
    pub(super) fn busy(&self, register: Busy, real: u32) -> u32 {
        match self.current {
            Some(Lie::Phantom { slot, register: shown }) if shown == register => real | 1 << slot,
            _ => real,
        }
    }

    /// Records a write of `bytes` at `address`, in lying mode.
    pub(super) fn wrote(&mut self, address: u64, bytes: u64) {
        if self.enabled {
            self.writes.push((address, bytes));
        }
    }

    /// A COMRESET: what was said about the commands it ended is over.
    pub(super) fn reset(&mut self) {
        self.current = None;
    }
}

impl FakeHba {
    /// Switches the lying mode on: `lies` are told in order, one per PxCI
    /// write (then honest again); what was recorded is forgotten.
    pub fn lie_with(&self, lies: &[Lie]) {
        let mut hostility = self.hostility.lock();
        *hostility = Hostility { enabled: true, script: lies.iter().rev().copied().collect(), ..Hostility::default() };
    }

    /// Takes the ranges written since the last call.
    pub fn take_writes(&self) -> Vec<(u64, u64)> {
        core::mem::take(&mut self.hostility.lock().writes)
    }

    /// PxCI was written: the next lie is taken, and the honest fake's knobs
    /// set for the commands this write runs.
    pub(super) fn next_lie(&self) {
        let mut hostility = self.hostility.lock();
        if !hostility.enabled {
            return;
        }
        let lie = hostility.script.pop().unwrap_or(Lie::Honest);
        hostility.current = Some(lie);
        match lie {
            Lie::TaskFileForever(task_file) => hostility.forever = Some(task_file),
            Lie::NeverStops => self.stuck.store(true, Ordering::Relaxed),
            Lie::BadSector(lba) => *self.bad_lba.lock() = Some(lba),
            _ => {}
        }
        self.silent.store(lie == Lie::Silent, Ordering::Relaxed);
    }

    /// The command in `slot` ran: what the lie says about it is told.
    pub(super) fn lie_after(&self, state: &mut State, slot: usize) {
        let Some(lie) = self.hostility.lock().current else {
            return;
        };
        let port = &mut state.port;
        match lie {
            Lie::CompletedBeforeIssue if port.sact & 1 << slot == 0 => port.ci |= 1 << slot,
            Lie::ByteCountAbove(extra) => {
                let header = self.read_header(state, slot);
                self.write_bytes_moved(state, slot, u64::from(header.bytes_moved) + u64::from(extra));
            }
            Lie::Interrupts(bits) => port.is |= bits,
            Lie::Link(bits) => port.serr |= bits,
            _ => {}
        }
    }
}
