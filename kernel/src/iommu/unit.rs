//! One VT-d remapping unit: bringing it up, giving devices their context
//! entries, invalidating its caches, and reading its fault records.
//!
//! The unit is written against [`RegisterIo`], so the whole sequence runs on the
//! host against a fake register block (`fake.rs`). Invalidations go through the
//! registers (context command, IOTLB invalidate), never through the queued
//! interface: once queued invalidation is on, QEMU ignores register-based
//! invalidation, and turning it off again is its own dance.
//!
//! Bring-up, in order:
//!
//! 1. read CAP and ECAP; pick the page-table depth (3 levels if SAGAW offers it);
//! 2. mask the fault interrupt (faults are polled) and clear old fault records;
//! 3. allocate a zeroed root table, write RTADDR, command SRTP, wait for RTPS;
//! 4. invalidate the context cache and the IOTLB globally;
//! 5. command TE and wait for TES: from now on every DMA is translated, and a
//!    device without a context entry faults.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use x86_64::PhysAddr;

use super::faults::{FaultLog, FaultRecords};
use super::page_table::{Coherence, PageTable};
use super::registers::*;
use super::tables::{self, AddressWidth, ContextEntry, ENTRY_SIZE, RootEntry};
use crate::dma::{
    Cause, DmaPlatform, FaultAccess, FrameFill, IoFailure, IoReturn, IommuCause, IommuFault, IommuTable, UnitStep,
    fault_meaning,
};
use crate::io::RegisterIo;
use crate::memory::{Constraints, FRAME_SIZE};

/// How many times a command's completion bit is read before giving up. Counting
/// reads, not timer ticks, bounds the wait even with interrupts off; QEMU
/// answers at the first read, real units within microseconds.
const WAIT_POLLS: u32 = 1_000_000;

/// The register page dmakit maps for a unit: records or IOTLB registers beyond it
/// cannot be reached.
pub const REGISTER_PAGE: u16 = 0x1000;

pub use super::faults::FAULT_LOG_LENGTH;

/// Whether `unmap` may invalidate pages, or must invalidate the whole domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageInvalidation {
    /// CAP.PSI: page-selective invalidation up to `2^maximum_mask` pages.
    Supported { maximum_mask: u8 },
    /// Domain-selective only.
    Unsupported,
}

/// What a new mapping needs from the unit (CAP.CM and CAP.RWBF), decided
/// once at start so that a map asks nothing of the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AfterMap {
    /// Nothing: the unit caches no not-present entries and buffers no table
    /// writes (QEMU's defaults).
    Nothing,
    /// CAP.RWBF: the unit buffers table writes; a write buffer flush makes it
    /// see the new leaves.
    FlushWriteBuffer,
    /// CAP.CM (caching mode, virtual IOMMUs): the unit may have cached the new
    /// IOVAs as not present, so they are invalidated (after a write buffer
    /// flush where the unit needs one).
    Invalidate,
}

/// The unit's bookkeeping, under one lock that also serialises register sequences.
///
/// Lock order: a domain's lock first, then this one, never the reverse (the
/// domains invalidate through the unit while they hold their own lock). So
/// nothing here calls into a domain while holding it: `take_fault`'s `belongs`
/// is answered from the state its domain locked before calling.
struct UnitState {
    root_table: PhysAddr,
    /// Bus -> its context table.
    context_tables: BTreeMap<u8, PhysAddr>,
    /// Requester ids that have a context entry.
    attached: BTreeSet<u16>,
    next_domain: u32,
    /// The faults read from the fault records.
    faults: FaultLog,
}

/// One remapping unit, translating.
pub struct Unit<R: RegisterIo> {
    number: usize,
    register_base: u64,
    registers: R,
    platform: &'static dyn DmaPlatform,
    capability: Capability,
    extended: ExtendedCapability,
    /// CAP.RWBF: table changes need a write buffer flush before the unit may
    /// read them (decoded once, like the facts below).
    needs_write_buffer_flush: bool,
    /// What a new mapping needs (read by the domains' `map`).
    pub(super) after_map: AfterMap,
    /// ECAP.IRO: the invalidate address register; the IOTLB invalidate
    /// register lies 8 bytes on.
    iotlb_offset: u16,
    /// CAP.DRD/DWD: the drain bits every IOTLB invalidation carries.
    iotlb_drain: u64,
    /// Depth of the domains' page tables.
    width: AddressWidth,
    /// The widest depth the unit supports (pass-through entries carry it).
    widest: AddressWidth,
    coherence: Coherence,
    /// Where tables may lie: below the unit's address width.
    placement: Constraints,
    page_invalidation: PageInvalidation,
    /// CAP.FRO and CAP.NFR: where the fault records lie.
    fault_records: FaultRecords,
    state: Mutex<UnitState>,
}

fn failure(code: IoReturn, cause: IommuCause) -> IoFailure {
    IoFailure::new(code, Cause::Iommu(cause))
}

/// The smallest address mask whose aligned block of `2^mask` pages holds pages
/// `[first, first + count)`: the block a page-selective invalidation covers.
pub fn covering_mask(first: u64, count: u64) -> u8 {
    let last = first + count.max(1) - 1;
    let mut mask = 0;
    while first >> mask != last >> mask {
        mask += 1;
    }
    mask
}

impl<R: RegisterIo> Unit<R> {
    /// Brings unit `number` (registers at physical `register_base`, reached
    /// through `registers`) up and turns translation on. Its tables come from
    /// `platform`.
    pub fn start(
        number: usize,
        register_base: u64,
        registers: R,
        platform: &'static dyn DmaPlatform,
    ) -> Result<Arc<Unit<R>>, IoFailure> {
        let capability = Capability(registers.read64(CAPABILITY));
        let extended = ExtendedCapability(registers.read64(EXTENDED_CAPABILITY));
        let width = [3, 4]
            .into_iter()
            .find(|&levels| capability.supports_levels(levels))
            .and_then(AddressWidth::with_levels)
            .ok_or(failure(IoReturn::IoError, IommuCause::NoSupportedDepth))?;
        let widest = if capability.supports_levels(4) { AddressWidth::FourLevel48 } else { width };
        let iotlb_offset = extended.iotlb_offset();
        if iotlb_offset + 16 > REGISTER_PAGE {
            return Err(failure(IoReturn::IoError, IommuCause::IotlbRegistersUnreachable));
        }
        let fault_records = FaultRecords::locate(capability, extended, REGISTER_PAGE)
            .map_err(|cause| failure(IoReturn::IoError, cause))?;
        let status = registers.read32(GLOBAL_STATUS);
        if status & QUEUED_INVALIDATION_ENABLED != 0 {
            return Err(failure(IoReturn::IoError, IommuCause::QueuedInvalidationOn));
        }
        // Below the unit's address width: a table pointer wider than MGAW is invalid.
        let placement = match capability.maximum_guest_address_width() {
            bits @ 12..52 => Constraints::below(PhysAddr::new(1 << bits)),
            _ => Constraints::NONE,
        };
        let coherence = if extended.coherent() { Coherence::Coherent } else { Coherence::FlushWrites };
        let page_invalidation = if capability.page_selective_invalidation() {
            PageInvalidation::Supported { maximum_mask: capability.maximum_address_mask() }
        } else {
            PageInvalidation::Unsupported
        };
        let after_map = match (capability.caching_mode(), capability.needs_write_buffer_flush()) {
            (true, _) => AfterMap::Invalidate,
            (false, true) => AfterMap::FlushWriteBuffer,
            (false, false) => AfterMap::Nothing,
        };
        let iotlb_drain = (if capability.drains_reads() { DRAIN_READS } else { 0 })
            | (if capability.drains_writes() { DRAIN_WRITES } else { 0 });
        let root_table = platform
            .allocate_frames(1, placement, FrameFill::Zeroed)
            .map_err(|_| failure(IoReturn::NoMemory, IommuCause::NoTableFrame(IommuTable::Root)))?;
        let unit = Unit {
            number,
            register_base,
            registers,
            platform,
            capability,
            extended,
            needs_write_buffer_flush: capability.needs_write_buffer_flush(),
            after_map,
            iotlb_offset,
            iotlb_drain,
            width,
            widest,
            coherence,
            placement,
            page_invalidation,
            fault_records,
            state: Mutex::new(UnitState {
                root_table,
                context_tables: BTreeMap::new(),
                attached: BTreeSet::new(),
                next_domain: 1,
                faults: FaultLog::new(),
            }),
        };
        // On a failure the root table stays allocated (leaked): the unit may
        // have latched its address already, and a freed frame could be reused.
        unit.bring_up()?;
        Ok(Arc::new(unit))
    }

    fn bring_up(&self) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        // Firmware may have left translation on with its own tables: off first,
        // so the unit never walks a half-built root table.
        if self.registers.read32(GLOBAL_STATUS) & TRANSLATION_ENABLE != 0 {
            self.global_command(TRANSLATION_ENABLE, Switch::Off, UnitStep::TranslationOff)?;
        }
        // Faults are polled: the interrupt stays masked.
        self.registers.write32(FAULT_EVENT_CONTROL, FAULT_INTERRUPT_MASK);
        self.collect_faults(&mut state);
        state.faults.forget();
        self.flush(state.root_table, FRAME_SIZE);
        // RTADDR bits 11:10 (translation table mode) stay 00: legacy root and context entries.
        self.registers.write64(ROOT_TABLE_ADDRESS, state.root_table.as_u64());
        self.global_command(SET_ROOT_TABLE_POINTER, Switch::Once, UnitStep::RootTablePointer)?;
        if self.needs_write_buffer_flush {
            self.write_buffer_flush(&mut state)?;
        }
        self.invalidate_context(&mut state, Granularity::Global, 0)?;
        self.invalidate_iotlb(&mut state, Granularity::Global, 0, 0)?;
        self.global_command(TRANSLATION_ENABLE, Switch::On, UnitStep::TranslationOn)
    }

    /// Waits until `done()` holds, at most [`WAIT_POLLS`] reads; a timeout is an error.
    fn wait(&self, step: UnitStep, mut done: impl FnMut(&R) -> bool) -> Result<(), IoFailure> {
        for _ in 0..WAIT_POLLS {
            if done(&self.registers) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(failure(IoReturn::Timeout, IommuCause::UnitTimedOut(step)))
    }

    /// Writes the global command register: the features on now (from the status
    /// register, one-shot bits left out), with `command` switched as asked, then
    /// waits until the status shows it.
    fn global_command(&self, command: u32, switch: Switch, step: UnitStep) -> Result<(), IoFailure> {
        let persistent = self.registers.read32(GLOBAL_STATUS) & !ONE_SHOT_COMMANDS;
        let value = match switch {
            Switch::On | Switch::Once => persistent | command,
            Switch::Off => persistent & !command,
        };
        self.registers.write32(GLOBAL_COMMAND, value);
        self.wait(step, |registers| {
            let status = registers.read32(GLOBAL_STATUS) & command != 0;
            match switch {
                Switch::On | Switch::Once => status,
                Switch::Off => !status,
            }
        })
    }

    /// Flushes the table writes a CAP.RWBF unit buffers internally (callers
    /// ask only such units); the `_state` argument proves the unit's lock is held.
    fn write_buffer_flush(&self, _state: &mut UnitState) -> Result<(), IoFailure> {
        let idle = |registers: &R| registers.read32(GLOBAL_STATUS) & WRITE_BUFFER_FLUSH == 0;
        // A flush that timed out earlier may still be running: the unit takes
        // no new one until it ends.
        self.wait(UnitStep::WriteBufferFlush, idle)?;
        let persistent = self.registers.read32(GLOBAL_STATUS) & !ONE_SHOT_COMMANDS;
        self.registers.write32(GLOBAL_COMMAND, persistent | WRITE_BUFFER_FLUSH);
        self.wait(UnitStep::WriteBufferFlush, idle)
    }

    fn flush(&self, address: PhysAddr, length: u64) {
        if self.coherence == Coherence::FlushWrites {
            self.platform.flush_for_device(address, length);
        }
    }

    /// Context-cache invalidation, global or for one device (`source`); the
    /// `_state` argument proves the unit's lock is held.
    fn invalidate_context(
        &self,
        _state: &mut UnitState,
        granularity: Granularity,
        source: u16,
    ) -> Result<(), IoFailure> {
        let mut command = INVALIDATE_CONTEXT_CACHE | ((granularity as u64) << CONTEXT_REQUEST_SHIFT);
        if granularity == Granularity::Selective {
            // Function mask 0: exactly this function.
            command |= u64::from(source) << CONTEXT_SOURCE_SHIFT;
        }
        self.registers.write64(CONTEXT_COMMAND, command);
        let mut last = 0;
        self.wait(UnitStep::ContextInvalidation, |registers| {
            last = registers.read64(CONTEXT_COMMAND);
            last & INVALIDATE_CONTEXT_CACHE == 0
        })?;
        if (last >> CONTEXT_ACTUAL_SHIFT) & 3 == 0 {
            return Err(failure(IoReturn::IoError, IommuCause::ContextInvalidationRefused));
        }
        Ok(())
    }

    /// IOTLB invalidation: global, of one domain, or (page-selective) of the
    /// `2^mask` pages at `address` in one domain (`address_and_mask` is the
    /// invalidate address register's value then). Waits for completion, with
    /// reads and writes in flight drained where the unit can.
    fn invalidate_iotlb(
        &self,
        _state: &mut UnitState,
        granularity: Granularity,
        domain: u16,
        address_and_mask: u64,
    ) -> Result<(), IoFailure> {
        let offset = self.iotlb_offset;
        // An invalidation that timed out earlier may still be in progress:
        // software must not write the register again until IVT clears.
        self.wait(UnitStep::EarlierIotlbInvalidation, |registers| {
            registers.read64(offset + 8) & INVALIDATE_IOTLB == 0
        })?;
        if granularity == Granularity::Selective {
            self.registers.write64(offset, address_and_mask);
        }
        let mut command = INVALIDATE_IOTLB | ((granularity as u64) << IOTLB_REQUEST_SHIFT);
        if granularity != Granularity::Global {
            command |= u64::from(domain) << IOTLB_DOMAIN_SHIFT;
        }
        self.registers.write64(offset + 8, command | self.iotlb_drain);
        let mut last = 0;
        self.wait(UnitStep::IotlbInvalidation, |registers| {
            last = registers.read64(offset + 8);
            last & INVALIDATE_IOTLB == 0
        })?;
        if (last >> IOTLB_ACTUAL_SHIFT) & 3 == 0 {
            return Err(failure(IoReturn::IoError, IommuCause::IotlbInvalidationRefused));
        }
        Ok(())
    }

    /// Makes the unit forget pages `[first_page, first_page + count)` of
    /// `domain`: page-selective where CAP.PSI allows a mask that covers them,
    /// domain-selective otherwise (or if the unit refuses the page-selective one).
    /// When it returns, the unit no longer translates those pages from its caches.
    pub fn invalidate_pages(&self, domain: u16, first_page: u64, count: u64) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        if self.needs_write_buffer_flush {
            self.write_buffer_flush(&mut state)?;
        }
        let mask = covering_mask(first_page, count);
        if let PageInvalidation::Supported { maximum_mask } = self.page_invalidation
            && mask <= maximum_mask
        {
            let address = ((first_page >> mask) << mask) * FRAME_SIZE;
            match self.invalidate_iotlb(&mut state, Granularity::Selective, domain, address | u64::from(mask)) {
                Ok(()) => return Ok(()),
                // Refused: the domain-selective one may be done. Anything else
                // (a timeout: the unit may still be at it) is the caller's.
                Err(error) if error.cause() == Cause::Iommu(IommuCause::IotlbInvalidationRefused) => {
                    log::warn!("{error}; invalidating domain {domain} whole instead")
                }
                Err(error) => return Err(error),
            }
        }
        self.invalidate_iotlb(&mut state, Granularity::Domain, domain, 0)
    }

    /// A write buffer flush on its own: what a new mapping needs on a CAP.RWBF
    /// unit without caching mode ([`AfterMap::FlushWriteBuffer`]).
    pub fn flush_write_buffer(&self) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        self.write_buffer_flush(&mut state)
    }

    fn write_entry(&self, address: PhysAddr, low: u64, high: u64, making_present: bool) {
        // Order matters to a unit that may read the entry meanwhile: when it
        // becomes present the high half goes first, then the low half with P;
        // when it goes away, P goes first.
        let halves = if making_present { [(8, high), (0, low)] } else { [(0, low), (8, high)] };
        for (offset, value) in halves {
            // SAFETY: the entry lies in a root or context table this unit
            // allocated and only it writes (under its lock).
            unsafe { self.platform.write_physical(address + offset, &value.to_le_bytes()) };
        }
        self.flush(address, ENTRY_SIZE);
    }

    /// The context table of `bus`, made (zeroed, flushed, linked into the root
    /// table) on first use.
    fn context_table(&self, state: &mut UnitState, bus: u8) -> Result<PhysAddr, IoFailure> {
        if let Some(&table) = state.context_tables.get(&bus) {
            return Ok(table);
        }
        let table = self
            .platform
            .allocate_frames(1, self.placement, FrameFill::Zeroed)
            .map_err(|_| failure(IoReturn::NoMemory, IommuCause::NoTableFrame(IommuTable::Context)))?;
        self.flush(table, FRAME_SIZE);
        let entry = RootEntry::present(table);
        self.write_entry(state.root_table + u64::from(bus) * ENTRY_SIZE, entry.low, entry.high, true);
        state.context_tables.insert(bus, table);
        Ok(table)
    }

    /// Writes `entry` for `source` and makes the unit use it: the context cache
    /// entry of that one device is invalidated (device-selective: the other
    /// devices' cached entries are still right), then the domain's IOTLB
    /// entries (required after a context entry changes).
    fn install(&self, state: &mut UnitState, source: u16, entry: ContextEntry) -> Result<(), IoFailure> {
        let table = self.context_table(state, tables::bus(source))?;
        let address = table + u64::from(tables::context_index(source)) * ENTRY_SIZE;
        if state.attached.contains(&source) {
            // A present entry changes: take it away first so the unit never
            // reads half the old entry and half the new one.
            self.write_entry(address, 0, 0, false);
            if self.needs_write_buffer_flush {
                self.write_buffer_flush(state)?;
            }
            self.invalidate_context(state, Granularity::Selective, source)?;
        }
        self.write_entry(address, entry.low, entry.high, true);
        if self.needs_write_buffer_flush {
            self.write_buffer_flush(state)?;
        }
        self.invalidate_context(state, Granularity::Selective, source)?;
        self.invalidate_iotlb(state, Granularity::Domain, entry.domain(), 0)?;
        state.attached.insert(source);
        Ok(())
    }

    /// Gives device `source` a context entry of its own, translating: the next
    /// domain id and an empty page table, which it returns for the domain the
    /// caller makes of them (`Unit::attach`, in `domain.rs`: the unit knows
    /// nothing of its domains, so the two modules do not use each other).
    pub fn attach_context(&self, source: u16) -> Result<(u16, PageTable), IoFailure> {
        let mut state = self.state.lock();
        if state.attached.contains(&source) {
            return Err(failure(IoReturn::Busy, IommuCause::DeviceHasDomain));
        }
        let id = state.next_domain;
        if id >= 1 << self.capability.domain_id_bits().min(16) {
            return Err(failure(IoReturn::NoResources, IommuCause::DomainIdsExhausted));
        }
        let id = id as u16;
        let table = PageTable::new(self.platform, self.width, self.coherence, self.placement)
            .map_err(|_| failure(IoReturn::NoMemory, IommuCause::NoTableFrame(IommuTable::PageTable)))?;
        self.install(&mut state, source, ContextEntry::translated(table.root(), self.width, id))?;
        state.next_domain += 1;
        Ok((id, table))
    }

    /// Points `source`'s context entry at `entry` (a mode change of its domain).
    pub fn reinstall(&self, source: u16, entry: ContextEntry) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        self.install(&mut state, source, entry)
    }

    /// Reads every fault record that holds a fault, logs it, and clears it (and
    /// an overflow). With no fault pending this is one register read: the
    /// fault status says whether any record holds one. The unit records the
    /// first fault of a device and may drop the next ones from the same device
    /// until the record is cleared.
    fn collect_faults(&self, state: &mut UnitState) {
        let status = self.registers.read32(FAULT_STATUS);
        if status & PRIMARY_PENDING_FAULT != 0 {
            for offset in self.fault_records.offsets() {
                let record =
                    FaultRecord { low: self.registers.read64(offset), high: self.registers.read64(offset + 8) };
                if !record.holds_fault() {
                    continue;
                }
                let fault = IommuFault {
                    source: record.source(),
                    address: record.address(),
                    access: if record.was_read() { FaultAccess::Read } else { FaultAccess::Write },
                    reason: record.reason(),
                    meaning: fault_meaning(record.reason()),
                };
                // F is bit 127: bit 31 of the record's last 32-bit word, write 1 to clear.
                self.registers.write32(offset + 12, 1 << 31);
                log::debug!("VT-d unit {}: {fault}", self.number);
                state.faults.record(fault);
            }
        }
        if status & PRIMARY_FAULT_OVERFLOW != 0 {
            self.registers.write32(FAULT_STATUS, PRIMARY_FAULT_OVERFLOW);
            state.faults.count_overflow();
        }
    }

    /// The oldest fault of device `source` not taken yet whose address `belongs`
    /// (the records are read first). `belongs` runs under the unit's lock: it
    /// must not take a domain's lock (the lock order: domain, then unit).
    pub fn take_fault(&self, source: u16, belongs: &dyn Fn(u64) -> bool) -> Option<IommuFault> {
        self.faults(|faults| {
            let index = faults.pending.iter().position(|fault| fault.source == source && belongs(fault.address))?;
            faults.pending.remove(index)
        })
    }

    /// The most recent faults (at most [`FAULT_LOG_LENGTH`]), oldest first, the
    /// records read first.
    pub fn recent_faults(&self) -> Vec<IommuFault> {
        self.faults(|faults| faults.recent())
    }

    /// `with` the fault log, the fault records read into it first (a domain
    /// reads where its device's losses stand this way: [`FaultLog::mark`]).
    pub(super) fn faults<T>(&self, with: impl FnOnce(&mut FaultLog) -> T) -> T {
        let mut state = self.state.lock();
        self.collect_faults(&mut state);
        with(&mut state.faults)
    }

    /// Whether translation is on (GSTS.TES).
    pub fn translating(&self) -> bool {
        self.registers.read32(GLOBAL_STATUS) & TRANSLATION_ENABLE != 0
    }

    /// The unit's number (its place in the DMAR table).
    pub fn number(&self) -> usize {
        self.number
    }

    /// The physical address of its registers.
    pub fn register_base(&self) -> u64 {
        self.register_base
    }

    /// CAP, decoded.
    pub fn capability(&self) -> Capability {
        self.capability
    }

    /// ECAP, decoded.
    pub fn extended_capability(&self) -> ExtendedCapability {
        self.extended
    }

    /// The depth of the domains' page tables.
    pub fn width(&self) -> AddressWidth {
        self.width
    }

    /// The widest depth the unit walks (what pass-through entries carry).
    pub fn widest(&self) -> AddressWidth {
        self.widest
    }

    /// A line about the unit, for the log and the shell.
    pub fn summary(&self) -> String {
        let version = self.registers.read32(VERSION);
        format!(
            "VT-d unit {} at {:#x} (version {}.{}): translation {}, {}-level page tables ({}-bit IOVAs), {}",
            self.number,
            self.register_base,
            (version >> 4) & 0xf,
            version & 0xf,
            if self.translating() { "on" } else { "OFF" },
            self.width.levels(),
            self.width.bits(),
            if self.extended.coherent() { "coherent table walks" } else { "table writes flushed with clflush" },
        )
    }

    /// Lines about the faults: counts, then each recent fault.
    pub fn fault_report(&self) -> Vec<String> {
        self.faults(|faults| faults.report())
    }
}

/// How a global command changes its bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Switch {
    /// A persistent feature goes on (the status bit follows).
    On,
    /// A persistent feature goes off.
    Off,
    /// A one-shot command (its status bit says it was done).
    Once,
}

#[cfg(test)]
mod fault_records;
#[cfg(test)]
mod tests;
