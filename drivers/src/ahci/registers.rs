//! AHCI register offsets and bits (AHCI 1.3.1, section 3: HBA memory
//! registers) and the ATA commands the driver sends.

/// HBA capabilities (read only).
pub const CAP: u16 = 0x00;
/// Global HBA control.
pub const GHC: u16 = 0x04;
/// Interrupt status: one bit per port (write 1 to clear).
pub const IS: u16 = 0x08;
/// Ports implemented: one bit per port.
pub const PI: u16 = 0x0c;
/// AHCI version.
pub const VS: u16 = 0x10;

/// CAP.NP: ports, minus one (bits 4:0).
pub const CAP_PORTS_MASK: u32 = 0x1f;
/// CAP.NCS: command slots per port, minus one (bits 12:8).
pub const CAP_SLOTS_SHIFT: u32 = 8;
/// CAP.SNCQ: the HBA supports native command queuing.
pub const CAP_NCQ: u32 = 1 << 30;
/// CAP.S64A: the HBA can address 64 bits of memory.
pub const CAP_64_BIT: u32 = 1 << 31;

/// GHC.HR: reset the whole HBA; it clears itself when the reset is over.
pub const GHC_RESET: u32 = 1 << 0;
/// GHC.IE: the HBA may raise its interrupt.
pub const GHC_INTERRUPTS: u32 = 1 << 1;
/// GHC.AE: AHCI mode (rather than legacy IDE emulation).
pub const GHC_AHCI: u32 = 1 << 31;

/// Where port 0's registers start.
pub const PORT_BASE: u16 = 0x100;
/// Bytes of registers per port.
pub const PORT_STRIDE: u16 = 0x80;
/// The most ports an HBA has.
pub const MAX_PORTS: u8 = 32;

/// PxCLB: command list base address, low 32 bits (1 KiB aligned).
pub const PX_CLB: u16 = 0x00;
/// PxCLBU: command list base address, high 32 bits.
pub const PX_CLBU: u16 = 0x04;
/// PxFB: received-FIS area base address, low 32 bits (256 B aligned).
pub const PX_FB: u16 = 0x08;
/// PxFBU: received-FIS area base address, high 32 bits.
pub const PX_FBU: u16 = 0x0c;
/// PxIS: the port's interrupt status (write 1 to clear).
pub const PX_IS: u16 = 0x10;
/// PxIE: which of the port's events interrupt.
pub const PX_IE: u16 = 0x14;
/// PxCMD: command and status.
pub const PX_CMD: u16 = 0x18;
/// PxTFD: the device's task-file status (bits 7:0) and error (bits 15:8).
pub const PX_TFD: u16 = 0x20;
/// PxSIG: the device's signature.
pub const PX_SIG: u16 = 0x24;
/// PxSSTS: SATA status (SStatus).
pub const PX_SSTS: u16 = 0x28;
/// PxSCTL: SATA control (SControl).
pub const PX_SCTL: u16 = 0x2c;
/// PxSERR: SATA error (SError, write 1 to clear).
pub const PX_SERR: u16 = 0x30;
/// PxSACT: SATA active, one bit per queued (NCQ) tag.
pub const PX_SACT: u16 = 0x34;
/// PxCI: command issue, one bit per command slot.
pub const PX_CI: u16 = 0x38;

/// PxCMD.ST: the port processes its command list.
pub const CMD_START: u32 = 1 << 0;
/// PxCMD.SUD: spin up the device.
pub const CMD_SPIN_UP: u32 = 1 << 1;
/// PxCMD.POD: power on the device.
pub const CMD_POWER_ON: u32 = 1 << 2;
/// PxCMD.FRE: the port may write received FISes to memory.
pub const CMD_FIS_RECEIVE: u32 = 1 << 4;
/// PxCMD.FR: the FIS receive engine is running.
pub const CMD_FIS_RUNNING: u32 = 1 << 14;
/// PxCMD.CR: the command list engine is running.
pub const CMD_LIST_RUNNING: u32 = 1 << 15;

/// PxIS.DHRS: a device-to-host register FIS arrived (non-queued completion).
pub const IS_REGISTER_FIS: u32 = 1 << 0;
/// PxIS.PSS: a PIO setup FIS arrived.
pub const IS_PIO_SETUP: u32 = 1 << 1;
/// PxIS.DSS: a DMA setup FIS arrived.
pub const IS_DMA_SETUP: u32 = 1 << 2;
/// PxIS.SDBS: a set-device-bits FIS arrived (NCQ completions).
pub const IS_SET_DEVICE_BITS: u32 = 1 << 3;
/// PxIS.OFS: the device sent more data than the PRDT holds.
pub const IS_OVERFLOW: u32 = 1 << 24;
/// PxIS.IFS: a fatal SATA interface error.
pub const IS_INTERFACE_FATAL: u32 = 1 << 27;
/// PxIS.HBDS: a host bus data error (a bad memory access).
pub const IS_HOST_BUS_DATA: u32 = 1 << 28;
/// PxIS.HBFS: a host bus fatal error.
pub const IS_HOST_BUS_FATAL: u32 = 1 << 29;
/// PxIS.TFES: the device reported an error in its status (ERR set).
pub const IS_TASK_FILE_ERROR: u32 = 1 << 30;
/// The PxIS bits that stop the port: error recovery must follow.
pub const IS_ERRORS: u32 = IS_TASK_FILE_ERROR | IS_HOST_BUS_FATAL | IS_HOST_BUS_DATA | IS_INTERFACE_FATAL | IS_OVERFLOW;
/// The events that interrupt: completions of both kinds and every error.
pub const IE_ENABLED: u32 = IS_REGISTER_FIS | IS_PIO_SETUP | IS_DMA_SETUP | IS_SET_DEVICE_BITS | IS_ERRORS;

/// Task-file status: the device reports an error.
pub const TFD_ERROR: u32 = 1 << 0;
/// Task-file status: the device wants to move PIO data.
pub const TFD_DATA_REQUEST: u32 = 1 << 3;
/// Task-file status: device fault.
pub const TFD_FAULT: u32 = 1 << 5;
/// Task-file status: the device is busy.
pub const TFD_BUSY: u32 = 1 << 7;
/// Task-file error register (bits 15:8), ABRT: the command was aborted.
pub const TFD_ABORTED: u32 = 1 << (8 + 2);
/// Task-file error register, IDNF: the sector was not found.
pub const TFD_NOT_FOUND: u32 = 1 << (8 + 4);
/// Task-file error register, UNC: uncorrectable data.
pub const TFD_UNCORRECTABLE: u32 = 1 << (8 + 6);
/// Task-file error register, ICRC: interface CRC error.
pub const TFD_INTERFACE_CRC: u32 = 1 << (8 + 7);
/// PxTFD bits 15:8: the error register (ERR) the last FIS carried.
pub const TFD_ERROR_REGISTER: u32 = 0xff << 8;

/// PxSERR.ERR.I: a data integrity error the link recovered from.
pub const SERR_RECOVERED_DATA: u32 = 1 << 0;
/// PxSERR.ERR.M: a communication error the link recovered from.
pub const SERR_RECOVERED_COMMUNICATION: u32 = 1 << 1;
/// PxSERR.DIAG.N: PhyRdy changed (the link went down or came up).
pub const SERR_PHY_READY_CHANGE: u32 = 1 << 16;

/// PxSSTS.DET (bits 3:0).
pub const SSTS_DETECTION_MASK: u32 = 0xf;
/// PxSSTS.DET: a device is present and the link is up.
pub const SSTS_DEVICE_PRESENT: u32 = 3;
/// PxSCTL.DET = 1: send COMRESET (a port reset) while it stays written.
pub const SCTL_RESET: u32 = 1;
/// PxSIG of an ATAPI device (ATA disks answer 0x0000_0101).
pub const SIGNATURE_ATAPI: u32 = 0xeb14_0101;

/// IDENTIFY DEVICE (PIO data in, 512 bytes).
pub const COMMAND_IDENTIFY: u8 = 0xec;
/// READ DMA EXT (LBA48).
pub const COMMAND_READ_DMA_EXT: u8 = 0x25;
/// WRITE DMA EXT (LBA48).
pub const COMMAND_WRITE_DMA_EXT: u8 = 0x35;
/// READ FPDMA QUEUED (NCQ).
pub const COMMAND_READ_FPDMA_QUEUED: u8 = 0x60;
/// WRITE FPDMA QUEUED (NCQ).
pub const COMMAND_WRITE_FPDMA_QUEUED: u8 = 0x61;

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;

/// The offset of port `port`'s register `register` in the HBA's registers.
pub const fn port_register(port: u8, register: u16) -> u16 {
    PORT_BASE + port as u16 * PORT_STRIDE + register
}
