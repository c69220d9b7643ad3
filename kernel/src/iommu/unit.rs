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

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use x86_64::PhysAddr;

use super::domain::VtdDomain;
use super::page_table::{Coherence, PageTable};
use super::registers::*;
use super::tables::{self, AddressWidth, ContextEntry, ENTRY_SIZE, RootEntry};
use crate::dma::{Cause, DmaPlatform, FaultAccess, FrameFill, IoFailure, IoReturn, IommuFault, fault_meaning};
use crate::io::RegisterIo;
use crate::memory::{Constraints, FRAME_SIZE};

/// How many times a command's completion bit is read before giving up. Counting
/// reads, not timer ticks, bounds the wait even with interrupts off; QEMU
/// answers at the first read, real units within microseconds.
const WAIT_POLLS: u32 = 1_000_000;

/// How many faults the unit keeps: not yet taken by their domain, and the
/// most recent ones for the report.
pub const FAULT_LOG_LENGTH: usize = 32;

/// The register page dmakit maps for a unit: records or IOTLB registers beyond it
/// cannot be reached.
pub const REGISTER_PAGE: u16 = 0x1000;

/// Whether `unmap` may invalidate pages, or must invalidate the whole domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageInvalidation {
    /// CAP.PSI: page-selective invalidation up to `2^maximum_mask` pages.
    Supported { maximum_mask: u8 },
    /// Domain-selective only.
    Unsupported,
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
    /// Faults not yet taken by their device's domain, oldest first.
    pending: VecDeque<IommuFault>,
    /// The most recent faults, for the report.
    recent: VecDeque<IommuFault>,
    faults_seen: u64,
    /// Faults dropped from `pending` because nobody took them and it was full.
    faults_dropped: u64,
    /// Times the unit reported a primary fault overflow (faults it never recorded).
    overflows: u64,
}

/// One remapping unit, translating.
pub struct Unit<R: RegisterIo> {
    number: usize,
    register_base: u64,
    registers: R,
    platform: &'static dyn DmaPlatform,
    capability: Capability,
    extended: ExtendedCapability,
    /// Depth of the domains' page tables.
    width: AddressWidth,
    /// The widest depth the unit supports (pass-through entries carry it).
    widest: AddressWidth,
    coherence: Coherence,
    /// Where tables may lie: below the unit's address width.
    placement: Constraints,
    page_invalidation: PageInvalidation,
    /// How many fault records dmakit reads (those inside the mapped page).
    fault_records: u16,
    state: Mutex<UnitState>,
}

fn failure(code: IoReturn, why: &'static str) -> IoFailure {
    IoFailure::new(code, Cause::Other(why))
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
            .ok_or(failure(IoReturn::IoError, "VT-d: the unit walks neither 3- nor 4-level tables (CAP.SAGAW)"))?;
        let widest = if capability.supports_levels(4) { AddressWidth::FourLevel48 } else { width };
        if extended.iotlb_offset() + 16 > REGISTER_PAGE {
            return Err(failure(IoReturn::IoError, "VT-d: the IOTLB registers lie beyond the mapped register page"));
        }
        let fault_records = (0..capability.fault_records())
            .take_while(|&index| capability.fault_record_offset() + (index + 1) * FAULT_RECORD_SIZE <= REGISTER_PAGE)
            .count() as u16;
        let status = registers.read32(GLOBAL_STATUS);
        if status & QUEUED_INVALIDATION_ENABLED != 0 {
            return Err(failure(
                IoReturn::IoError,
                "VT-d: queued invalidation was left on; dmakit invalidates through registers only",
            ));
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
        let root_table = platform
            .allocate_frames(1, placement, FrameFill::Zeroed)
            .map_err(|_| failure(IoReturn::NoMemory, "VT-d: no frame for the root table"))?;
        let unit = Unit {
            number,
            register_base,
            registers,
            platform,
            capability,
            extended,
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
                pending: VecDeque::new(),
                recent: VecDeque::new(),
                faults_seen: 0,
                faults_dropped: 0,
                overflows: 0,
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
            self.global_command(TRANSLATION_ENABLE, Switch::Off, "VT-d: translation did not switch off (GSTS.TES)")?;
        }
        // Faults are polled: the interrupt stays masked.
        self.registers.write32(FAULT_EVENT_CONTROL, FAULT_INTERRUPT_MASK);
        self.collect_faults(&mut state);
        state.recent.clear();
        state.pending.clear();
        self.flush(state.root_table, FRAME_SIZE);
        // RTADDR bits 11:10 (translation table mode) stay 00: legacy root and context entries.
        self.registers.write64(ROOT_TABLE_ADDRESS, state.root_table.as_u64());
        self.global_command(
            SET_ROOT_TABLE_POINTER,
            Switch::Once,
            "VT-d: the root table pointer was not latched (GSTS.RTPS)",
        )?;
        self.write_buffer_flush()?;
        self.invalidate_context(&mut state, Granularity::Global, 0)?;
        self.invalidate_iotlb(&mut state, Granularity::Global, 0, 0)?;
        self.global_command(TRANSLATION_ENABLE, Switch::On, "VT-d: translation did not switch on (GSTS.TES)")
    }

    /// Waits until `done()` holds, at most [`WAIT_POLLS`] reads; a timeout is an error.
    fn wait(&self, why: &'static str, mut done: impl FnMut(&R) -> bool) -> Result<(), IoFailure> {
        for _ in 0..WAIT_POLLS {
            if done(&self.registers) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(failure(IoReturn::Timeout, why))
    }

    /// Writes the global command register: the features on now (from the status
    /// register, one-shot bits left out), with `command` switched as asked, then
    /// waits until the status shows it.
    fn global_command(&self, command: u32, switch: Switch, why: &'static str) -> Result<(), IoFailure> {
        let persistent = self.registers.read32(GLOBAL_STATUS) & !ONE_SHOT_COMMANDS;
        let value = match switch {
            Switch::On | Switch::Once => persistent | command,
            Switch::Off => persistent & !command,
        };
        self.registers.write32(GLOBAL_COMMAND, value);
        self.wait(why, |registers| {
            let status = registers.read32(GLOBAL_STATUS) & command != 0;
            match switch {
                Switch::On | Switch::Once => status,
                Switch::Off => !status,
            }
        })
    }

    /// CAP.RWBF units buffer table writes internally: flush them.
    fn write_buffer_flush(&self) -> Result<(), IoFailure> {
        if !self.capability.needs_write_buffer_flush() {
            return Ok(());
        }
        let why = "VT-d: the write buffer flush did not finish (GSTS.WBFS)";
        let idle = |registers: &R| registers.read32(GLOBAL_STATUS) & WRITE_BUFFER_FLUSH == 0;
        // A flush that timed out earlier may still be running: the unit takes
        // no new one until it ends.
        self.wait(why, idle)?;
        let persistent = self.registers.read32(GLOBAL_STATUS) & !ONE_SHOT_COMMANDS;
        self.registers.write32(GLOBAL_COMMAND, persistent | WRITE_BUFFER_FLUSH);
        self.wait(why, idle)
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
        self.wait("VT-d: the context-cache invalidation did not finish (CCMD.ICC)", |registers| {
            last = registers.read64(CONTEXT_COMMAND);
            last & INVALIDATE_CONTEXT_CACHE == 0
        })?;
        if (last >> CONTEXT_ACTUAL_SHIFT) & 3 == 0 {
            return Err(failure(
                IoReturn::IoError,
                "VT-d: the unit refused a context-cache invalidation (CCMD.CAIG 0)",
            ));
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
        let offset = self.extended.iotlb_offset();
        // An invalidation that timed out earlier may still be in progress:
        // software must not write the register again until IVT clears.
        self.wait("VT-d: an earlier IOTLB invalidation is still in progress (IOTLB.IVT)", |registers| {
            registers.read64(offset + 8) & INVALIDATE_IOTLB == 0
        })?;
        if granularity == Granularity::Selective {
            self.registers.write64(offset, address_and_mask);
        }
        let mut command = INVALIDATE_IOTLB | ((granularity as u64) << IOTLB_REQUEST_SHIFT);
        if granularity != Granularity::Global {
            command |= u64::from(domain) << IOTLB_DOMAIN_SHIFT;
        }
        if self.capability.drains_reads() {
            command |= DRAIN_READS;
        }
        if self.capability.drains_writes() {
            command |= DRAIN_WRITES;
        }
        self.registers.write64(offset + 8, command);
        let mut last = 0;
        self.wait("VT-d: the IOTLB invalidation did not finish (IOTLB.IVT)", |registers| {
            last = registers.read64(offset + 8);
            last & INVALIDATE_IOTLB == 0
        })?;
        if (last >> IOTLB_ACTUAL_SHIFT) & 3 == 0 {
            return Err(failure(IoReturn::IoError, "VT-d: the unit refused an IOTLB invalidation (IOTLB.IAIG 0)"));
        }
        Ok(())
    }

    /// Makes the unit forget pages `[first_page, first_page + count)` of
    /// `domain`: page-selective where CAP.PSI allows a mask that covers them,
    /// domain-selective otherwise (or if the unit refuses the page-selective one).
    /// When it returns, the unit no longer translates those pages from its caches.
    pub fn invalidate_pages(&self, domain: u16, first_page: u64, count: u64) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        self.write_buffer_flush()?;
        let mask = covering_mask(first_page, count);
        if let PageInvalidation::Supported { maximum_mask } = self.page_invalidation
            && mask <= maximum_mask
        {
            let address = ((first_page >> mask) << mask) * FRAME_SIZE;
            match self.invalidate_iotlb(&mut state, Granularity::Selective, domain, address | u64::from(mask)) {
                Ok(()) => return Ok(()),
                Err(error) if error.code() == IoReturn::Timeout => return Err(error),
                Err(error) => log::warn!("{error}; invalidating domain {domain} whole instead"),
            }
        }
        self.invalidate_iotlb(&mut state, Granularity::Domain, domain, 0)
    }

    /// Whether a new mapping needs an invalidation too (caching mode: the unit
    /// may have cached the entry as not present) or a write buffer flush.
    pub fn after_map(&self, domain: u16, first_page: u64, count: u64) -> Result<(), IoFailure> {
        if self.capability.caching_mode() {
            self.invalidate_pages(domain, first_page, count)
        } else {
            let _state = self.state.lock();
            self.write_buffer_flush()
        }
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
            .map_err(|_| failure(IoReturn::NoMemory, "VT-d: no frame for a context table"))?;
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
            self.write_buffer_flush()?;
            self.invalidate_context(state, Granularity::Selective, source)?;
        }
        self.write_entry(address, entry.low, entry.high, true);
        self.write_buffer_flush()?;
        self.invalidate_context(state, Granularity::Selective, source)?;
        self.invalidate_iotlb(state, Granularity::Domain, entry.domain(), 0)?;
        state.attached.insert(source);
        Ok(())
    }

    /// Gives device `source` a domain of its own (the next domain id) with an
    /// empty page table, translating.
    pub fn attach(self: &Arc<Self>, source: u16) -> Result<Arc<VtdDomain<R>>, IoFailure> {
        let mut state = self.state.lock();
        if state.attached.contains(&source) {
            return Err(failure(IoReturn::Busy, "VT-d: the device has a domain already"));
        }
        let id = state.next_domain;
        if id >= 1 << self.capability.domain_id_bits().min(16) {
            return Err(failure(IoReturn::NoResources, "VT-d: no domain id is left (CAP.ND)"));
        }
        let id = id as u16;
        let table = PageTable::new(self.platform, self.width, self.coherence, self.placement)
            .map_err(|_| failure(IoReturn::NoMemory, "VT-d: no frame for a page table"))?;
        self.install(&mut state, source, ContextEntry::translated(table.root(), self.width, id))?;
        state.next_domain += 1;
        drop(state);
        Ok(Arc::new(VtdDomain::new(Arc::clone(self), source, id, table)))
    }

    /// Points `source`'s context entry at `entry` (a mode change of its domain).
    pub fn reinstall(&self, source: u16, entry: ContextEntry) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        self.install(&mut state, source, entry)
    }

    /// Reads every fault record that holds a fault, logs it, and clears it (and
    /// an overflow). The unit records the first fault of a device and may drop
    /// the next ones from the same device until the record is cleared.
    fn collect_faults(&self, state: &mut UnitState) {
        let status = self.registers.read32(FAULT_STATUS);
        if status & PRIMARY_PENDING_FAULT != 0 {
            for index in 0..self.fault_records {
                let offset = self.capability.fault_record_offset() + index * FAULT_RECORD_SIZE;
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
                state.faults_seen += 1;
                if state.pending.len() == FAULT_LOG_LENGTH {
                    state.pending.pop_front();
                    state.faults_dropped += 1;
                }
                state.pending.push_back(fault);
                if state.recent.len() == FAULT_LOG_LENGTH {
                    state.recent.pop_front();
                }
                state.recent.push_back(fault);
            }
        }
        if status & PRIMARY_FAULT_OVERFLOW != 0 {
            self.registers.write32(FAULT_STATUS, PRIMARY_FAULT_OVERFLOW);
            state.overflows += 1;
        }
    }

    /// The oldest fault of device `source` not taken yet whose address `belongs`
    /// (the records are read first). `belongs` runs under the unit's lock: it
    /// must not take a domain's lock (the lock order: domain, then unit).
    pub fn take_fault(&self, source: u16, belongs: &dyn Fn(u64) -> bool) -> Option<IommuFault> {
        let mut state = self.state.lock();
        self.collect_faults(&mut state);
        let index = state.pending.iter().position(|fault| fault.source == source && belongs(fault.address))?;
        state.pending.remove(index)
    }

    /// The most recent faults (at most [`FAULT_LOG_LENGTH`]), oldest first, the
    /// records read first.
    pub fn recent_faults(&self) -> Vec<IommuFault> {
        let mut state = self.state.lock();
        self.collect_faults(&mut state);
        state.recent.iter().copied().collect()
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
        let mut state = self.state.lock();
        self.collect_faults(&mut state);
        let mut lines = Vec::with_capacity(state.recent.len() + 1);
        lines.push(format!(
            "faults: {} recorded, {} not taken by a domain, {} dropped unread, {} overflow(s) (faults never recorded)",
            state.faults_seen,
            state.pending.len(),
            state.faults_dropped,
            state.overflows
        ));
        lines.extend(state.recent.iter().map(|fault| format!("  {fault}")));
        lines
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
mod tests {
    use super::super::fake::{Event, FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY};
    use super::*;

    /// Every address: the fault of any transfer.
    const EVERYWHERE: &dyn Fn(u64) -> bool = &|_| true;
    use crate::dma::simulated::SimulatedPlatform;

    #[test]
    fn the_covering_mask_is_the_smallest_aligned_block() {
        assert_eq!(covering_mask(5, 1), 0);
        assert_eq!(covering_mask(4, 2), 1);
        assert_eq!(covering_mask(5, 2), 2, "pages 5 and 6 straddle a 2-page block");
        assert_eq!(covering_mask(8, 8), 3);
        assert_eq!(covering_mask(7, 2), 4, "pages 7 and 8 only share a 16-page block");
    }

    #[test]
    fn bring_up_sets_the_root_table_invalidates_then_enables() {
        let platform = SimulatedPlatform::leak(0);
        let fake = Arc::new(FakeUnit::qemu());
        let unit = Unit::start(0, 0xfed9_0000, Arc::clone(&fake), platform).unwrap();
        let root = unit.state.lock().root_table.as_u64();
        let events = fake.events();
        let interesting: Vec<Event> =
            events.iter().copied().filter(|event| !matches!(event, Event::GlobalCommand(_))).collect();
        assert_eq!(
            interesting,
            [
                Event::RootTableSet(root),
                Event::ContextInvalidation { granularity: 1, source: 0 },
                Event::IotlbInvalidation { granularity: 1, domain: 0, address: 0 },
                Event::TranslationEnabled,
            ]
        );
        assert_eq!(events.iter().filter(|event| matches!(event, Event::GlobalCommand(_))).count(), 2, "SRTP, then TE");
        assert!(fake.register(FAULT_EVENT_CONTROL) & FAULT_INTERRUPT_MASK != 0, "the fault interrupt stays masked");
        let mut bytes = [0xff; 4096];
        platform.device_read(root, &mut bytes);
        assert!(bytes.iter().all(|&byte| byte == 0), "the root table starts empty");
        assert!(unit.translating());
        assert_eq!(unit.width(), AddressWidth::ThreeLevel39);
        assert!(unit.summary().contains("3-level"), "{}", unit.summary());
    }

    #[test]
    fn a_unit_that_never_answers_is_a_timeout_not_a_hang() {
        let platform = SimulatedPlatform::leak(0);
        let fake = Arc::new(FakeUnit::qemu());
        fake.get_stuck();
        let error = Unit::start(0, 0, Arc::clone(&fake), platform).err().expect("timed out");
        assert_eq!(error.code(), IoReturn::Timeout);
        assert!(error.to_string().contains("RTPS"), "{error}");
    }

    #[test]
    fn a_unit_without_usable_table_depths_is_refused() {
        let platform = SimulatedPlatform::leak(0);
        let only_five_levels = (QEMU_CAPABILITY & !(0x1f << 8)) | (0b01000 << 8);
        let fake = Arc::new(FakeUnit::new(only_five_levels, QEMU_EXTENDED_CAPABILITY));
        assert_eq!(Unit::start(0, 0, fake, platform).err().map(|error| error.code()), Some(IoReturn::IoError));
    }

    #[test]
    fn global_commands_carry_the_features_already_on() {
        // RWBF makes every table change end in a write buffer flush: a global
        // command issued while translation is on.
        let platform = SimulatedPlatform::leak(0);
        let fake = Arc::new(FakeUnit::new(QEMU_CAPABILITY | (1 << 4), QEMU_EXTENDED_CAPABILITY));
        let unit = Unit::start(0, 0, Arc::clone(&fake), platform).unwrap();
        fake.clear_events();
        unit.attach(0x0018).unwrap();
        let events = fake.events();
        assert!(events.contains(&Event::WriteBufferFlush), "{events:?}");
        for event in &events {
            if let Event::GlobalCommand(value) = event {
                assert!(value & TRANSLATION_ENABLE != 0, "a command dropped TE: {value:#x}");
                assert!(value & SET_ROOT_TABLE_POINTER == 0, "a one-shot bit repeated: {value:#x}");
            }
        }
        assert!(!events.contains(&Event::TranslationDisabled));
    }

    #[test]
    fn faults_are_decoded_cleared_and_taken_by_source() {
        let platform = SimulatedPlatform::leak(0);
        // Two fault records, so two devices' faults wait side by side.
        let fake = Arc::new(FakeUnit::new(QEMU_CAPABILITY | (1 << 40), QEMU_EXTENDED_CAPABILITY));
        let unit = Unit::start(0, 0, Arc::clone(&fake), platform).unwrap();
        fake.plant_fault(0, 0x0020, 0x7000_5000, 0x05, false);
        fake.plant_fault(1, 0x0018, 0x1000, 0x06, true);
        fake.plant_fault(0, 0x0020, 0x9000, 0x05, false); // record 0 is full: overflow
        assert_eq!(fake.register(FAULT_STATUS) & 3, 3, "pending and overflowed");

        let fault = unit.take_fault(0x0018, EVERYWHERE).expect("the IDE's fault");
        assert_eq!(
            fault,
            IommuFault {
                source: 0x0018,
                address: 0x1000,
                access: FaultAccess::Read,
                reason: 0x06,
                meaning: fault_meaning(0x06)
            }
        );
        assert_eq!(fake.register(FAULT_STATUS) & 3, 0, "every record cleared, the overflow too");
        assert_eq!(fake.register(0x220 + 12) >> 31, 0, "F cleared");
        assert_eq!(unit.take_fault(0x0018, EVERYWHERE), None, "taken");
        let other = unit.take_fault(0x0020, EVERYWHERE).expect("the other device's fault waited for it");
        assert_eq!((other.access, other.address, other.reason), (FaultAccess::Write, 0x7000_5000, 0x05));
        assert_eq!(
            other.to_string(),
            format!("IOMMU fault 0x05 ({}): device 00:04.0 wrote to IOVA 0x70005000", fault_meaning(5))
        );
        let report = unit.fault_report();
        assert_eq!(
            report[0],
            "faults: 2 recorded, 0 not taken by a domain, 0 dropped unread, 1 overflow(s) (faults never recorded)"
        );
        assert_eq!(report.len(), 3);
    }

    #[test]
    fn the_pending_log_is_bounded() {
        let platform = SimulatedPlatform::leak(0);
        let fake = Arc::new(FakeUnit::qemu());
        let unit = Unit::start(0, 0, Arc::clone(&fake), platform).unwrap();
        for page in 0..FAULT_LOG_LENGTH as u64 + 5 {
            fake.plant_fault(0, 0x0008, page << 12, 0x05, false);
            assert_eq!(unit.recent_faults().len(), (page as usize + 1).min(FAULT_LOG_LENGTH));
        }
        // Nobody took the device's faults: the oldest five were dropped.
        assert_eq!(unit.take_fault(0x0008, EVERYWHERE).map(|fault| fault.address), Some(5 << 12));
    }
}
