//! A simulated IOMMU for host tests: a domain's page table as a map from IOVA
//! page to physical page and access, and a fault log.
//!
//! Fake devices behind it call [`SimulatedMapper::device_address`] for every
//! address a driver gives them: a page that is not mapped, or mapped without the
//! access the device attempts, is refused and recorded as a fault, as VT-d does.

use crate::dma::MappedRange;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;

use spin::Mutex;
use x86_64::PhysAddr;

use super::mapper::{FaultAccess, IoMapper, IommuFault};
use super::{Cause, IoDirection, IoFailure, IoReturn, IovaSpace};
use crate::memory::FRAME_SIZE;

/// VT-d's reason code for a write through an entry without write permission
/// (VT-d has no separate present bit: an entry with R and W clear is "not
/// present", so a write into a hole is this fault too).
pub const FAULT_WRITE_DENIED: u8 = 0x05;
/// VT-d's reason code for a read through an entry without read permission (or
/// a read into a hole).
pub const FAULT_READ_DENIED: u8 = 0x06;

struct State {
    /// IOVA page -> (physical page, direction the device may use it in).
    pages: BTreeMap<u64, (u64, IoDirection)>,
    space: IovaSpace,
    faults: VecDeque<IommuFault>,
    translating: bool,
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
            space: IovaSpace::new(end_page),
            faults: VecDeque::new(),
            translating: true,
        };
        SimulatedMapper { source, state: Mutex::new(state) }
    }

    /// Switches translation off (pass-through: device addresses are physical) or on.
    pub fn set_translating(&self, translating: bool) {
        self.state.lock().translating = translating;
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
        let reason = match state.pages.get(&(address / FRAME_SIZE)) {
            Some(&(page, direction)) if allowed(direction) => return Ok(page * FRAME_SIZE + address % FRAME_SIZE),
            _ if access == FaultAccess::Write => FAULT_WRITE_DENIED,
            _ => FAULT_READ_DENIED,
        };
        let fault = IommuFault {
            source: self.source,
            address: address & !(FRAME_SIZE - 1),
            access,
            reason,
            meaning: super::mapper::fault_meaning(reason),
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

    fn unmap(&self, iova: u64, count: usize) {
        let mut state = self.state.lock();
        let first = iova / FRAME_SIZE;
        for page in first..first + count as u64 {
            assert!(state.pages.remove(&page).is_some(), "simulated IOMMU: unmapping IOVA page {page:#x} twice");
        }
        assert!(state.space.free(first, count as u64), "simulated IOMMU: IOVA range freed twice");
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
