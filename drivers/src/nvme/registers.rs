//! The NVMe controller's registers (NVMe base specification 2.0, section 3.1
//! of the PCIe transport): the capabilities, the configuration and status the
//! enable handshake goes through, the admin queue's attributes and addresses,
//! and the doorbells, spaced by CAP.DSTRD.

/// CAP, 64 bits: what the controller can do.
pub const CAP: u16 = 0x00;
/// VS: the version (major in bits 31:16, minor in 15:8).
pub const VS: u16 = 0x08;
/// INTMS: writing 1s masks pin interrupt vectors.
pub const INTMS: u16 = 0x0c;
/// INTMC: writing 1s unmasks them.
pub const INTMC: u16 = 0x10;
/// CC: the controller configuration.
pub const CC: u16 = 0x14;
/// CSTS: the controller status.
pub const CSTS: u16 = 0x1c;
/// AQA: the admin queues' sizes.
pub const AQA: u16 = 0x24;
/// ASQ, 64 bits: the admin submission queue's address.
pub const ASQ: u16 = 0x28;
/// ACQ, 64 bits: the admin completion queue's address.
pub const ACQ: u16 = 0x30;
/// Where the doorbells start.
pub const DOORBELLS: u16 = 0x1000;

/// CC.EN: the controller processes commands.
pub const CC_ENABLE: u32 = 1 << 0;
/// CC.CSS = 000b: the NVM command set.
pub const CC_COMMAND_SET_NVM: u32 = 0 << 4;
/// CC.MPS's shift: memory page size is 2^(12 + MPS).
pub const CC_PAGE_SIZE_SHIFT: u32 = 7;
/// CC.IOSQES's shift: 2^6 = 64-byte submission entries.
pub const CC_SUBMISSION_ENTRY_SHIFT: u32 = 16;
/// CC.IOCQES's shift: 2^4 = 16-byte completion entries.
pub const CC_COMPLETION_ENTRY_SHIFT: u32 = 20;
/// The CC the driver enables with: NVM command set, 4 KiB pages, round-robin
/// arbitration, 64-byte and 16-byte I/O queue entries.
pub const CC_CONFIGURATION: u32 =
    CC_COMMAND_SET_NVM | (6 << CC_SUBMISSION_ENTRY_SHIFT) | (4 << CC_COMPLETION_ENTRY_SHIFT);

/// CC.SHN (bits 15:14): the shutdown notification; 00b none.
pub const CC_SHUTDOWN_MASK: u32 = 0b11 << 14;
/// CC.SHN = 01b: a normal shutdown (the controller finishes what it holds and
/// puts its cache on the medium); 10b would be an abrupt one.
pub const CC_SHUTDOWN_NORMAL: u32 = 0b01 << 14;

/// CSTS.RDY: the controller is ready (follows CC.EN, slowly).
pub const CSTS_READY: u32 = 1 << 0;
/// CSTS.CFS: controller fatal status.
pub const CSTS_FATAL: u32 = 1 << 1;
/// CSTS.SHST's shift (bits 3:2): the shutdown status.
pub const CSTS_SHUTDOWN_SHIFT: u32 = 2;

/// CSTS.SHST, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownStatus {
    /// 00b: normal operation, no shutdown asked for.
    Normal = 0b00,
    /// 01b: shutdown processing occurring.
    Processing = 0b01,
    /// 10b: shutdown processing complete; the controller needs a reset
    /// (CC.EN 0) before it takes commands again.
    Complete = 0b10,
    /// 11b: reserved.
    Reserved = 0b11,
}

impl ShutdownStatus {
    /// CSTS.SHST of `status` (a CSTS value).
    pub const fn of(status: u32) -> ShutdownStatus {
        match (status >> CSTS_SHUTDOWN_SHIFT) & 0b11 {
            0b00 => ShutdownStatus::Normal,
            0b01 => ShutdownStatus::Processing,
            0b10 => ShutdownStatus::Complete,
            _ => ShutdownStatus::Reserved,
        }
    }

    /// The field's two bits.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// The memory page size the driver uses (CC.MPS = 0): PRPs are built of
/// 4 KiB pages, the size of the frames the DMA layer hands out.
pub const PAGE_SIZE: u64 = 4096;

/// CAP, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Entries an I/O queue may have at most (MQES is 0-based: MQES + 1).
    pub max_queue_entries: u32,
    /// CAP.CQR: queues must be physically contiguous (the driver's always are).
    pub contiguous_queues: bool,
    /// How long CSTS.RDY may take to follow CC.EN, in milliseconds (TO is in
    /// 500 ms units).
    pub ready_timeout_ms: u64,
    /// Doorbell stride: doorbells are `4 << stride` bytes apart.
    pub doorbell_stride: u8,
    /// CAP.CSS bit 0: the NVM command set.
    pub nvm_command_set: bool,
    /// The smallest memory page, in bytes (2^(12 + MPSMIN)).
    pub min_page_size: u64,
    /// The largest memory page, in bytes (2^(12 + MPSMAX)).
    pub max_page_size: u64,
}

impl Capabilities {
    /// CAP's 64 bits, decoded.
    pub const fn decode(cap: u64) -> Capabilities {
        const fn field_of(cap: u64, shift: u32, bits: u32) -> u64 {
            (cap >> shift) & ((1 << bits) - 1)
        }
        Capabilities {
            max_queue_entries: field_of(cap, 0, 16) as u32 + 1,
            contiguous_queues: field_of(cap, 16, 1) == 1,
            ready_timeout_ms: field_of(cap, 24, 8) * 500,
            doorbell_stride: field_of(cap, 32, 4) as u8,
            nvm_command_set: field_of(cap, 37, 1) == 1,
            min_page_size: 1 << (12 + field_of(cap, 48, 4)),
            max_page_size: 1 << (12 + field_of(cap, 52, 4)),
        }
    }

    /// The byte after the highest doorbell of queue pairs 0 to `queues` - 1:
    /// what the register window must reach (in 64 bits: with a large stride
    /// it lies past what a 16-bit register offset reaches).
    pub const fn doorbells_end(&self, queues: u16) -> u64 {
        let stride = 4u64 << self.doorbell_stride;
        DOORBELLS as u64 + (2 * queues as u64 - 1) * stride + 4
    }

    /// The offset of queue `queue`'s submission-queue tail doorbell.
    pub const fn submission_tail_doorbell(&self, queue: u16) -> u16 {
        DOORBELLS + (2 * queue) * (4 << self.doorbell_stride)
    }

    /// The offset of queue `queue`'s completion-queue head doorbell.
    pub const fn completion_head_doorbell(&self, queue: u16) -> u16 {
        DOORBELLS + (2 * queue + 1) * (4 << self.doorbell_stride)
    }
}

/// AQA for admin queues of `submission` and `completion` entries (0-based fields).
pub const fn admin_queue_attributes(submission: u16, completion: u16) -> u32 {
    ((completion as u32 - 1) << 16) | (submission as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_decode_every_field_and_the_doorbells_follow_the_stride() {
        // MQES 2047, CQR, TO 15 (7.5 s), DSTRD 2, NVM, MPSMIN 0, MPSMAX 4.
        let cap = 2047 | 1 << 16 | 15 << 24 | 2 << 32 | 1 << 37 | 4 << 52;
        let decoded = Capabilities::decode(cap);
        assert_eq!(
            decoded,
            Capabilities {
                max_queue_entries: 2048,
                contiguous_queues: true,
                ready_timeout_ms: 7500,
                doorbell_stride: 2,
                nvm_command_set: true,
                min_page_size: 4096,
                max_page_size: 65536,
            }
        );
        // 16-byte doorbells: SQ y tail at 0x1000 + 2y * 16, CQ y head 16 later.
        assert_eq!(decoded.submission_tail_doorbell(0), 0x1000);
        assert_eq!(decoded.completion_head_doorbell(0), 0x1010);
        assert_eq!(decoded.submission_tail_doorbell(1), 0x1020);
        assert_eq!(decoded.completion_head_doorbell(1), 0x1030);
        let packed = Capabilities::decode(1 << 37);
        assert_eq!((packed.submission_tail_doorbell(1), packed.completion_head_doorbell(1)), (0x1008, 0x100c));
        // The window must reach the last doorbell's 4 bytes, in 64 bits.
        assert_eq!((packed.doorbells_end(2), decoded.doorbells_end(2)), (0x1010, 0x1034));
        assert_eq!(Capabilities::decode(15 << 32).doorbells_end(2), 0x1000 + 3 * (4 << 15) + 4);
        assert_eq!(admin_queue_attributes(32, 32), 0x001f_001f);
    }
}
