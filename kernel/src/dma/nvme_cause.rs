//! `NvmeCause`: what an NVMe controller said, or did, that a request or the
//! driver could not get past: a completion's status decoded into its type and
//! named code ("PRP Offset Invalid" is a value a caller can match, not a
//! number), a completion the driver never asked for (a device is not trusted),
//! a controller that would not become ready or would not stop, and a segment
//! list the driver refused to turn into PRPs because it breaks their rules.

use core::fmt;

/// A status code of the generic command status type (SCT 0), the ones the
/// driver and its tests tell apart by name (NVMe base specification 2.0,
/// figure 101).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenericStatus {
    /// 0x01: the opcode is not one the controller knows.
    InvalidOpcode,
    /// 0x02: a field of the command is invalid.
    InvalidField,
    /// 0x03: the command id is in use on the queue already.
    CommandIdConflict,
    /// 0x04: the controller could not move the data (it could not reach memory).
    DataTransferError,
    /// 0x06: the controller failed inside.
    InternalError,
    /// 0x07: the command was aborted on request.
    AbortRequested,
    /// 0x08: the command's submission queue was deleted.
    AbortedQueueDeleted,
    /// 0x0b: no such namespace, or not one this command may use.
    InvalidNamespace,
    /// 0x0d: an SGL Segment descriptor is invalid.
    InvalidSglSegmentDescriptor,
    /// 0x0e: an SGL segment holds descriptors where it may not.
    InvalidSglDescriptorCount,
    /// 0x0f: the SGL describes fewer (or more) bytes than the command moves.
    DataSglLengthInvalid,
    /// 0x11: an SGL descriptor has a type the controller does not take.
    SglDescriptorTypeInvalid,
    /// 0x13: a PRP entry that must start on a page (any but PRP1; PRP2 when it
    /// holds data; a pointer to the next PRP list) does not.
    PrpOffsetInvalid,
    /// 0x80: the command names blocks past the namespace's end.
    LbaOutOfRange,
    /// 0x82: the namespace is not ready.
    NamespaceNotReady,
    /// Another generic code.
    Other(u8),
}

impl GenericStatus {
    /// The named status for code `code`.
    pub const fn from_code(code: u8) -> GenericStatus {
        match code {
            0x01 => GenericStatus::InvalidOpcode,
            0x02 => GenericStatus::InvalidField,
            0x03 => GenericStatus::CommandIdConflict,
            0x04 => GenericStatus::DataTransferError,
            0x06 => GenericStatus::InternalError,
            0x07 => GenericStatus::AbortRequested,
            0x08 => GenericStatus::AbortedQueueDeleted,
            0x0b => GenericStatus::InvalidNamespace,
            0x0d => GenericStatus::InvalidSglSegmentDescriptor,
            0x0e => GenericStatus::InvalidSglDescriptorCount,
            0x0f => GenericStatus::DataSglLengthInvalid,
            0x11 => GenericStatus::SglDescriptorTypeInvalid,
            0x13 => GenericStatus::PrpOffsetInvalid,
            0x80 => GenericStatus::LbaOutOfRange,
            0x82 => GenericStatus::NamespaceNotReady,
            other => GenericStatus::Other(other),
        }
    }

    /// The code the controller writes.
    pub const fn code(self) -> u8 {
        match self {
            GenericStatus::InvalidOpcode => 0x01,
            GenericStatus::InvalidField => 0x02,
            GenericStatus::CommandIdConflict => 0x03,
            GenericStatus::DataTransferError => 0x04,
            GenericStatus::InternalError => 0x06,
            GenericStatus::AbortRequested => 0x07,
            GenericStatus::AbortedQueueDeleted => 0x08,
            GenericStatus::InvalidNamespace => 0x0b,
            GenericStatus::InvalidSglSegmentDescriptor => 0x0d,
            GenericStatus::InvalidSglDescriptorCount => 0x0e,
            GenericStatus::DataSglLengthInvalid => 0x0f,
            GenericStatus::SglDescriptorTypeInvalid => 0x11,
            GenericStatus::PrpOffsetInvalid => 0x13,
            GenericStatus::LbaOutOfRange => 0x80,
            GenericStatus::NamespaceNotReady => 0x82,
            GenericStatus::Other(code) => code,
        }
    }

    const fn name(self) -> Option<&'static str> {
        Some(match self {
            GenericStatus::InvalidOpcode => "Invalid Command Opcode",
            GenericStatus::InvalidField => "Invalid Field in Command",
            GenericStatus::CommandIdConflict => "Command ID Conflict",
            GenericStatus::DataTransferError => "Data Transfer Error",
            GenericStatus::InternalError => "Internal Error",
            GenericStatus::AbortRequested => "Command Abort Requested",
            GenericStatus::AbortedQueueDeleted => "Command Aborted due to SQ Deletion",
            GenericStatus::InvalidNamespace => "Invalid Namespace or Format",
            GenericStatus::InvalidSglSegmentDescriptor => "Invalid SGL Segment Descriptor",
            GenericStatus::InvalidSglDescriptorCount => "Invalid Number of SGL Descriptors",
            GenericStatus::DataSglLengthInvalid => "Data SGL Length Invalid",
            GenericStatus::SglDescriptorTypeInvalid => "SGL Descriptor Type Invalid",
            GenericStatus::PrpOffsetInvalid => "PRP Offset Invalid",
            GenericStatus::LbaOutOfRange => "LBA Out of Range",
            GenericStatus::NamespaceNotReady => "Namespace Not Ready",
            GenericStatus::Other(_) => return None,
        })
    }
}

/// A status code of the media and data integrity type (SCT 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaStatus {
    /// 0x80: the write could not be completed.
    WriteFault,
    /// 0x81: the read could not be completed: the data is lost.
    UnrecoveredReadError,
    /// 0x86: access to the blocks is denied.
    AccessDenied,
    /// 0x87: the blocks were deallocated or never written.
    DeallocatedOrUnwritten,
    /// Another media code.
    Other(u8),
}

impl MediaStatus {
    /// The named status for code `code`.
    pub const fn from_code(code: u8) -> MediaStatus {
        match code {
            0x80 => MediaStatus::WriteFault,
            0x81 => MediaStatus::UnrecoveredReadError,
            0x86 => MediaStatus::AccessDenied,
            0x87 => MediaStatus::DeallocatedOrUnwritten,
            other => MediaStatus::Other(other),
        }
    }

    /// The code the controller writes.
    pub const fn code(self) -> u8 {
        match self {
            MediaStatus::WriteFault => 0x80,
            MediaStatus::UnrecoveredReadError => 0x81,
            MediaStatus::AccessDenied => 0x86,
            MediaStatus::DeallocatedOrUnwritten => 0x87,
            MediaStatus::Other(code) => code,
        }
    }
}

/// A completion's status field (dword 3, bits 31:17), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeStatus {
    /// Status code type 0.
    Generic(GenericStatus),
    /// Status code type 1: what only this command can fail with (an invalid
    /// queue id or size for Create I/O Queue...).
    CommandSpecific(u8),
    /// Status code type 2.
    Media(MediaStatus),
    /// Status code types 3 (path), 7 (vendor) or a reserved one.
    OtherType {
        /// The status code type.
        status_type: u8,
        /// The status code.
        code: u8,
    },
}

impl NvmeStatus {
    /// The status in a completion's upper 16 bits of dword 3 (phase tag in
    /// bit 0, code in 8:1, type in 11:9); `None` for success.
    pub const fn decode(field: u16) -> Option<NvmeStatus> {
        let code = (field >> 1) as u8;
        let status_type = ((field >> 9) & 0x7) as u8;
        Some(match (status_type, code) {
            (0, 0) => return None,
            (0, code) => NvmeStatus::Generic(GenericStatus::from_code(code)),
            (1, code) => NvmeStatus::CommandSpecific(code),
            (2, code) => NvmeStatus::Media(MediaStatus::from_code(code)),
            (status_type, code) => NvmeStatus::OtherType { status_type, code },
        })
    }

    /// The status field a controller writes for this status (phase tag 0,
    /// Do Not Retry set as `do_not_retry` says).
    pub const fn encode(self, do_not_retry: bool) -> u16 {
        let (status_type, code) = match self {
            NvmeStatus::Generic(status) => (0, status.code()),
            NvmeStatus::CommandSpecific(code) => (1, code),
            NvmeStatus::Media(status) => (2, status.code()),
            NvmeStatus::OtherType { status_type, code } => (status_type, code),
        };
        let dnr = if do_not_retry { 1 << 15 } else { 0 };
        ((status_type as u16 & 0x7) << 9) | ((code as u16) << 1) | dnr
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NvmeStatus::Generic(status) => match status.name() {
                Some(name) => write!(f, "{name} (generic status {:#04x})", status.code()),
                None => write!(f, "generic status {:#04x}", status.code()),
            },
            NvmeStatus::CommandSpecific(code) => write!(f, "command specific status {code:#04x}"),
            NvmeStatus::Media(status) => write!(f, "media status {:#04x} ({status:?})", status.code()),
            NvmeStatus::OtherType { status_type, code } => write!(f, "status type {status_type}, code {code:#04x}"),
        }
    }
}

/// A rule of PRP entries a transfer's segments break (NVMe 2.0, 4.1.1): the
/// specification the driver gives the DMA layer should have kept the segments
/// within them, or had them bounced; the driver refuses rather than hand the
/// controller a list it would misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpRule {
    /// Every entry starts on a dword.
    DwordAligned,
    /// Only the first entry may start inside a memory page.
    InnerStartsOnPage,
    /// Every entry but the last ends on a memory page.
    EndsOnPage,
    /// The transfer needs more PRP list pages than a slot has.
    ListPagesPerSlot,
}

/// A value an NVMe controller reports in CAP or Identify, named for a cause
/// that says the value cannot be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerField {
    /// CAP.MQES: entries an I/O queue may have, 0-based (0 would be a queue
    /// of one entry, which holds nothing).
    MaximumQueueEntries,
    /// Identify Controller NN: namespaces (0: no namespace 1 to read).
    Namespaces,
    /// Identify Controller SQES: required (3:0) and largest (7:4) submission
    /// entry sizes; every NVM controller requires 64 bytes (6).
    SubmissionEntrySizes,
    /// Identify Controller CQES, likewise; 16-byte entries (4).
    CompletionEntrySizes,
    /// Identify Namespace NCAP: more blocks than the namespace's size (NSZE).
    NamespaceCapacity,
    /// Identify Namespace NSZE: more bytes than 64 bits count.
    NamespaceSize,
}

impl ControllerField {
    fn name(self) -> &'static str {
        match self {
            ControllerField::MaximumQueueEntries => "CAP.MQES",
            ControllerField::Namespaces => "Identify Controller NN",
            ControllerField::SubmissionEntrySizes => "Identify Controller SQES",
            ControllerField::CompletionEntrySizes => "Identify Controller CQES",
            ControllerField::NamespaceCapacity => "Identify Namespace NCAP (above NSZE)",
            ControllerField::NamespaceSize => "Identify Namespace NSZE (bytes past 2^64)",
        }
    }
}

/// What an NVMe controller did that the driver could not work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeCause {
    /// A command completed with an error status.
    Status {
        /// The status, decoded.
        status: NvmeStatus,
        /// Do Not Retry: the same command would fail again.
        do_not_retry: bool,
    },
    /// A completion named a command id not in flight on its queue: the device
    /// is not trusted, so nothing was completed for it.
    CompletionNotInFlight {
        /// The queue.
        queue: u16,
        /// The command id the controller wrote.
        command: u16,
    },
    /// A completion named another submission queue than the one its
    /// completion queue serves.
    CompletionWrongQueue {
        /// The queue the completion came on.
        queue: u16,
        /// The submission queue it named.
        named: u16,
    },
    /// A completion said the controller's submission-queue head is where the
    /// driver never submitted (outside the entries in flight).
    HeadOutOfOrder {
        /// The queue.
        queue: u16,
        /// The head the controller wrote.
        head: u16,
    },
    /// A completion named a command in flight whose submission entry the
    /// controller, by the head it reported in the same completion, had not
    /// fetched yet: a completion posted before the command was rung in.
    CompletionBeforeFetch {
        /// The queue.
        queue: u16,
        /// The command id the controller wrote.
        command: u16,
        /// The submission-queue head it reported.
        head: u16,
    },
    /// A completion's status field cannot occur: a reserved status code type
    /// (4 to 6), or a success with Do Not Retry, More or a retry delay set.
    StatusImpossible {
        /// The queue.
        queue: u16,
        /// The command id.
        command: u16,
        /// The status field (phase tag in bit 0).
        status: u16,
    },
    /// CAP or Identify reports a value that cannot be.
    ImpossibleValue {
        /// Which one.
        field: ControllerField,
        /// What it said.
        value: u64,
    },
    /// CSTS.RDY did not become 1 after CC.EN was set, within CAP.TO.
    DidNotBecomeReady {
        /// How long the driver waited.
        milliseconds: u64,
    },
    /// CSTS.RDY stayed 1 after CC.EN was cleared, within CAP.TO: the
    /// controller may still use what it was given, which is abandoned.
    DidNotStop {
        /// How long the driver waited.
        milliseconds: u64,
    },
    /// CSTS.SHST did not become 10b (shutdown complete) within CAP.TO after a
    /// normal shutdown was asked for (CC.SHN = 01b): the controller was
    /// disabled without it, and what it cached may not be on the medium.
    ShutdownIncomplete {
        /// How long the driver waited.
        milliseconds: u64,
        /// CSTS.SHST when the wait ended (00b: not started, 01b: processing).
        shutdown_status: u8,
    },
    /// CSTS.CFS: the controller had a fatal error and needs a reset.
    ControllerFatal,
    /// The controller does not take the NVM command set (CAP.CSS bit 0).
    NoNvmCommandSet,
    /// The controller's smallest memory page (CAP.MPSMIN) is larger than the
    /// 4 KiB pages the driver builds PRPs of.
    PageSizeUnsupported {
        /// The controller's smallest page, in bytes.
        minimum: u64,
    },
    /// The register window the driver could map ends before the highest
    /// doorbell it would ring (CAP.DSTRD spaces them out), or past what a
    /// register offset reaches.
    DoorbellsOutsideRegisters {
        /// The byte after the highest doorbell.
        needed: u64,
        /// Bytes of registers mapped.
        mapped: u64,
    },
    /// Namespace 1, the disk, is missing or empty.
    NoNamespace,
    /// The namespace's LBA format has metadata, or blocks that are not 512
    /// bytes to 4 KiB: the driver moves plain data only.
    LbaFormatUnsupported {
        /// Bytes per block (2^LBADS).
        block_size: u64,
        /// Metadata bytes per block.
        metadata: u16,
    },
    /// A transfer's segments break a PRP rule at segment `index`.
    PrpRuleBroken {
        /// The segment.
        index: usize,
        /// The rule.
        rule: PrpRule,
    },
    /// `reopen` found the controller still enabled: it was not stopped.
    NotStopped,
    /// After a reset the controller came back with another namespace, block
    /// size, depth or limits than the slots were made for.
    ControllerChanged,
}

impl fmt::Display for NvmeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NvmeCause::Status { status, do_not_retry: true } => write!(f, "NVMe: {status}, do not retry"),
            NvmeCause::Status { status, do_not_retry: false } => write!(f, "NVMe: {status}"),
            NvmeCause::CompletionNotInFlight { queue, command } => {
                write!(f, "the NVMe controller completed command {command} on queue {queue}, which was not in flight")
            }
            NvmeCause::CompletionWrongQueue { queue, named } => {
                write!(f, "a completion on NVMe queue {queue} named submission queue {named}")
            }
            NvmeCause::HeadOutOfOrder { queue, head } => write!(
                f,
                "the NVMe controller reported submission-queue head {head} on queue {queue}, outside what was submitted"
            ),
            NvmeCause::CompletionBeforeFetch { queue, command, head } => write!(
                f,
                "the NVMe controller completed command {command} on queue {queue} before fetching it \
                 (submission-queue head {head})"
            ),
            NvmeCause::StatusImpossible { queue, command, status } => write!(
                f,
                "the NVMe controller completed command {command} on queue {queue} with status field {status:#06x}, \
                 which cannot occur"
            ),
            NvmeCause::ImpossibleValue { field, value } => {
                write!(f, "the NVMe controller reports {} = {value:#x}, which cannot be", field.name())
            }
            NvmeCause::DidNotBecomeReady { milliseconds } => {
                write!(f, "the NVMe controller did not become ready (CSTS.RDY) within {milliseconds} ms")
            }
            NvmeCause::DidNotStop { milliseconds } => write!(
                f,
                "the NVMe controller stayed ready (CSTS.RDY) {milliseconds} ms after CC.EN was cleared: what it \
                 holds is abandoned to it"
            ),
            NvmeCause::ShutdownIncomplete { milliseconds, shutdown_status } => write!(
                f,
                "the NVMe controller did not report its shutdown complete (CSTS.SHST {shutdown_status:02b}, not 10b) \
                 within {milliseconds} ms: disabled without it, what it cached may not be on the medium"
            ),
            NvmeCause::ControllerFatal => f.write_str("the NVMe controller reported a fatal error (CSTS.CFS)"),
            NvmeCause::NoNvmCommandSet => f.write_str("the NVMe controller does not take the NVM command set"),
            NvmeCause::PageSizeUnsupported { minimum } => {
                write!(f, "the NVMe controller's smallest page is {minimum} bytes; the driver uses 4096")
            }
            NvmeCause::DoorbellsOutsideRegisters { needed, mapped } => write!(
                f,
                "the NVMe controller's doorbells run to byte {needed:#x} (CAP.DSTRD), past the {mapped:#x} bytes of \
                 registers mapped"
            ),
            NvmeCause::NoNamespace => f.write_str("NVMe namespace 1 is missing or empty"),
            NvmeCause::LbaFormatUnsupported { block_size, metadata } => write!(
                f,
                "an NVMe LBA format of {block_size}-byte blocks with {metadata} metadata bytes is not one the driver \
                 moves"
            ),
            NvmeCause::PrpRuleBroken { index, rule } => {
                let rule = match rule {
                    PrpRule::DwordAligned => "every PRP entry starts on a dword",
                    PrpRule::InnerStartsOnPage => "only the first PRP entry may start inside a page",
                    PrpRule::EndsOnPage => "every PRP entry but the last ends on a page",
                    PrpRule::ListPagesPerSlot => "a request takes at most its slot's PRP list pages",
                };
                write!(f, "segment {index} breaks a PRP rule: {rule}")
            }
            NvmeCause::NotStopped => f.write_str("the NVMe controller was not stopped"),
            NvmeCause::ControllerChanged => {
                f.write_str("the NVMe controller came back from its reset with another namespace or limits")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_into_their_type_and_name() {
        assert_eq!(NvmeStatus::decode(0), None);
        assert_eq!(NvmeStatus::decode(1), None, "the phase tag alone is a success");
        // QEMU's NVME_INVALID_PRP_OFFSET | NVME_DNR, shifted above the phase tag.
        let field = (0x13 << 1) | (1 << 15);
        let status = NvmeStatus::decode(field).unwrap();
        assert_eq!(status, NvmeStatus::Generic(GenericStatus::PrpOffsetInvalid));
        assert_eq!(status.encode(true), field);
        assert_eq!(status.to_string(), "PRP Offset Invalid (generic status 0x13)");
        let media = NvmeStatus::decode((2 << 9) | (0x81 << 1)).unwrap();
        assert_eq!(media, NvmeStatus::Media(MediaStatus::UnrecoveredReadError));
        assert_eq!(NvmeStatus::decode((1 << 9) | (0x02 << 1)), Some(NvmeStatus::CommandSpecific(2)));
        assert_eq!(NvmeStatus::decode((7 << 9) | (5 << 1)), Some(NvmeStatus::OtherType { status_type: 7, code: 5 }));
        for code in 0..=255u8 {
            assert_eq!(GenericStatus::from_code(code).code(), code);
            assert_eq!(MediaStatus::from_code(code).code(), code);
        }
    }
}
