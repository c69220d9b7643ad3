//! The fake controller's admin commands (Identify, Create and Delete I/O
//! queues), and the failures a test can ask of them at each bring-up step.

use dmakit::dma::{GenericStatus, NvmeStatus};

use super::super::identify::{IDENTIFY_BYTES, NamespaceIdentity};
use super::super::structures::*;
use super::{BLOCK, Completion, FakeNvme, State, Submission};

/// A bring-up step's admin command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminStep {
    /// Identify Controller (CNS 01h).
    IdentifyController,
    /// Identify Namespace (CNS 00h).
    IdentifyNamespace,
    /// Create I/O Completion Queue.
    CreateCompletionQueue,
    /// Create I/O Submission Queue.
    CreateSubmissionQueue,
}

/// How the step's command fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failing {
    /// It completes with an error status (Invalid Field), having done nothing.
    Status,
    /// It never completes: the controller keeps what it was pointed at.
    NoCompletion,
}

impl AdminStep {
    fn of(entry: &SubmissionEntry) -> Option<AdminStep> {
        match (entry.opcode, entry.command[0]) {
            (ADMIN_IDENTIFY, IDENTIFY_CONTROLLER) => Some(AdminStep::IdentifyController),
            (ADMIN_IDENTIFY, IDENTIFY_NAMESPACE) => Some(AdminStep::IdentifyNamespace),
            (ADMIN_CREATE_CQ, _) => Some(AdminStep::CreateCompletionQueue),
            (ADMIN_CREATE_SQ, _) => Some(AdminStep::CreateSubmissionQueue),
            _ => None,
        }
    }
}

impl FakeNvme {
    /// Runs one admin command; `None` when it never completes.
    pub(super) fn execute_admin(&self, state: &mut State, entry: &SubmissionEntry) -> Option<Result<(), NvmeStatus>> {
        let failing = *self.fail_admin.lock();
        match failing {
            Some((step, how)) if AdminStep::of(entry) == Some(step) => match how {
                Failing::Status => return Some(Err(NvmeStatus::Generic(GenericStatus::InvalidField))),
                Failing::NoCompletion => return None,
            },
            _ => {}
        }
        Some(self.run_admin(state, entry))
    }

    fn run_admin(&self, state: &mut State, entry: &SubmissionEntry) -> Result<(), NvmeStatus> {
        let [cdw10, cdw11, ..] = entry.command;
        let queue = cdw10 as u16;
        let entries = (cdw10 >> 16) as u16 + 1;
        let max_entries = (self.cap & 0xffff) as u32 + 1;
        let command_specific = |code| Err(NvmeStatus::CommandSpecific(code));
        match entry.opcode {
            ADMIN_IDENTIFY => {
                let bytes: [u8; IDENTIFY_BYTES] = match cdw10 {
                    IDENTIFY_CONTROLLER => self.controller.lock().to_bytes(),
                    IDENTIFY_NAMESPACE if entry.namespace == 1 => {
                        let blocks = self.image.lock().len() as u64 / BLOCK;
                        let honest = NamespaceIdentity { blocks, capacity: blocks, block_shift: 9, metadata: 0 };
                        self.namespace.lock().unwrap_or(honest).to_bytes()
                    }
                    IDENTIFY_NAMESPACE => return Err(NvmeStatus::Generic(GenericStatus::InvalidNamespace)),
                    _ => return Err(NvmeStatus::Generic(GenericStatus::InvalidField)),
                };
                self.to_host(entry, &bytes)
            }
            ADMIN_CREATE_CQ | ADMIN_CREATE_SQ if queue != 1 => command_specific(0x01),
            ADMIN_CREATE_CQ | ADMIN_CREATE_SQ if entries < 2 || u32::from(entries) > max_entries => {
                command_specific(0x02)
            }
            // Only physically contiguous queues (CAP.CQR).
            ADMIN_CREATE_CQ | ADMIN_CREATE_SQ if cdw11 & 1 == 0 => {
                Err(NvmeStatus::Generic(GenericStatus::InvalidField))
            }
            ADMIN_CREATE_CQ => {
                let address = entry.data[0];
                state.completions[1] = Some(Completion { address, entries, tail: 0, head: 0, phase: true });
                Ok(())
            }
            ADMIN_CREATE_SQ if state.completions[1].is_none() || cdw11 >> 16 != 1 => command_specific(0x00),
            ADMIN_CREATE_SQ => {
                state.submissions[1] = Some(Submission { address: entry.data[0], entries, head: 0, tail: 0 });
                Ok(())
            }
            ADMIN_DELETE_SQ => {
                state.submissions[1] = None;
                Ok(())
            }
            ADMIN_DELETE_CQ => {
                state.completions[1] = None;
                Ok(())
            }
            _ => Err(NvmeStatus::Generic(GenericStatus::InvalidOpcode)),
        }
    }
}
