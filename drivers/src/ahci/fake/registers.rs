//! The fake HBA's registers (its ABAR) as the driver reads and writes them:
//! the HBA's own, port 0's, and an empty port's.

use core::sync::atomic::Ordering;

use dmakit::io::RegisterIo;

use super::super::registers::*;
use super::{Busy, FakeRegisters, Port};

impl RegisterIo for FakeRegisters {
    fn read8(&self, offset: u16) -> u8 {
        panic!("read8 of {offset:#x}")
    }

    fn read16(&self, offset: u16) -> u16 {
        panic!("read16 of {offset:#x}")
    }

    fn read32(&self, offset: u16) -> u32 {
        self.0.inside_abar(offset);
        let mut state = self.0.state.lock();
        if offset == port_register(0, PX_TFD) && state.port.busy_looks > 0 {
            // Each look is a moment of the drive's reset going by.
            state.port.busy_looks -= 1;
            if state.port.busy_looks == 0 {
                state.port.tfd = 0x50;
            }
            return TFD_BUSY;
        }
        let port = &state.port;
        match offset {
            CAP => state.cap,
            GHC => state.ghc,
            IS => state.is | u32::from(port.is & port.ie != 0),
            PI => self.0.ports_implemented.load(Ordering::Relaxed),
            VS => 0x0001_0000,
            _ if offset >= port_register(1, 0) => match (offset - PORT_BASE) % PORT_STRIDE {
                PX_SSTS => 0,
                PX_CMD => 0,
                register => panic!("read of an empty port's register {register:#x}"),
            },
            _ => match offset - port_register(0, 0) {
                PX_CLB => port.clb[0],
                PX_CLBU => port.clb[1],
                PX_FB => port.fb[0],
                PX_FBU => port.fb[1],
                PX_IS => port.is,
                PX_IE => port.ie,
                PX_CMD => port.cmd,
                PX_TFD => self.0.hostility.lock().task_file(port.tfd),
                PX_SIG => 0x0000_0101,
                PX_SSTS => SSTS_DEVICE_PRESENT | 0x110,
                PX_SCTL => port.sctl,
                PX_SERR => port.serr,
                PX_SACT => self.0.hostility.lock().busy(Busy::Active, port.sact),
                PX_CI => self.0.hostility.lock().busy(Busy::Issued, port.ci),
                register => panic!("read of port register {register:#x}"),
            },
        }
    }

    fn write8(&self, offset: u16, _value: u8) {
        panic!("write8 of {offset:#x}")
    }

    fn write16(&self, offset: u16, _value: u16) {
        panic!("write16 of {offset:#x}")
    }

    fn write32(&self, offset: u16, value: u32) {
        self.0.inside_abar(offset);
        let mut state = self.0.state.lock();
        match offset {
            GHC if value & GHC_RESET != 0 => {
                *self.0.resets.lock() += 1;
                state.ghc = GHC_AHCI;
                if !self.0.stuck.load(Ordering::Relaxed) {
                    state.port = Port { tfd: 0x50, ..Port::default() };
                }
            }
            GHC => state.ghc = value,
            IS => state.is &= !value,
            _ if offset >= port_register(1, 0) => panic!("write of empty port 1's register {offset:#x}"),
            _ => self.0.port_write(&mut state, offset - port_register(0, 0), value),
        }
    }
}
