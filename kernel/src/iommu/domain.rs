//! A VT-d domain: one device's I/O virtual address space, its page table and
//! its IOVA allocator, as the DMA layer's [`IoMapper`].
//!
//! `map` picks IOVAs below the device's limit, writes leaves (flushed when the
//! unit is not coherent) and returns the first IOVA; `unmap` clears the leaves,
//! invalidates the unit's IOTLB for them and waits, and only then gives the IOVAs
//! back: when it returns `Ok`, the device can no longer reach those pages. When
//! the unit does not confirm the invalidation (it timed out, or was refused),
//! the IOVAs are quarantined, never handed out again, and `unmap` fails with
//! [`Cause::InvalidationFailed`]: the caller must not reuse the memory either.
//!
//! Faults are read lazily, so a fault must not outlive its transfer's IOVAs:
//! it would be blamed on the next transfer that gets them. So `unmap` takes
//! every pending fault into the range once the unit confirmed the
//! invalidation (the fault records hold the device's DMA by then), keeps the
//! first for the transfer's [`IoMapper::take_fault`], and checks whether
//! faults were lost while the range was mapped ([`IoMapper::faults_lost`]).
//! And a range unmapped is not handed out again at once: it waits behind the
//! next [`REUSE_DELAY`] unmaps, and a fault into it that comes meanwhile (late)
//! is nobody's: it is dropped when the range is freed, and logged.
//!
//! Lock order: a domain's lock, then its unit's lock, never the reverse. `map`
//! and `unmap` invalidate through the unit while they hold the domain's state,
//! so `take_fault` locks the domain's state before the unit looks at its faults
//! (one order: two CPUs can never each hold the lock the other waits for).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use x86_64::PhysAddr;

use super::faults::FaultMark;
use super::page_table::{PageTable, PageTableError};
use super::tables::ContextEntry;
use super::unit::{AfterMap, Unit};
use crate::dma::hooks::{HOOKS, Site};
use crate::dma::{
    Cause, FaultLoss, IoDirection, IoFailure, IoMapper, IoReturn, IommuCause, IommuFault, IommuTable, IovaSpace,
    MappedRange,
};
use crate::io::RegisterIo;
use crate::memory::FRAME_SIZE;

/// How the domain's device reaches memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainMode {
    /// Every DMA goes through the page table (context entry TT = 00).
    Translated,
    /// DMA addresses are physical addresses (TT = 10).
    PassThrough,
}

struct DomainState {
    table: PageTable,
    space: IovaSpace,
    mode: DomainMode,
    /// Leaves present now.
    mapped_pages: usize,
    /// First page -> pages, of ranges mapped at IOVA = physical (coherent
    /// memory): they may stay while the domain passes DMA through.
    identity: BTreeMap<u64, u64>,
    /// First page -> pages, of every range mapped now (identity ones included).
    live: BTreeMap<u64, u64>,
    /// First page -> pages, of ranges an experiment unmapped already.
    unmapped_early: BTreeMap<u64, u64>,
    /// First page -> pages, of ranges whose invalidation the unit did not
    /// confirm: it may still translate them, so they are never handed out again.
    quarantined: BTreeMap<u64, u64>,
    /// First page -> pages, of ranges an experiment unmapped without the
    /// IOTLB invalidation: the unit may still translate them to their old
    /// pages until [`VtdDomain::invalidate_stale`].
    stale: BTreeMap<u64, u64>,
    /// First page -> where the device's fault losses stood at its map, of
    /// every range `map` mapped now.
    marks: BTreeMap<u64, FaultMark>,
    /// Ranges unmapped lately, oldest first, with what their unmap found:
    /// their IOVAs are free but not handed out again until they leave.
    retired: VecDeque<Retired>,
}

/// How many unmapped ranges wait before their IOVAs go back to the IOVA space:
/// long enough for a fault the unit records late to find its range unused.
pub const REUSE_DELAY: usize = 16;

/// A range unmapped lately and what its unmap found.
struct Retired {
    first: u64,
    count: u64,
    /// The first fault into the range, for the transfer's `take_fault`.
    fault: Option<IommuFault>,
    /// Faults lost while it was mapped, for the transfer's `faults_lost`.
    lost: Option<FaultLoss>,
}

impl Retired {
    fn holds(&self, address: u64) -> bool {
        (self.first..self.first + self.count).contains(&(address / FRAME_SIZE))
    }
}

/// One device's domain on a VT-d unit.
pub struct VtdDomain<R: RegisterIo + 'static> {
    unit: Arc<Unit<R>>,
    source: u16,
    id: u16,
    state: Mutex<DomainState>,
}

fn failure(code: IoReturn, cause: Cause) -> IoFailure {
    IoFailure::new(code, cause)
}

impl<R: RegisterIo + 'static> VtdDomain<R> {
    /// The domain `id` of device `source` on `unit`, with `table` installed in its context entry.
    pub(super) fn new(unit: Arc<Unit<R>>, source: u16, id: u16, table: PageTable) -> VtdDomain<R> {
        let end_page = 1u64 << (table.width().bits() - 12);
        let state = DomainState {
            table,
            space: IovaSpace::new(end_page),
            mode: DomainMode::Translated,
            mapped_pages: 0,
            identity: BTreeMap::new(),
            live: BTreeMap::new(),
            unmapped_early: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            stale: BTreeMap::new(),
            marks: BTreeMap::new(),
            retired: VecDeque::new(),
        };
        VtdDomain { unit, source, id, state: Mutex::new(state) }
    }

    /// The unit the domain lives on.
    pub fn unit(&self) -> &Arc<Unit<R>> {
        &self.unit
    }

    /// The device's requester id.
    pub fn source(&self) -> u16 {
        self.source
    }

    /// The domain id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Translated or pass-through.
    pub fn mode(&self) -> DomainMode {
        self.state.lock().mode
    }

    /// Pages mapped now (leaves present).
    pub fn mapped_pages(&self) -> usize {
        self.state.lock().mapped_pages
    }

    /// Each range mapped now: first IOVA, pages, where its first page leads
    /// (`None` for a range an experiment unmapped early), and whether it is an
    /// identity mapping (coherent memory).
    pub fn live_ranges(&self) -> alloc::vec::Vec<(u64, u64, Option<PhysAddr>, bool)> {
        let state = self.state.lock();
        state
            .live
            .iter()
            .map(|(&first, &count)| {
                let iova = first * FRAME_SIZE;
                (iova, count, state.table.translate(iova), state.identity.contains_key(&first))
            })
            .collect()
    }

    /// IOVA pages quarantined for ever: their invalidation was not confirmed.
    pub fn quarantined_pages(&self) -> u64 {
        self.state.lock().quarantined.values().sum()
    }

    /// IOVA pages an experiment unmapped without invalidating them, not
    /// invalidated since.
    pub fn stale_pages(&self) -> u64 {
        self.state.lock().stale.values().sum()
    }

    /// Makes the unit forget every range an experiment unmapped without
    /// invalidating it; returns how many pages that was. A range the unit does
    /// not confirm stays on record (and the failure is returned, with
    /// [`Cause::InvalidationFailed`]): whoever owns its old pages must keep
    /// them, as the device may still reach them.
    pub fn invalidate_stale(&self) -> Result<u64, IoFailure> {
        let mut state = self.state.lock();
        let mut pages = 0;
        while let Some((first, count)) = state.stale.pop_first() {
            if let Err(error) = self.unit.invalidate_pages(self.id, first, count) {
                state.stale.insert(first, count);
                let iova = first * FRAME_SIZE;
                return Err(failure(error.code(), Cause::InvalidationFailed { iova, pages: count as usize }));
            }
            pages += count;
        }
        Ok(pages)
    }

    /// IOVA pages not in use: free, or unmapped lately and waiting
    /// ([`REUSE_DELAY`]) to be handed out again.
    pub fn free_iova_pages(&self) -> u64 {
        let state = self.state.lock();
        state.space.free_pages() + state.retired.iter().map(|retired| retired.count).sum::<u64>()
    }

    /// Page-table levels.
    pub fn levels(&self) -> u8 {
        self.state.lock().table.width().levels()
    }

    /// Page-table pages allocated.
    pub fn table_pages(&self) -> usize {
        self.state.lock().table.table_pages()
    }

    /// Switches the device to pass-through (`on`) or back to translation. Needs
    /// ECAP.PT and a domain with nothing mapped; the device should be idle.
    pub fn set_passthrough(&self, on: bool) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        let wanted = if on { DomainMode::PassThrough } else { DomainMode::Translated };
        if state.mode == wanted {
            return Ok(());
        }
        if on && !self.unit.extended_capability().pass_through() {
            return Err(failure(IoReturn::NotPermitted, Cause::Iommu(IommuCause::PassThroughUnsupported)));
        }
        let identity_pages: u64 = state.identity.values().sum();
        let busy = !state.unmapped_early.is_empty() || !state.stale.is_empty();
        if state.mapped_pages as u64 > identity_pages || busy {
            return Err(failure(IoReturn::Busy, Cause::Iommu(IommuCause::DomainHasMappings)));
        }
        let entry = match wanted {
            DomainMode::PassThrough => ContextEntry::pass_through(self.unit.widest(), self.id),
            DomainMode::Translated => ContextEntry::translated(state.table.root(), state.table.width(), self.id),
        };
        self.unit.reinstall(self.source, entry)?;
        state.mode = wanted;
        Ok(())
    }

    /// Writes the leaves of `pages` at IOVA pages from `first` (already taken
    /// from the IOVA space) and tells the unit what the new mapping needs. On
    /// an error no leaf stays under those IOVAs and they are given back (or
    /// quarantined, if the unit did not confirm it forgot the leaves written).
    fn install(
        &self,
        state: &mut DomainState,
        first: u64,
        pages: &[PhysAddr],
        direction: IoDirection,
    ) -> Result<(), IoFailure> {
        let count = pages.len() as u64;
        for (index, &page) in pages.iter().enumerate() {
            let iova = (first + index as u64) * FRAME_SIZE;
            if let Err(error) = state.table.map(iova, page, direction) {
                self.clear(state, first, count, Iovas::GiveBack)?;
                let cause = match error {
                    PageTableError::OutOfMemory(_) => IommuCause::NoTableFrame(IommuTable::PageTableLevel),
                    PageTableError::BeyondWidth => IommuCause::IovaBeyondWidth,
                    PageTableError::AlreadyMapped => IommuCause::IovaMappedAlready,
                    PageTableError::BadArgument => IommuCause::UnmappablePage,
                };
                let code = if matches!(error, PageTableError::OutOfMemory(_)) {
                    IoReturn::NoMemory
                } else {
                    IoReturn::IoError
                };
                return Err(failure(code, Cause::Iommu(cause)));
            }
            state.mapped_pages += 1;
        }
        let told = match self.unit.after_map {
            AfterMap::Nothing => Ok(()),
            AfterMap::FlushWriteBuffer => self.unit.flush_write_buffer(),
            AfterMap::Invalidate => self.unit.invalidate_pages(self.id, first, count),
        };
        if let Err(error) = told {
            self.clear(state, first, count, Iovas::GiveBack)?;
            return Err(error);
        }
        Ok(())
    }

    /// Clears the leaves of `count` pages from `first`, makes the unit forget
    /// them, and then does with their IOVAs what `iovas` says; returns how many
    /// leaves were present. The caller holds the domain's lock: the unit's is
    /// taken inside, in the one lock order.
    ///
    /// When no leaf was present there is nothing the unit could have cached as
    /// a translation, so there is nothing to invalidate (and no invalidation
    /// that could fail and make an out-of-memory map look like an unconfirmed
    /// unmap). When the unit does not confirm the invalidation (it timed out,
    /// or refused), it may still translate those IOVAs for the device: they
    /// are quarantined for ever, whatever `iovas` says, and the failure is
    /// [`Cause::InvalidationFailed`] with the code the unit gave.
    fn clear(&self, state: &mut DomainState, first: u64, count: u64, iovas: Iovas) -> Result<usize, IoFailure> {
        let leaves = (first..first + count).filter(|&page| state.table.unmap(page * FRAME_SIZE).is_some()).count();
        state.mapped_pages -= leaves;
        if leaves > 0
            && let Err(error) = self.unit.invalidate_pages(self.id, first, count)
        {
            let iova = first * FRAME_SIZE;
            log::error!(
                "{}: the unit did not confirm it forgot IOVA {iova:#x} + {count} page(s) ({error}): \
                 they are quarantined, never handed out again",
                self.name()
            );
            state.quarantined.insert(first, count);
            return Err(failure(error.code(), Cause::InvalidationFailed { iova, pages: count as usize }));
        }
        if iovas == Iovas::GiveBack && !state.space.free(first, count) {
            log::error!("{}: IOVA pages {first:#x}+{count} were free already", self.name());
        }
        Ok(leaves)
    }

    /// Retires the range of `count` pages from `first`, whose unmap the unit
    /// confirmed: takes every pending fault into it (the first is the
    /// transfer's, later ones only logged), notes whether faults were lost
    /// while it was mapped, and lets it wait before its IOVAs are reused.
    /// One look at the unit's fault records (a register read, and a scan of
    /// the records when one is pending) serves the range retired and the
    /// ranges that leave the wait for it.
    fn retire(&self, state: &mut DomainState, first: u64, count: u64) {
        let range = MappedRange { iova: first * FRAME_SIZE, pages: count as usize };
        let leaving = Self::leaving(state, REUSE_DELAY.saturating_sub(1));
        let (faults, now, late) = self.unit.faults(|log| {
            let faults = log.take_all(self.source, &|address| range.contains(address));
            let late = log.take_all(self.source, &|address| leaving.iter().any(|retired| retired.holds(address)));
            (faults, log.mark(self.source), late)
        });
        let mut faults = faults.into_iter();
        let fault = faults.next();
        for more in faults {
            log::debug!("{}: another fault of the same transfer: {more}", self.name());
        }
        let lost = state.marks.remove(&first).and_then(|mark| now.lost_since(mark));
        state.retired.push_back(Retired { first, count, fault, lost });
        self.give_back(state, leaving, late);
    }

    /// The oldest retired ranges, taken out of the wait until at most `keep`
    /// are left.
    fn leaving(state: &mut DomainState, keep: usize) -> Vec<Retired> {
        let excess = state.retired.len().saturating_sub(keep);
        state.retired.drain(..excess).collect()
    }

    /// Gives the IOVAs of the oldest retired ranges back to the IOVA space
    /// until at most `keep` wait. A fault still pending into one came after
    /// its transfer ended: it is nobody's, and is dropped (and logged).
    fn release_retired(&self, state: &mut DomainState, keep: usize) {
        let leaving = Self::leaving(state, keep);
        if leaving.is_empty() {
            return;
        }
        let late = self
            .unit
            .faults(|log| log.take_all(self.source, &|address| leaving.iter().any(|retired| retired.holds(address))));
        self.give_back(state, leaving, late);
    }

    /// Gives the IOVAs of `leaving` back to the IOVA space; `late`, the faults
    /// into them that came after their transfers ended, are nobody's: logged.
    fn give_back(&self, state: &mut DomainState, leaving: Vec<Retired>, late: Vec<IommuFault>) {
        for fault in late {
            log::warn!("{}: a fault recorded after its transfer ended, blamed on none: {fault}", self.name());
        }
        for retired in leaving {
            if !state.space.free(retired.first, retired.count) {
                log::error!("{}: IOVA pages {:#x}+{} were free already", self.name(), retired.first, retired.count);
            }
        }
    }
}

/// What becomes of a cleared range's IOVAs once the unit confirmed it forgot them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Iovas {
    /// Back to the IOVA space: an unmap, or the undo of a map that failed.
    GiveBack,
    /// Still taken: a transfer's unmapped range waits in the retired queue
    /// before reuse, and a range the experiment unmaps early stays the
    /// transfer's until its own unmap.
    Keep,
}

impl<R: RegisterIo + 'static> Unit<R> {
    /// Gives device `source` a domain of its own (the next domain id) with an
    /// empty page table, translating. It lives here, not in `unit.rs`, so that
    /// the unit does not depend on its domains.
    pub fn attach(self: &Arc<Self>, source: u16) -> Result<Arc<VtdDomain<R>>, IoFailure> {
        let (id, table) = self.attach_context(source)?;
        Ok(Arc::new(VtdDomain::new(Arc::clone(self), source, id, table)))
    }
}

impl<R: RegisterIo + 'static> IoMapper for VtdDomain<R> {
    fn name(&self) -> String {
        format!(
            "VT-d unit {}, domain {} ({:02x}:{:02x}.{})",
            self.unit.number(),
            self.id,
            self.source >> 8,
            (self.source >> 3) & 0x1f,
            self.source & 7
        )
    }

    fn translating(&self) -> bool {
        self.state.lock().mode == DomainMode::Translated
    }

    fn map_identity(&self, pages: &[PhysAddr], direction: IoDirection) -> Result<u64, IoFailure> {
        let first = pages.first().map_or(0, |page| page.as_u64() / FRAME_SIZE);
        let count = pages.len() as u64;
        let contiguous =
            pages.iter().enumerate().all(|(index, page)| page.as_u64() == (first + index as u64) * FRAME_SIZE);
        if !contiguous || count == 0 || direction == IoDirection::None {
            return Err(failure(IoReturn::BadArgument, Cause::Iommu(IommuCause::IdentityNotContiguous)));
        }
        let mut state = self.state.lock();
        if state.mode == DomainMode::PassThrough || !state.space.allocate_at(first, count) {
            return Err(failure(IoReturn::NoResources, Cause::Iommu(IommuCause::IdentityIovasTaken)));
        }
        self.install(&mut state, first, pages, direction)?;
        state.identity.insert(first, count);
        state.live.insert(first, count);
        Ok(first * FRAME_SIZE)
    }

    fn map(&self, pages: &[PhysAddr], direction: IoDirection, highest_address: u64) -> Result<u64, IoFailure> {
        if pages.is_empty() || direction == IoDirection::None {
            return Err(failure(IoReturn::BadArgument, Cause::Iommu(IommuCause::NothingToMap)));
        }
        if pages.iter().any(|page| !page.as_u64().is_multiple_of(FRAME_SIZE)) {
            return Err(failure(IoReturn::NotAligned, Cause::Iommu(IommuCause::PageNotAligned)));
        }
        let mut state = self.state.lock();
        if state.mode == DomainMode::PassThrough {
            return Err(failure(IoReturn::NotPermitted, Cause::Iommu(IommuCause::DomainPassesThrough)));
        }
        let count = pages.len() as u64;
        let limit = (highest_address / FRAME_SIZE).saturating_add(1);
        let mut first = state.space.allocate(count, limit);
        if first.is_none() && !state.retired.is_empty() {
            // Delaying reuse must not make a map fail: the IOVAs waiting go
            // back first (their late faults are dropped).
            self.release_retired(&mut state, 0);
            first = state.space.allocate(count, limit);
        }
        let Some(first) = first else {
            let cause = Cause::IovaSpaceExhausted { pages: pages.len(), highest_address };
            return Err(failure(IoReturn::NoResources, cause));
        };
        self.install(&mut state, first, pages, direction)?;
        state.live.insert(first, count);
        // Faults lost from here on may be this transfer's.
        let mark = self.unit.faults(|faults| faults.mark(self.source));
        state.marks.insert(first, mark);
        // The one place a hook (a learner's experiment) may break the rules:
        // the pages are unmapped before the device ever uses their IOVAs.
        if let Some(hooks) = HOOKS.get()
            && hooks.unmap_at_once(Site::of(self))
        {
            if let Err(failure) = self.clear(&mut state, first, count, Iovas::Keep) {
                state.live.remove(&first);
                return Err(failure);
            }
            state.unmapped_early.insert(first, count);
            log::info!(
                "{}: experiment: IOVA {:#x}+{count} pages unmapped before the device uses them",
                self.name(),
                first * FRAME_SIZE
            );
        }
        Ok(first * FRAME_SIZE)
    }

    fn unmap(&self, iova: u64, count: usize) -> Result<(), IoFailure> {
        let first = iova / FRAME_SIZE;
        let count = count as u64;
        let mut state = self.state.lock();
        let identity = state.identity.remove(&first).is_some();
        state.live.remove(&first);
        // A range the experiment unmapped early has no leaf left (the unit
        // confirmed it forgot them then): clearing it only gives its IOVAs back.
        let unmapped_early = state.unmapped_early.get(&first) == Some(&count);
        if unmapped_early {
            state.unmapped_early.remove(&first);
        }
        // The other place a hook may break the rules: the leaves go, the
        // IOVAs go back, and the unit is not told.
        // Not for memory shared with the device for its life (a ring): the
        // experiment is about a transfer's pages.
        if !unmapped_early
            && !identity
            && let Some(hooks) = HOOKS.get()
            && hooks.skip_invalidation(Site::of(self))
        {
            let leaves = (first..first + count).filter(|&page| state.table.unmap(page * FRAME_SIZE).is_some()).count();
            state.mapped_pages -= leaves;
            if !state.space.free(first, count) {
                log::error!("{}: IOVA pages {first:#x}+{count} were free already", self.name());
            }
            state.stale.insert(first, count);
            log::warn!(
                "{}: experiment: IOVA {iova:#x}+{count} pages unmapped WITHOUT the IOTLB invalidation",
                self.name()
            );
            return Ok(());
        }
        // Only with the IOTLB invalidation confirmed are the IOVAs handed out
        // again; otherwise `clear` quarantines them and says so. A transfer's
        // are retired first (memory shared for the device's life is not a
        // transfer: its IOVAs, equal to its pages, go back at once).
        let iovas = if identity { Iovas::GiveBack } else { Iovas::Keep };
        let cleared = self.clear(&mut state, first, count, iovas);
        if cleared.is_err() {
            state.marks.remove(&first);
        }
        let leaves = cleared?;
        if !unmapped_early && leaves as u64 != count {
            log::error!("{}: unmapping {count} pages at IOVA {iova:#x}, {leaves} were mapped", self.name());
        }
        if !identity {
            self.retire(&mut state, first, count);
        }
        Ok(())
    }

    fn translate(&self, iova: u64) -> Option<PhysAddr> {
        self.state.lock().table.translate(iova)
    }

    fn take_fault(&self, range: MappedRange) -> Option<IommuFault> {
        // The one lock order: the domain's state first, then the unit's (inside
        // `Unit::take_fault`). The unit asks about each fault's address while it
        // holds its lock, so the answer comes from the state locked here.
        let mut state = self.state.lock();
        // What the range's unmap took for it.
        let first = range.iova / FRAME_SIZE;
        if let Some(retired) = state.retired.iter_mut().find(|retired| retired.first == first)
            && let Some(fault) = retired.fault.take()
        {
            return Some(fault);
        }
        // A fault into no page mapped now is the caller's too (its device
        // went astray), unless it lies in another retired range: that one is
        // a late fault of a transfer that ended.
        let state = &*state;
        self.unit.take_fault(self.source, &|address| {
            range.contains(address)
                || (state.table.translate(address).is_none()
                    && !state.retired.iter().any(|retired| retired.first != first && retired.holds(address)))
        })
    }

    fn faults_lost(&self, range: MappedRange) -> Option<FaultLoss> {
        let first = range.iova / FRAME_SIZE;
        let mut state = self.state.lock();
        state.retired.iter_mut().find(|retired| retired.first == first).and_then(|retired| retired.lost.take())
    }
}

#[cfg(test)]
mod tests;
