//! Causes below the DMA contract, one enum per layer a caller may want to tell
//! apart: the PCI layer a driver claims its registers through, and each device
//! family (what the device said, in its own terms), plus the snapshot of a
//! device's status registers that a timeout carries.
//!
//! They are plain `Copy` values, like every [`super::Cause`], so a failure can
//! travel up through every layer (driver, block layer, shell) without
//! allocating and without losing what the device reported.

use core::fmt;

/// What a device's status registers said the last time the driver looked:
/// carried by a timeout, so that "no answer" says what the device was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// A PIIX IDE channel: the drive's status and error registers, and the
    /// bus-master engine's status.
    Ata {
        /// ATA status (BSY 0x80, DRDY 0x40, DF 0x20, DRQ 0x08, ERR 0x01).
        status: u8,
        /// ATA error register.
        error: u8,
        /// Bus-master status (Active 0x01, Error 0x02, Interrupt 0x04).
        bus_master: u8,
    },
    /// An AHCI port.
    Ahci {
        /// PxTFD: the task-file status (bits 7:0) and error (bits 15:8).
        task_file: u32,
        /// PxIS.
        interrupts: u32,
        /// PxCI: commands issued and not yet finished.
        issued: u32,
        /// PxSACT: NCQ tags still active.
        active: u32,
    },
    /// A virtio device.
    Virtio {
        /// The device status register.
        device_status: u8,
    },
    /// An NVMe controller.
    Nvme {
        /// CSTS: RDY (bit 0), CFS (bit 1), SHST (bits 3:2).
        status: u32,
        /// CC: EN (bit 0) and the queue entry sizes.
        configuration: u32,
    },
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceStatus::Ata { status, error, bus_master } => {
                write!(f, "ATA status {status:#04x}")?;
                let names = [(0x80, "BSY"), (0x40, "DRDY"), (0x20, "DF"), (0x08, "DRQ"), (0x01, "ERR")];
                let set: alloc::vec::Vec<&str> =
                    names.iter().filter(|(bit, _)| status & bit != 0).map(|(_, name)| *name).collect();
                if !set.is_empty() {
                    write!(f, " ({})", set.join(", "))?;
                }
                write!(f, ", error {error:#04x}, bus-master status {bus_master:#04x}")
            }
            DeviceStatus::Ahci { task_file, interrupts, issued, active } => {
                write!(f, "PxTFD {task_file:#x}, PxIS {interrupts:#x}, PxCI {issued:#x}, PxSACT {active:#x}")
            }
            DeviceStatus::Virtio { device_status } => write!(f, "virtio device status {device_status:#04x}"),
            DeviceStatus::Nvme { status, configuration } => {
                write!(f, "NVMe CSTS {status:#x}, CC {configuration:#x}")
            }
        }
    }
}

/// What went wrong claiming a PCI function's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciCause {
    /// BAR `slot` is absent or not of the kind the driver needs.
    BarMissing {
        /// The BAR's number.
        slot: usize,
        /// "I/O" or "memory".
        kind: &'static str,
    },
    /// The range asked for runs outside BAR `slot` (or is empty).
    OutsideBar {
        /// The BAR's number.
        slot: usize,
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        length: u64,
    },
    /// The fixed ports of a compatibility-mode IDE channel were claimed by
    /// another driver (or the kernel) before.
    LegacyPortsClaimed {
        /// The channel asked for.
        channel: u8,
    },
    /// Some of BAR `slot`'s range was claimed by another driver before.
    AlreadyClaimed {
        /// The BAR's number.
        slot: usize,
    },
    /// The function is not an IDE controller with channel `channel` in
    /// compatibility mode (its ports are not the fixed legacy ones).
    NotLegacyIde {
        /// The channel asked for.
        channel: u8,
    },
    /// A capability the driver needs is missing (which is named).
    CapabilityMissing(&'static str),
    /// The driver matched a device ID it does not drive.
    UnknownDevice {
        /// The PCI device ID.
        device_id: u16,
    },
}

impl fmt::Display for PciCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PciCause::BarMissing { slot, kind } => write!(f, "BAR {slot} is not an {kind} BAR with an address"),
            PciCause::OutsideBar { slot, offset, length } => {
                write!(f, "bytes {offset:#x}+{length:#x} do not lie inside BAR {slot}")
            }
            PciCause::AlreadyClaimed { slot } => write!(f, "part of BAR {slot} was claimed by another driver"),
            PciCause::LegacyPortsClaimed { channel } => {
                write!(f, "IDE channel {channel}'s fixed ports were claimed by another driver (or the kernel)")
            }
            PciCause::NotLegacyIde { channel } => {
                write!(f, "IDE channel {channel} is not in compatibility mode on this function")
            }
            PciCause::CapabilityMissing(what) => write!(f, "the function lacks {what}"),
            PciCause::UnknownDevice { device_id } => {
                write!(f, "device ID {device_id:#06x} is not one this driver drives")
            }
        }
    }
}

/// What a virtio device did that the driver could not work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioCause {
    /// A request's status byte said IOERR (1), UNSUPP (2), or something no
    /// device may write (including the driver's own "unwritten" mark).
    RequestStatus(u8),
    /// A modern device must offer VERSION_1 (feature bit 32).
    NoVersion1,
    /// The device cleared FEATURES_OK: it does not work with the features accepted.
    FeaturesRefused,
    /// The queue has fewer than the three entries a request chain needs.
    QueueTooSmall {
        /// Entries the device offers.
        size: u16,
    },
    /// The device's `seg_max` is 0: no request could carry data.
    NoDataSegments,
    /// The device did not read back 0 from its status after a reset.
    ResetNotConfirmed,
    /// The configuration kept changing while it was read (`config_generation`).
    ConfigurationUnstable,
    /// After a reset the device came back with another configuration than the
    /// one the slots were made for.
    ConfigurationChanged,
    /// A structure the transport reads is shorter than the field it needs (named).
    StructureTooShort(&'static str),
    /// A write to a disk that offered `VIRTIO_BLK_F_RO`.
    ReadOnly,
    /// A flush to a device that did not offer `VIRTIO_BLK_F_FLUSH`: it has
    /// no volatile cache to flush and no flush request to take.
    FlushNotNegotiated,
    /// A split virtqueue's size must be a power of two no larger than the
    /// device's maximum (and not 0).
    QueueSizeInvalid {
        /// The size asked for.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// A legacy device fixes its queue's size: the queue must have exactly it.
    LegacyQueueSize {
        /// The size asked for.
        size: u16,
        /// The device's size.
        device: u16,
    },
    /// A legacy queue is one page-aligned block in the legacy layout.
    LegacyQueueLayout,
    /// A legacy queue lies at or above 2^44: its page number has 32 bits.
    LegacyQueueTooHigh {
        /// The queue's first byte.
        address: u64,
    },
    /// The driver notified a queue it never set up.
    QueueNotSetUp {
        /// The queue's index.
        queue: u16,
    },
    /// A descriptor chain is empty or runs past the descriptor table.
    ChainOutsideTable {
        /// The chain's first entry.
        head: u16,
        /// Descriptors in the chain.
        length: usize,
        /// Entries in the table.
        size: u16,
    },
    /// `reopen` found the device still set up: it was not stopped.
    NotStopped,
    /// The used ring named an id that heads no chain the driver makes on queue
    /// `queue` (a device is not trusted: the queue's state can no longer be).
    UsedIdNotAHead {
        /// The queue.
        queue: u16,
        /// The id the device wrote.
        id: u32,
    },
    /// The used ring gave back a chain on queue `queue` the device did not
    /// hold (never posted, or given back twice).
    UsedIdNotInFlight {
        /// The queue.
        queue: u16,
        /// The id the device wrote.
        id: u32,
    },
    /// The used index moved past more elements than the driver has chains in
    /// flight on queue `queue`: the device publishes elements it cannot have
    /// (stale ones from an earlier lap, or none), so none is believed.
    UsedIndexAhead {
        /// The queue.
        queue: u16,
        /// The used index the device published.
        index: u16,
        /// The used index the driver had read up to.
        last_seen: u16,
        /// Chains the driver had in flight.
        in_flight: u16,
    },
    /// A used length above the bytes the chain lets the device write.
    UsedLengthAboveChain {
        /// The queue.
        queue: u16,
        /// The length the device wrote.
        length: u32,
        /// Device-writable bytes in the chain.
        writable: u64,
    },
}

impl fmt::Display for VirtioCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtioCause::RequestStatus(1) => f.write_str("virtio-blk status IOERR"),
            VirtioCause::RequestStatus(2) => f.write_str("virtio-blk status UNSUPP"),
            VirtioCause::RequestStatus(byte) => write!(f, "virtio-blk status {byte:#04x}, which no device may write"),
            VirtioCause::NoVersion1 => f.write_str("a modern virtio device must offer VERSION_1 (feature bit 32)"),
            VirtioCause::FeaturesRefused => {
                f.write_str("the virtio device refused the accepted features (it cleared FEATURES_OK)")
            }
            VirtioCause::QueueTooSmall { size } => {
                write!(f, "a {size}-entry virtio queue is too small for header, data and status")
            }
            VirtioCause::NoDataSegments => f.write_str("virtio-blk seg_max is 0: no request could carry data"),
            VirtioCause::ResetNotConfirmed => f.write_str("the virtio device did not finish its reset"),
            VirtioCause::ConfigurationUnstable => {
                f.write_str("the virtio device configuration kept changing during a read")
            }
            VirtioCause::ConfigurationChanged => {
                f.write_str("the virtio device came back from its reset with another configuration")
            }
            VirtioCause::StructureTooShort(what) => write!(f, "the virtio {what} structure is too short"),
            VirtioCause::ReadOnly => f.write_str("the disk is read-only"),
            VirtioCause::FlushNotNegotiated => {
                f.write_str("the device did not offer VIRTIO_BLK_F_FLUSH: it takes no flush request")
            }
            VirtioCause::QueueSizeInvalid { size, max } => write!(
                f,
                "a split virtqueue's size is a power of two no larger than the device's (asked {size}, the device \
                 takes {max})"
            ),
            VirtioCause::LegacyQueueSize { size, device } => {
                write!(f, "a legacy virtio queue has the size the device says ({device}, not {size})")
            }
            VirtioCause::LegacyQueueLayout => {
                f.write_str("a legacy virtio queue is one page-aligned block in the legacy layout")
            }
            VirtioCause::LegacyQueueTooHigh { address } => write!(
                f,
                "a legacy virtio queue must lie below 2^44 (its page number has 32 bits); this one is at {address:#x}"
            ),
            VirtioCause::QueueNotSetUp { queue } => write!(f, "the virtio queue {queue} was not set up"),
            VirtioCause::ChainOutsideTable { head, length, size } => write!(
                f,
                "a chain must be non-empty and lie inside the descriptor table ({length} from entry {head}, {size} \
                 entries)"
            ),
            VirtioCause::NotStopped => f.write_str("the virtio device was not stopped"),
            VirtioCause::UsedIdNotAHead { queue, id } => {
                write!(f, "the virtio device returned id {id} on queue {queue}, which heads no chain")
            }
            VirtioCause::UsedIdNotInFlight { queue, id } => {
                write!(f, "the virtio device returned chain {id} on queue {queue}, which it did not hold")
            }
            VirtioCause::UsedIndexAhead { queue, index, last_seen, in_flight } => write!(
                f,
                "the virtio device moved queue {queue}'s used index from {last_seen} to {index}, past more elements \
                 than the {in_flight} chains in flight"
            ),
            VirtioCause::UsedLengthAboveChain { queue, length, writable } => write!(
                f,
                "the virtio device said it wrote {length} bytes into a chain of {writable} writable bytes (queue {queue})"
            ),
        }
    }
}

/// What a network interface (the `net` layer, or the device under it) did
/// that a frame could not get past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetCause {
    /// Every transmit buffer is the device's: try again after a poll.
    TransmitRingFull {
        /// Transmit buffers.
        depth: usize,
    },
    /// A frame to send is empty or longer than the interface takes.
    FrameLength {
        /// Bytes in the frame.
        length: u64,
        /// The most the interface takes.
        max: u64,
    },
    /// The device said it wrote no more than its own header: no frame.
    NoFrameAfterHeader {
        /// Bytes the device said it wrote.
        length: u64,
        /// Bytes of the device's header.
        header: u64,
    },
    /// The driver reported a buffer the device was not holding.
    SlotNotPosted {
        /// The slot.
        slot: usize,
    },
}

impl fmt::Display for NetCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NetCause::TransmitRingFull { depth } => {
                write!(f, "all {depth} transmit buffers are the device's; poll, then try again")
            }
            NetCause::FrameLength { length, max } => {
                write!(f, "a frame of {length} bytes; the interface sends 1 to {max}")
            }
            NetCause::NoFrameAfterHeader { length, header } => {
                write!(f, "the device wrote {length} bytes, no more than its {header}-byte header: no frame")
            }
            NetCause::SlotNotPosted { slot } => {
                write!(f, "the driver reported buffer {slot}, which the device was not holding")
            }
        }
    }
}

/// What an AHCI port or its drive did that the driver could not work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhciCause {
    /// A command ended with an error: the port's error interrupt bits (PxIS)
    /// and task file (PxTFD: status in bits 7:0, error in 15:8) as the driver
    /// read them, and what they mean.
    CommandFailed {
        /// PxIS error bits.
        interrupts: u32,
        /// PxTFD.
        task_file: u32,
        /// The driver's reading of the two.
        meaning: &'static str,
    },
    /// Error recovery is issuing the commands an NCQ error left one at a time,
    /// so that the next error names its command: a new one waits.
    FindingFailedCommand,
    /// PxCMD.CR or FR stayed set after ST or FRE was cleared (and after a port
    /// reset): the port may still use what it was given.
    EnginesWouldNotStop,
    /// The drive stayed busy (PxTFD.BSY or DRQ) after a reset.
    DriveStayedBusy {
        /// PxTFD.
        task_file: u32,
    },
    /// `reopen` found the port still set up: it was not stopped.
    PortRunning,
    /// A flush is a non-queued command, which ATA forbids while queued
    /// (NCQ) commands are outstanding: it waits until they are done, and new
    /// commands wait until it is.
    FlushRunsAlone,
    /// A flush to a drive whose IDENTIFY says it has no volatile write cache
    /// (word 82 bit 5): it has nothing to flush.
    NoWriteCache,
    /// PRDBC (the command header's byte count) says the HBA moved more bytes
    /// than the command's PRDT holds: not believed, the command fails.
    ByteCountAboveRequest {
        /// The command's slot.
        slot: u8,
        /// PRDBC as the HBA wrote it.
        count: u32,
        /// Bytes the PRDT describes.
        prepared: u64,
    },
    /// PxCI or PxSACT shows slots the driver did not issue there (or a flush,
    /// never queued, in PxSACT): the port is stopped.
    CommandsNotIssued {
        /// The slots no command of the driver's is in.
        slots: u32,
    },
    /// Under NCQ, PxSACT bits cleared (finished) while their PxCI bits are
    /// still set (not yet sent to the drive): the port is stopped.
    CompletedBeforeIssued {
        /// The slots.
        slots: u32,
    },
}

impl fmt::Display for AhciCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AhciCause::CommandFailed { interrupts, task_file, meaning } => {
                write!(f, "{meaning} (PxIS {interrupts:#x}, PxTFD {task_file:#x})")
            }
            AhciCause::FlushRunsAlone => {
                f.write_str("a flush is not queued: it runs alone, after the queued commands before it; new ones wait")
            }
            AhciCause::NoWriteCache => f.write_str("the drive has no volatile write cache: there is nothing to flush"),
            AhciCause::FindingFailedCommand => f.write_str(
                "the port issues the commands an NCQ error left one at a time, to find the one that failed; \
                 new commands wait",
            ),
            AhciCause::EnginesWouldNotStop => {
                f.write_str("the port's engines would not stop (PxCMD.CR or FR stayed set)")
            }
            AhciCause::DriveStayedBusy { task_file } => {
                write!(f, "the drive stayed busy after the reset (PxTFD {task_file:#x}: BSY or DRQ)")
            }
            AhciCause::PortRunning => f.write_str("the port is running already"),
            AhciCause::ByteCountAboveRequest { slot, count, prepared } => write!(
                f,
                "the HBA says it moved {count} bytes for slot {slot} (PRDBC), more than the {prepared} prepared"
            ),
            AhciCause::CommandsNotIssued { slots } => {
                write!(f, "the port shows commands in slots {slots:#x} (PxCI, PxSACT), which the driver did not issue")
            }
            AhciCause::CompletedBeforeIssued { slots } => write!(
                f,
                "the drive finished slots {slots:#x} (PxSACT clear) before the HBA sent them (PxCI still set)"
            ),
        }
    }
}

/// What a drive on a PIIX IDE channel did that the driver could not work with;
/// the IDENTIFY causes also for a SATA drive behind AHCI (the same ATA data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtaCause {
    /// IDENTIFY says the drive has no sectors: words 60-61 (no 48-bit command
    /// set) or 100-103 (with it) are 0.
    NoSectors {
        /// The first word of the count read: 60 or 100.
        word: u8,
    },
    /// The drive has no 48-bit command set (IDENTIFY word 83 bit 10 clear),
    /// and the driver issues only 48-bit commands (READ/WRITE DMA EXT, the
    /// NCQ FPDMA commands): a 28-bit drive is refused, not sent commands it
    /// would abort.
    No48BitCommands,
    /// IDENTIFY's sector count is more than its words may hold (ATA8-ACS:
    /// words 60-61 at most 0FFFFFFFh, words 100-103 at most 2^48 - 1): a
    /// drive that says so is not believed.
    SectorCountTooLarge {
        /// The first word of the count read: 60 or 100.
        word: u8,
        /// The count the drive said.
        sectors: u64,
        /// The most those words may say.
        max: u64,
    },
    /// The drive was still in a command (BSY or DRQ set) when a command was to
    /// be issued, and stayed so through a software reset of the channel: the
    /// command was not issued (the drive would have moved its old command's
    /// data through the new command's memory).
    DriveNotIdle {
        /// The drive's status after the reset.
        status: u8,
    },
    /// The engine stopped while the drive still asked to move data (DRQ): the
    /// command did not finish, whatever else the status says.
    DataPhaseUnfinished {
        /// The drive's status.
        status: u8,
    },
    /// The bus-master engine reported an error (its status's Error bit): it
    /// could not reach memory.
    BusMasterError {
        /// The engine's status.
        bus_master: u8,
    },
    /// The drive ended while the engine still had PRD entries to fill (Active
    /// still set): fewer bytes moved than asked, and how many is not known.
    ShortTransfer,
    /// The drive reported a device fault (DF).
    DeviceFault {
        /// The drive's status.
        status: u8,
    },
    /// The drive reported an error (ERR), with its error register.
    DriveError {
        /// The drive's status.
        status: u8,
        /// The error register (ABRT 0x04, IDNF 0x10, UNC 0x40, ICRC 0x80...).
        error: u8,
    },
    /// The channel runs the other drive's command: try again when it is done.
    ChannelBusy,
    /// A flush to a drive whose IDENTIFY says it has no volatile write cache
    /// (word 82 bit 5): it has nothing to flush.
    NoWriteCache,
    /// ERR at the end of a command with an empty error register: ATA gives
    /// every error a bit there, so no drive is in that state.
    ErrorRegisterEmpty {
        /// The drive's status.
        status: u8,
    },
    /// The drive ended a command without DRDY (a present ATA drive is ready
    /// after every command it ends): it may be gone, or lying.
    DriveNotReady {
        /// The drive's status.
        status: u8,
    },
    /// IDENTIFY says a logical sector is not 256 words (word 106 bit 12, words
    /// 117-118: 0, odd or other): every command counts 512-byte sectors.
    LogicalSectorSize {
        /// Words 117-118: the logical sector's size in 16-bit words.
        words: u32,
    },
    /// IDENTIFY's integrity word (255, signature A5h) does not make its 512
    /// bytes sum to 0: the data was damaged on the way.
    IdentifyChecksum {
        /// Word 255 as the drive sent it.
        word: u16,
    },
}

impl fmt::Display for AtaCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AtaCause::NoSectors { word } => write!(f, "IDENTIFY says the drive has no sectors (word {word} on)"),
            AtaCause::No48BitCommands => write!(
                f,
                "the drive has no 48-bit command set (IDENTIFY word 83 bit 10), which every command this driver \
                 issues needs"
            ),
            AtaCause::SectorCountTooLarge { word, sectors, max } => {
                write!(f, "IDENTIFY says {sectors} sectors from word {word} on, more than those words may say ({max})")
            }
            AtaCause::DriveNotIdle { status } => write!(
                f,
                "the drive stayed in a command through a software reset (status {status:#04x}: BSY or DRQ); \
                 nothing was issued to it"
            ),
            AtaCause::DataPhaseUnfinished { status } => write!(
                f,
                "the drive still had data to move when the engine stopped (status {status:#04x}, DRQ): the \
                 command did not finish"
            ),
            AtaCause::BusMasterError { bus_master } => write!(f, "bus-master error (status {bus_master:#04x})"),
            AtaCause::ShortTransfer => f.write_str("the drive ended before the PRD table was used up (short transfer)"),
            AtaCause::DeviceFault { status } => write!(f, "device fault (status {status:#04x})"),
            AtaCause::DriveError { status, error } => {
                write!(f, "drive reported ERR (status {status:#04x}, error {error:#04x})")
            }
            AtaCause::ChannelBusy => f.write_str("the channel runs the other drive's command"),
            AtaCause::NoWriteCache => f.write_str("the drive has no volatile write cache: there is nothing to flush"),
            AtaCause::ErrorRegisterEmpty { status } => {
                write!(f, "drive reported ERR with an empty error register (status {status:#04x}): not a state ATA has")
            }
            AtaCause::DriveNotReady { status } => {
                write!(f, "the drive ended a command without DRDY (status {status:#04x}): gone, or not to be believed")
            }
            AtaCause::LogicalSectorSize { words } => write!(
                f,
                "IDENTIFY says a logical sector is {words} words (words 117-118); the driver sends 512-byte sectors \
                 (256 words)"
            ),
            AtaCause::IdentifyChecksum { word } => {
                write!(f, "IDENTIFY's checksum (word 255, {word:#06x}) does not make its 512 bytes sum to 0")
            }
        }
    }
}
