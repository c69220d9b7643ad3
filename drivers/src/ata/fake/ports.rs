//! The fake channel's three register blocks as the driver reads and writes
//! them: the task file, alternate status and device control, and the
//! bus-master registers.

use dmakit::io::RegisterIo;

use super::super::registers::*;
use super::{Block, FakePorts};

fn push(pair: &mut [u8; 2], value: u8) {
    pair[1] = pair[0];
    pair[0] = value;
}

impl RegisterIo for FakePorts {
    fn read8(&self, offset: u16) -> u8 {
        let state = self.0.state.lock();
        let hostility = self.0.hostility.lock();
        match (self.1, offset) {
            (Block::Command, STATUS) | (Block::Control, DEVICE_CONTROL) => hostility.status(state.status),
            (Block::Command, LBA_MID | LBA_HIGH) => 0,
            // The fake's one error is an aborted command (ABRT, bit 2).
            (Block::Command, ERROR) => {
                if state.status & STATUS_ERROR != 0 {
                    hostility.error(0x04)
                } else {
                    hostility.error(0)
                }
            }
            (Block::BusMaster, BM_STATUS) => hostility.engine_status(state.bm_status),
            _ => panic!("read8 of {offset:#x}"),
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        assert!(matches!(self.1, Block::Command) && offset == DATA, "read16 of {offset:#x}");
        let mut state = self.0.state.lock();
        let word = state.identify.pop().unwrap_or(0);
        if state.identify.is_empty() {
            state.status = STATUS_READY;
        }
        word
    }

    fn read32(&self, offset: u16) -> u32 {
        panic!("read32 of {offset:#x}")
    }

    fn write8(&self, offset: u16, value: u8) {
        let mut state = self.0.state.lock();
        match (self.1, offset) {
            (Block::Command, SECTOR_COUNT) => push(&mut state.count, value),
            (Block::Command, LBA_LOW) => push(&mut state.lba[0], value),
            (Block::Command, LBA_MID) => push(&mut state.lba[1], value),
            (Block::Command, LBA_HIGH) => push(&mut state.lba[2], value),
            (Block::Command, DRIVE) => {
                assert_eq!(value & DRIVE_LBA, DRIVE_LBA, "LBA mode");
                let drive = (value >> 4) & 1;
                // Selecting the drive already selected changes nothing.
                if drive != state.drive {
                    state.drive = drive;
                    state.status = self.0.status_of(&state, drive);
                }
            }
            (Block::Command, COMMAND) => self.0.command(&mut state, value),
            (Block::Control, DEVICE_CONTROL) => {
                let (was, now) = (state.control & CONTROL_SOFTWARE_RESET, value & CONTROL_SOFTWARE_RESET);
                state.control = value;
                if was != now {
                    self.0.software_reset(&mut state, now != 0);
                }
            }
            (Block::BusMaster, BM_COMMAND) => {
                state.bm_command = value;
                if value & BM_START != 0 {
                    self.0.start_engine(&mut state);
                } else {
                    self.0.stop_engine(&mut state);
                }
            }
            (Block::BusMaster, BM_STATUS) => state.bm_status &= !(value & (BM_ERROR | BM_INTERRUPT)),
            _ => panic!("write8 of {offset:#x}"),
        }
    }

    fn write16(&self, offset: u16, _value: u16) {
        panic!("write16 of {offset:#x}")
    }

    fn write32(&self, offset: u16, value: u32) {
        assert!(matches!(self.1, Block::BusMaster) && offset == BM_PRD_TABLE, "write32 of {offset:#x}");
        assert_eq!(value % 4, 0, "PRD table must be dword aligned");
        self.0.state.lock().prd_table = value;
    }
}
