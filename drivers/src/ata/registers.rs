//! ATA task-file registers, commands and status bits, and the PIIX bus-master
//! registers (Intel 82371SB datasheet, "IDE Bus Master" section; ATA-ACS).

/// Command block, offset 0: 16-bit data port (PIO).
pub const DATA: u16 = 0;
/// Command block, offset 1: error (read) / features (write).
pub const ERROR: u16 = 1;
/// Command block, offset 2: sector count.
pub const SECTOR_COUNT: u16 = 2;
/// Command block, offset 3: LBA bits 0-7 (and 24-31 for LBA48's first write).
pub const LBA_LOW: u16 = 3;
/// Command block, offset 4: LBA bits 8-15 (ATAPI signature: 0x14).
pub const LBA_MID: u16 = 4;
/// Command block, offset 5: LBA bits 16-23 (ATAPI signature: 0xeb).
pub const LBA_HIGH: u16 = 5;
/// Command block, offset 6: drive select and LBA28 bits 24-27.
pub const DRIVE: u16 = 6;
/// Command block, offset 7, read: the drive's status (reading it also
/// acknowledges the drive's interrupt).
pub const STATUS: u16 = 7;
/// Command block, offset 7, written: the command the drive runs. The same port
/// as [`STATUS`]; the name says which way the byte goes.
pub const COMMAND: u16 = 7;
/// Control block, offset 0: alternate status (read) / device control (write).
pub const DEVICE_CONTROL: u16 = 0;

/// Status: an error occurred.
pub const STATUS_ERROR: u8 = 0x01;
/// Status: data request (PIO data ready).
pub const STATUS_DRQ: u8 = 0x08;
/// Status: device fault.
pub const STATUS_FAULT: u8 = 0x20;
/// Status: device ready.
pub const STATUS_READY: u8 = 0x40;
/// Status: busy.
pub const STATUS_BUSY: u8 = 0x80;

/// Drive register: LBA addressing, and the obsolete bits that must be one.
pub const DRIVE_LBA: u8 = 0xe0;
/// Device control: interrupts off (nIEN).
pub const CONTROL_NO_INTERRUPTS: u8 = 0x02;
/// Device control: software reset (SRST) of both drives of the channel, for as
/// long as it is set.
pub const CONTROL_SOFTWARE_RESET: u8 = 0x04;

/// IDENTIFY DEVICE (PIO in, 512 bytes).
pub const COMMAND_IDENTIFY: u8 = 0xec;
/// READ DMA (LBA28).
pub const COMMAND_READ_DMA: u8 = 0xc8;
/// WRITE DMA (LBA28).
pub const COMMAND_WRITE_DMA: u8 = 0xca;
/// READ DMA EXT (LBA48).
pub const COMMAND_READ_DMA_EXT: u8 = 0x25;
/// WRITE DMA EXT (LBA48).
pub const COMMAND_WRITE_DMA_EXT: u8 = 0x35;
/// FLUSH CACHE: the drive's volatile write cache to the medium (no data).
pub const COMMAND_FLUSH_CACHE: u8 = 0xe7;
/// FLUSH CACHE EXT: the same, for 48-bit drives (no data).
pub const COMMAND_FLUSH_CACHE_EXT: u8 = 0xea;

/// Bus master, offset 0: command (bit 0 start, bit 3 direction).
pub const BM_COMMAND: u16 = 0;
/// Bus master, offset 2: status (bit 0 active, 1 error, 2 interrupt; 1 and 2
/// are cleared by writing 1).
pub const BM_STATUS: u16 = 2;
/// Bus master, offset 4: physical address of the PRD table, 32 bits.
pub const BM_PRD_TABLE: u16 = 4;
/// Bus-master registers per channel.
pub const BM_CHANNEL_SIZE: u16 = 8;

/// BM command: start the engine.
pub const BM_START: u8 = 0x01;
/// BM command: the engine writes memory (a disk read).
pub const BM_WRITES_MEMORY: u8 = 0x08;
/// BM status: transferring.
pub const BM_ACTIVE: u8 = 0x01;
/// BM status: the engine hit an error.
pub const BM_ERROR: u8 = 0x02;
/// BM status: the drive raised its interrupt.
pub const BM_INTERRUPT: u8 = 0x04;

/// Bytes per ATA sector.
pub const SECTOR_SIZE: u64 = 512;
