//! The HBA as a whole: reset into AHCI mode, what it can do (CAP), which ports
//! have a device, and its global interrupt enable.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::{Cause, IoFailure, IoReturn};
use dmakit::io::RegisterIo;
use dmakit::time::Waiter;

use super::registers::*;

/// How long an HBA reset may take (AHCI 1.3.1 allows the HBA one second).
const RESET_TIMEOUT_MS: u64 = 1_000;

/// What CAP says the HBA can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Ports the HBA has (CAP.NP + 1); `PI` says which exist.
    pub ports: u8,
    /// Command slots per port (CAP.NCS + 1).
    pub slots: usize,
    /// Native command queuing (CAP.SNCQ).
    pub ncq: bool,
    /// 64-bit addresses for the command list, FIS area, tables and data (CAP.S64A).
    pub addresses_64_bit: bool,
}

impl Capabilities {
    /// Decodes the CAP register.
    pub fn from_register(cap: u32) -> Capabilities {
        Capabilities {
            ports: (cap & CAP_PORTS_MASK) as u8 + 1,
            slots: ((cap >> CAP_SLOTS_SHIFT) & 0x1f) as usize + 1,
            ncq: cap & CAP_NCQ != 0,
            addresses_64_bit: cap & CAP_64_BIT != 0,
        }
    }

    /// Address bits the HBA drives.
    pub fn address_bits(&self) -> u8 {
        if self.addresses_64_bit { 64 } else { 32 }
    }
}

/// An HBA after its reset.
pub struct Hba<R: RegisterIo> {
    registers: Arc<R>,
    /// Bytes of the ABAR mapped: no register past them may be touched.
    mapped_bytes: u64,
    capabilities: Capabilities,
}

impl<R: RegisterIo> Hba<R> {
    /// Puts the HBA in AHCI mode and resets it (GHC.HR, which stops every port
    /// and forgets every address the firmware gave it), then reads CAP.
    /// `Timeout` if the reset never ends. `mapped_bytes` is how much of the
    /// ABAR `registers` reaches.
    pub fn reset(registers: Arc<R>, mapped_bytes: u64, waiter: &'static dyn Waiter) -> Result<Hba<R>, IoFailure> {
        // AE first: some HBAs ignore other GHC bits in legacy mode.
        registers.write32(GHC, registers.read32(GHC) | GHC_AHCI);
        registers.write32(GHC, GHC_AHCI | GHC_RESET);
        waiter.wait_until(RESET_TIMEOUT_MS, &mut || registers.read32(GHC) & GHC_RESET == 0).map_err(|_| {
            IoFailure::new(IoReturn::Timeout, Cause::TimedOut { milliseconds: RESET_TIMEOUT_MS, last: None })
        })?;
        // The reset may have dropped AE again; interrupts stay off until the
        // handler is registered.
        registers.write32(GHC, GHC_AHCI);
        let capabilities = Capabilities::from_register(registers.read32(CAP));
        Ok(Hba { registers, mapped_bytes, capabilities })
    }

    /// What the HBA can do.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The HBA's registers.
    pub fn registers(&self) -> &Arc<R> {
        &self.registers
    }

    /// The AHCI version (VS), e.g. `0x0001_0000` for 1.0.
    pub fn version(&self) -> u32 {
        self.registers.read32(VS)
    }

    /// Implemented ports whose link is up with a device on it (PxSSTS.DET = 3).
    /// PI is the HBA's word, not a promise that the BAR holds the port: a port
    /// whose registers lie past the mapped ABAR (a BAR smaller than the 0x1100
    /// bytes 32 ports need, as QEMU's 4 KiB one is) is skipped with its cause
    /// logged, never read (on the machine that read trips the MMIO window's
    /// bounds assert: a panic at boot).
    pub fn ports_with_device(&self) -> Vec<u8> {
        let implemented = self.registers.read32(PI);
        (0..MAX_PORTS)
            .filter(|&port| implemented & (1 << port) != 0)
            .filter(|&port| match self.port_outside_registers(port) {
                None => true,
                Some(cause) => {
                    log::error!("Ahci: port {port} is implemented (PI) but not driven: {cause}");
                    false
                }
            })
            .filter(|&port| {
                self.registers.read32(port_register(port, PX_SSTS)) & SSTS_DETECTION_MASK == SSTS_DEVICE_PRESENT
            })
            .collect()
    }

    /// Why port `port`'s registers cannot be reached, if they cannot:
    /// `OutOfRange` with the port's register bytes and the bytes mapped.
    pub fn port_outside_registers(&self, port: u8) -> Option<Cause> {
        let offset = u64::from(port_register(port, 0));
        let length = u64::from(PORT_STRIDE);
        (offset + length > self.mapped_bytes).then_some(Cause::OutOfRange { offset, length, size: self.mapped_bytes })
    }

    /// Lets the HBA raise its interrupt (GHC.IE): after the handler is registered.
    pub fn enable_interrupts(&self) {
        self.registers.write32(GHC, GHC_AHCI | GHC_INTERRUPTS);
    }
}
