//! The memory the HBA reads and writes while a port runs: the command list,
//! the received-FIS area, one command table per slot, and the port's own
//! IDENTIFY area, and how one slot's command is written into them.

use alloc::vec::Vec;

use dmakit::dma::{Cause, CoherentMemory, DmaPlatform, IoFailure, IoReturn, Specification};

use super::registers::SECTOR_SIZE;
use super::structures::*;

/// Where shared memory with `alignment` may live for an HBA of `address_bits`.
const fn memory_specification(alignment: u64, address_bits: u8) -> Specification {
    Specification { alignment, num_address_bits: address_bits, ..Specification::UNLIMITED_64 }
}

/// The memory the HBA reads and writes while the port runs.
pub(super) struct PortMemory {
    /// 32 command headers, 1 KiB aligned.
    pub(super) command_list: CoherentMemory,
    /// Where the HBA copies the FISes the device sends, 256 B aligned.
    pub(super) received_fis: CoherentMemory,
    /// One command table per slot, each 128-byte aligned.
    pub(super) tables: CoherentMemory,
    /// Where IDENTIFY DEVICE puts its 512 bytes (the port's own, not a request's).
    pub(super) identify: CoherentMemory,
}

impl PortMemory {
    pub(super) fn allocate(platform: &'static dyn DmaPlatform, address_bits: u8) -> Result<PortMemory, IoFailure> {
        let tables_bytes = COMMAND_TABLE_BYTES * COMMAND_SLOTS as u64;
        let wanted = [(COMMAND_LIST_BYTES, 1024), (RECEIVED_FIS_BYTES, 256), (tables_bytes, 128), (SECTOR_SIZE, 2)];
        let mut made = Vec::with_capacity(wanted.len());
        for (bytes, alignment) in wanted {
            match CoherentMemory::allocate(platform, bytes, memory_specification(alignment, address_bits)) {
                Ok(memory) => made.push(memory),
                Err(failure) => {
                    // The HBA has not been given any of it yet: it can go back.
                    for memory in made {
                        let _ = memory.release();
                    }
                    return Err(failure);
                }
            }
        }
        let mut made = made.into_iter();
        let mut next = || made.next().expect("one memory per wanted area");
        Ok(PortMemory { command_list: next(), received_fis: next(), tables: next(), identify: next() })
    }

    /// Frees the memory: only once the port's engines are stopped.
    pub(super) fn release(self) {
        for memory in [self.command_list, self.received_fis, self.tables, self.identify] {
            if let Err(failure) = memory.release() {
                log::error!("Ahci: port memory not released: {failure}");
            }
        }
    }

    /// Where slot `slot`'s command table starts in `tables`.
    pub(super) fn table_offset(slot: usize) -> u64 {
        slot as u64 * COMMAND_TABLE_BYTES
    }

    /// The byte count the HBA wrote into slot `slot`'s header (PRDBC).
    pub(super) fn bytes_moved(&self, slot: usize) -> u64 {
        let mut bytes = [0u8; 4];
        let _ = self.command_list.read_bytes(slot as u64 * 32 + 4, &mut bytes);
        u64::from(u32::from_le_bytes(bytes))
    }

    /// Writes slot `slot`'s PRDT from `entries`, its command FIS and its header.
    pub(super) fn load_slot(
        &self,
        slot: usize,
        entries: &[PrdtEntry],
        fis: RegisterFis,
        flags: u16,
    ) -> Result<(), IoFailure> {
        if entries.len() > PRDT_ENTRIES {
            // The specification allows one PRDT of segments, so this does not happen.
            let cause = Cause::EntryFormat { format: "PRDT", rule: "a command table holds at most 64 entries" };
            return Err(IoFailure::new(IoReturn::NoResources, cause));
        }
        let table = Self::table_offset(slot);
        for (index, entry) in entries.iter().enumerate() {
            self.tables
                .write_bytes(table + PRDT_OFFSET + (index * size_of::<PrdtEntry>()) as u64, &entry.to_bytes())?;
        }
        self.tables.write_bytes(table, &fis.to_bytes())?;
        let header = CommandHeader::new(self.tables.device_address() + table, entries.len() as u16, flags);
        self.command_list.write_bytes(slot as u64 * size_of::<CommandHeader>() as u64, &header.to_bytes())?;
        Ok(())
    }
}
