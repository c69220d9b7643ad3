//! The fake controller's hostile mode: completions that lie (a command id
//! never issued or already completed, one posted before its command was rung
//! in, another queue, a submission head out of order, the previous pass's
//! phase tag, a status that cannot occur), commands it keeps and never
//! completes, and a watch over every data byte it moves: each run its PRPs or
//! SGL describe must lie in memory the test says is lent to it right now.
//!
//! It drives commands held by `hold` (the test decides when each runs), so a
//! property test can interleave submissions, lies and collects at will.
//!
//! One lie is left out, because no driver can see it: a completion naming a
//! command the controller fetched and still holds, posted before its data
//! moved, looks exactly like the real one. A made-up completion for a held
//! command is not posted, and one held command's answer never names another.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::super::registers::{CSTS_FATAL, CSTS_READY};
use super::super::structures::{CompletionEntry, SubmissionEntry};
use super::walk::Run;
use super::{FakeNvme, State};

/// Which phase tag a posted completion carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PhaseTag {
    /// The ring's current pass: the driver sees a new entry.
    Current,
    /// The previous pass's: the driver takes the slot for an old one.
    Previous,
}

/// How the completion of a held command differs from the honest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// As QEMU posts it.
    Honest,
    /// Posted twice: the second names a command already completed.
    Twice,
    /// It names this command id instead.
    CommandId(u16),
    /// It names this submission queue instead.
    Queue(u16),
    /// It reports this submission head instead.
    Head(u16),
    /// Its status field is this (the phase tag is set as usual).
    Status(u16),
    /// It carries the previous pass's phase tag: the driver never sees it.
    PreviousPhase,
}

/// A completion posted on I/O queue 1 for no command the controller ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forged {
    /// The command id it names.
    pub command_id: u16,
    /// The submission head it reports; `None`: the controller's own.
    pub head: Option<u16>,
    /// Its status field.
    pub status: u16,
}

/// What the hostile mode watches: the memory lent to the controller, and
/// every run it moved outside it.
#[derive(Debug, Default)]
pub struct Hostile {
    /// Physical ranges (address, bytes) the controller may move data through.
    pub lent: Vec<Run>,
    /// Each data run outside `lent`, described.
    pub violations: Vec<String>,
    /// CC.EN 0 -> 1 sets CSTS.CFS with CSTS.RDY: it dies as it starts.
    pub fatal_at_enable: bool,
    /// Completions to post at the next I/O doorbells, one each: for commands
    /// the driver may be about to ring in.
    pub at_doorbell: VecDeque<Forged>,
}

impl Hostile {
    /// Whether every byte of `run` lies in a lent range.
    fn covers(&self, (address, length): Run) -> bool {
        let (mut at, end) = (address, address + length);
        while at < end {
            match self.lent.iter().find(|(start, bytes)| (*start..start + bytes).contains(&at)) {
                Some((start, bytes)) => at = start + bytes,
                None => return false,
            }
        }
        true
    }
}

impl FakeNvme {
    /// Turns the hostile mode on: I/O commands are held for the test to run
    /// ([`FakeNvme::run_held`]), and data moves only through `lent`, which
    /// the test keeps up to date with [`FakeNvme::lend`].
    pub fn turn_hostile(&self) {
        let fatal_at_enable = self.hostile.lock().as_ref().is_some_and(|hostile| hostile.fatal_at_enable);
        *self.hostile.lock() = Some(Hostile { fatal_at_enable, ..Hostile::default() });
        self.hold.store(true, core::sync::atomic::Ordering::Relaxed);
    }

    /// From the next enable on, the controller dies as it gets ready
    /// (CSTS.CFS), whether hostile otherwise or not.
    pub fn die_at_enable(&self) {
        self.hostile.lock().get_or_insert_with(Hostile::default).fatal_at_enable = true;
    }

    /// The ranges the controller may move data through from now on.
    pub fn lend(&self, lent: Vec<Run>) {
        if let Some(hostile) = self.hostile.lock().as_mut() {
            hostile.lent = lent;
        }
    }

    /// Every data run that lay outside what was lent, described.
    pub fn violations(&self) -> Vec<String> {
        self.hostile.lock().as_ref().map_or_else(Vec::new, |hostile| hostile.violations.clone())
    }

    /// Records each of `runs` (command `entry`'s data) that lies outside what
    /// is lent: the driver gave the controller memory it did not own, or
    /// took back memory the controller still held.
    pub(super) fn watch_runs(&self, entry: &SubmissionEntry, runs: &[Run]) {
        let mut hostile = self.hostile.lock();
        let Some(hostile) = hostile.as_mut() else { return };
        for &run in runs {
            if !hostile.covers(run) {
                let (address, length) = run;
                let opcode = entry.opcode;
                let command = entry.command_id;
                hostile.violations.push(format!(
                    "command {command} (opcode {opcode}) moved {length} bytes at {address:#x}, outside the lent memory"
                ));
            }
        }
    }

    /// Runs the held command at `pick` (modulo how many are held) and posts
    /// its completion as `answer` says; `false` when nothing is held.
    pub fn run_held(&self, pick: usize, answer: Answer) -> bool {
        let mut state = self.state.lock();
        if state.held.is_empty() {
            return false;
        }
        let index = pick % state.held.len();
        let (entry, _) = state.held.remove(index);
        let result = self.execute_io(&entry);
        let head = state.submissions[1].map_or(0, |ring| ring.head);
        let status = result.err().map_or(0, |status| status.encode(true));
        let honest = CompletionEntry {
            submission_head: head,
            submission_queue: 1,
            command_id: entry.command_id,
            status,
            ..CompletionEntry::default()
        };
        let (completion, phase) = match answer {
            Answer::Honest | Answer::Twice => (honest, PhaseTag::Current),
            Answer::CommandId(command_id) if !holds(&state, command_id) => {
                (CompletionEntry { command_id, ..honest }, PhaseTag::Current)
            }
            Answer::CommandId(_) => (honest, PhaseTag::Current),
            Answer::Queue(submission_queue) => (CompletionEntry { submission_queue, ..honest }, PhaseTag::Current),
            Answer::Head(submission_head) => (CompletionEntry { submission_head, ..honest }, PhaseTag::Current),
            Answer::Status(status) => (CompletionEntry { status, ..honest }, PhaseTag::Current),
            Answer::PreviousPhase => (honest, PhaseTag::Previous),
        };
        self.push(&mut state, 1, completion, phase);
        if answer == Answer::Twice {
            self.push(&mut state, 1, completion, PhaseTag::Current);
        }
        true
    }

    /// Forgets the held command at `pick`: it never completes.
    pub fn lose_held(&self, pick: usize) {
        let mut state = self.state.lock();
        if !state.held.is_empty() {
            let index = pick % state.held.len();
            state.held.remove(index);
        }
    }

    /// CSTS once CC.EN 0 -> 1 made it ready.
    pub(super) fn status_at_enable(&self) -> u32 {
        match self.hostile.lock().as_ref().is_some_and(|hostile| hostile.fatal_at_enable) {
            true => CSTS_READY | CSTS_FATAL,
            false => CSTS_READY,
        }
    }

    /// Posts `forged` on I/O queue 1, though no command asked for it.
    pub fn forge(&self, forged: Forged) {
        self.forge_into(&mut self.state.lock(), forged);
    }

    /// Posts `forged` inside a later I/O doorbell write, right after fetching
    /// the next command it rang in (with the controller's own head): before
    /// the driver can look, and maybe for a command it rings in only later.
    pub fn forge_at_next_doorbell(&self, forged: Forged) {
        if let Some(hostile) = self.hostile.lock().as_mut() {
            hostile.at_doorbell.push_back(forged);
        }
    }

    /// At an I/O doorbell: the next completion waiting for one, if any.
    pub(super) fn forge_at_doorbell(&self, state: &mut State) {
        let forged = self.hostile.lock().as_mut().and_then(|hostile| hostile.at_doorbell.pop_front());
        // With its own head: a made-up head could pass the entry a command
        // not yet rung in will be written at, the lie no driver can see.
        if let Some(forged) = forged {
            self.forge_into(state, Forged { head: None, ..forged });
        }
    }

    fn forge_into(&self, state: &mut State, forged: Forged) {
        if holds(state, forged.command_id) {
            return;
        }
        let head = forged.head.unwrap_or_else(|| state.submissions[1].map_or(0, |ring| ring.head));
        let completion = CompletionEntry {
            submission_head: head,
            submission_queue: 1,
            command_id: forged.command_id,
            status: forged.status,
            ..CompletionEntry::default()
        };
        self.push(state, 1, completion, PhaseTag::Current);
    }
}

/// Whether the controller holds (fetched, not yet completed) command `command_id`.
fn holds(state: &State, command_id: u16) -> bool {
    state.held.iter().any(|(entry, _)| entry.command_id == command_id)
}
