//! A simulated IOMMU for host tests: a domain's page table as a map from IOVA
//! page to physical page and access, and a fault log.
//!
//! Fake devices behind it call [`SimulatedMapper::device_address`] for every
//! address a driver gives them: a page that is not mapped, or mapped without the
//! access the device attempts, is refused and recorded as a fault, as VT-d does.
//!
//! Like a VT-d unit whose IOTLB invalidation times out, it can be told not to
//! confirm unmaps ([`SimulatedMapper::set_invalidation`]): the device then keeps
//! reaching the pages (a stale IOTLB entry), and their IOVAs are quarantined.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;

use spin::Mutex;
use x86_64::PhysAddr;

use super::fault::{FaultAccess, IommuFault, fault_meaning};
use super::mapper::{IoMapper, MappedRange};
use super::{Cause, IoDirection, IoFailure, IoReturn, IovaSpace};
use crate::memory::FRAME_SIZE;

/// VT-d's reason code for a write through an entry without write permission
/// (VT-d has no separate present bit: an entry with R and W clear is "not
/// present", so a write into a hole is this fault too).
pub const FAULT_WRITE_DENIED: u8 = 0x05;
/// VT-d's reason code for a read through an entry without read permission (or
/// a read into a hole).
pub const FAULT_READ_DENIED: u8 = 0x06;

/// Whether the simulated IOMMU confirms the invalidation of an unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Every invalidation finishes: unmapped pages are out of the device's reach.
    Completes,
    /// Every invalidation times out: the device still reaches the pages it had
    /// (through the stale IOTLB entries) and the IOVAs are quarantined.
    TimesOut,
}

struct State {
    /// IOVA page -> (physical page, direction the device may use it in).
    pages: BTreeMap<u64, (u64, IoDirection)>,
    /// IOVA page -> what a stale IOTLB entry still gives the device, for pages
    /// whose unmap was not confirmed.
    stale: BTreeMap<u64, (u64, IoDirection)>,
    space: IovaSpace,
    faults: VecDeque<IommuFault>,
    translating: bool,
    invalidation: Invalidation,
}

/// One simulated domain for one device.
pub struct SimulatedMapper {
    source: u16,
    state: Mutex<State>,
}

impl SimulatedMapper {
    /// A translating domain for requester `source` with IOVA pages `[1, end_page)`.
    pub fn new(source: u16, end_page: u64) -> SimulatedMapper {
        let state = State {
            pages: BTreeMap::new(),
            stale: BTreeMap::new(),
            space: IovaSpace::new(end_page),
            faults: VecDeque::new(),
            translating: true,
            invalidation: Invalidation::Completes,
        };
        SimulatedMapper { source, state: Mutex::new(state) }
    }

    /// Switches translation off (pass-through: device addresses are physical) or on.
    pub fn set_translating(&self, translating: bool) {
        self.state.lock().translating = translating;
    }

    /// Whether later unmaps are confirmed or time out.
    pub fn set_invalidation(&self, invalidation: Invalidation) {
        self.state.lock().invalidation = invalidation;
    }

    /// IOVA pages quarantined for ever: their unmap was not confirmed.
    pub fn quarantined_pages(&self) -> usize {
        self.state.lock().stale.len()
    }

    /// The physical address a device reaches at `address` with `access`, or the
    /// fault the IOMMU records instead.
    pub fn device_address(&self, address: u64, access: FaultAccess) -> Result<u64, IommuFault> {
        let mut state = self.state.lock();
        if !state.translating {
            return Ok(address);
        }
        let allowed = |direction: IoDirection| match access {
            FaultAccess::Read => direction.includes_out(),
            FaultAccess::Write => direction.includes_in(),
        };
        let page = address / FRAME_SIZE;
        let reason = match state.pages.get(&page).or_else(|| state.stale.get(&page)) {
            Some(&(page, direction)) if allowed(direction) => return Ok(page * FRAME_SIZE + address % FRAME_SIZE),
            _ if access == FaultAccess::Write => FAULT_WRITE_DENIED,
            _ => FAULT_READ_DENIED,
        };
        let fault = IommuFault {
            source: self.source,
            address: address & !(FRAME_SIZE - 1),
            access,
            reason,
            meaning: fault_meaning(reason),
        };
        state.faults.push_back(fault);
        Err(fault)
    }

    /// Where `iova` leads, as a number (tests compare it with physical segments).
    pub fn translate_for_test(&self, iova: u64) -> Option<u64> {
        IoMapper::translate(self, iova).map(|address| address.as_u64())
    }

    /// IOVA pages mapped now.
    pub fn mapped_pages(&self) -> usize {
        self.state.lock().pages.len()
    }

    /// Free IOVA pages now.
    pub fn free_iova_pages(&self) -> u64 {
        self.state.lock().space.free_pages()
    }
}

impl IoMapper for SimulatedMapper {
    fn name(&self) -> String {
        format!("simulated IOMMU domain for {:#06x}", self.source)
    }

    fn translating(&self) -> bool {
        self.state.lock().translating
    }

    fn map(&self, pages: &[PhysAddr], direction: IoDirection, highest_address: u64) -> Result<u64, IoFailure> {
        let mut state = self.state.lock();
        let limit = (highest_address / FRAME_SIZE).saturating_add(1);
        let Some(first) = state.space.allocate(pages.len() as u64, limit) else {
            let cause = Cause::IovaSpaceExhausted { pages: pages.len(), highest_address };
            return Err(IoFailure::new(IoReturn::NoResources, cause));
        };
        for (index, page) in pages.iter().enumerate() {
            state.pages.insert(first + index as u64, (page.as_u64() / FRAME_SIZE, direction));
        }
        Ok(first * FRAME_SIZE)
    }

    fn unmap(&self, iova: u64, count: usize) -> Result<(), IoFailure> {
        let mut state = self.state.lock();
        let first = iova / FRAME_SIZE;
        for page in first..first + count as u64 {
            let entry = state.pages.remove(&page);
            assert!(entry.is_some(), "simulated IOMMU: unmapping IOVA page {page:#x} twice");
            if let (Some(entry), Invalidation::TimesOut) = (entry, state.invalidation) {
                state.stale.insert(page, entry);
            }
        }
        if state.invalidation == Invalidation::TimesOut {
            // Never handed out again: the device may still reach the old pages.
            return Err(IoFailure::new(IoReturn::Timeout, Cause::InvalidationFailed { iova, pages: count }));
        }
        assert!(state.space.free(first, count as u64), "simulated IOMMU: IOVA range freed twice");
        Ok(())
    }

    fn translate(&self, iova: u64) -> Option<PhysAddr> {
        let state = self.state.lock();
        let &(page, _) = state.pages.get(&(iova / FRAME_SIZE))?;
        Some(PhysAddr::new(page * FRAME_SIZE + iova % FRAME_SIZE))
    }

    fn take_fault(&self, range: MappedRange) -> Option<IommuFault> {
        let mut state = self.state.lock();
        let belongs = |address: u64| range.contains(address) || !state.pages.contains_key(&(address / FRAME_SIZE));
        let index = state.faults.iter().position(|fault| belongs(fault.address))?;
        state.faults.remove(index)
    }
}
