//! The faults a unit read from its fault records: those no domain took yet
//! (each domain takes its own device's, at complete), and the most recent
//! ones, for the report. Both are bounded: a device that faults forever does
//! not grow the kernel's memory. Faults lost (the unit's overflow, or one
//! dropped from the full queue) are counted, so that a transfer in flight
//! meanwhile can learn that a fault of its own may be among them.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::registers::{Capability, ExtendedCapability, FAULT_RECORD_SIZE};
use crate::dma::{FaultLoss, IommuCause, IommuFault};

/// Where the registers at fixed offsets end (VT-d's register map): after the
/// last variable-range MTRR at 0x218 on a unit with memory-type support
/// (ECAP.MTS), after the page-request event registers (0xe0..0xf0) on one
/// without. QEMU (no MTS) puts its fault records at 0x220, much hardware
/// (no MTS) at 0x200 or 0x400. A record below would overlap one of them, and
/// clearing it (a write of bit 31 at its last dword) could start a command there.
pub(super) fn fixed_registers_end(extended: ExtendedCapability) -> u16 {
    if extended.memory_type_support() { 0x220 } else { 0x100 }
}

/// Where a unit's fault recording registers lie in its register page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FaultRecords {
    first: u16,
    count: u16,
}

impl FaultRecords {
    /// The records CAP.FRO and CAP.NFR describe, if every one lies in the
    /// `page` bytes dmakit maps, after the fixed registers and clear of the
    /// IOTLB registers ECAP.IRO places: otherwise a fault recorded there
    /// would go unread (its transfer could end `Ok`), and reading or clearing
    /// it would touch memory or a register that is not a record.
    pub(super) fn locate(
        capability: Capability,
        extended: ExtendedCapability,
        page: u16,
    ) -> Result<FaultRecords, IommuCause> {
        let (first, count) = (capability.fault_record_offset(), capability.fault_records());
        let iotlb_offset = extended.iotlb_offset();
        // At most 0x3ff0 + 256 * 16: no overflow.
        let end = first + count * FAULT_RECORD_SIZE;
        let overlaps_iotlb = first < iotlb_offset + 16 && iotlb_offset < end;
        if first < fixed_registers_end(extended) || end > page || overlaps_iotlb {
            return Err(IommuCause::FaultRecordsMisplaced { offset: first, count });
        }
        Ok(FaultRecords { first, count })
    }

    /// The register offset of every record, first to last.
    pub(super) fn offsets(self) -> impl Iterator<Item = u16> {
        (0..self.count).map(move |index| self.first + index * FAULT_RECORD_SIZE)
    }
}

/// How many faults the unit keeps: not yet taken by their domain, and the
/// most recent ones for the report.
pub const FAULT_LOG_LENGTH: usize = 32;

/// A unit's faults and its counts of them.
pub(super) struct FaultLog {
    /// Faults not yet taken by their device's domain, oldest first. Only
    /// `record` adds to it (so it stays bounded); `Unit::take_fault` takes a
    /// domain's fault out of it directly.
    pub(super) pending: VecDeque<IommuFault>,
    /// The most recent faults, for the report.
    recent: VecDeque<IommuFault>,
    seen: u64,
    /// Faults dropped from `pending` because nobody took them and it was full.
    dropped: u64,
    /// Times the unit reported a primary fault overflow (faults it never recorded).
    overflows: u64,
    /// Requester id -> its faults dropped from `pending`.
    dropped_by_source: BTreeMap<u16, u64>,
}

/// Where a device's fault losses stood at one moment (a transfer's map): a
/// later mark that differs says faults of that device may have been lost since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FaultMark {
    /// The unit's overflows: they may have lost any device's faults.
    overflows: u64,
    /// The device's faults dropped from the pending queue.
    dropped: u64,
}

impl FaultMark {
    /// How faults may have been lost between `earlier` and this mark, if they were.
    pub(super) fn lost_since(&self, earlier: FaultMark) -> Option<FaultLoss> {
        if self.overflows != earlier.overflows {
            Some(FaultLoss::UnitOverflow)
        } else if self.dropped != earlier.dropped {
            Some(FaultLoss::PendingQueueFull)
        } else {
            None
        }
    }
}

impl FaultLog {
    /// No faults yet.
    pub(super) const fn new() -> FaultLog {
        FaultLog {
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            seen: 0,
            dropped: 0,
            overflows: 0,
            dropped_by_source: BTreeMap::new(),
        }
    }

    /// Forgets the faults kept (not the counts): what firmware left behind.
    pub(super) fn forget(&mut self) {
        self.recent.clear();
        self.pending.clear();
    }

    /// Keeps `fault`, dropping the oldest if the log is full.
    pub(super) fn record(&mut self, fault: IommuFault) {
        self.seen += 1;
        if self.pending.len() == FAULT_LOG_LENGTH
            && let Some(lost) = self.pending.pop_front()
        {
            self.dropped += 1;
            *self.dropped_by_source.entry(lost.source).or_insert(0) += 1;
        }
        self.pending.push_back(fault);
        if self.recent.len() == FAULT_LOG_LENGTH {
            self.recent.pop_front();
        }
        self.recent.push_back(fault);
    }

    /// Takes every pending fault of device `source` whose address `belongs`,
    /// oldest first.
    pub(super) fn take_all(&mut self, source: u16, belongs: &dyn Fn(u64) -> bool) -> Vec<IommuFault> {
        let mut taken = Vec::new();
        self.pending.retain(|fault| {
            let mine = fault.source == source && belongs(fault.address);
            if mine {
                taken.push(*fault);
            }
            !mine
        });
        taken
    }

    /// Counts a primary fault overflow: faults the unit never recorded.
    pub(super) fn count_overflow(&mut self) {
        self.overflows += 1;
    }

    /// Where device `source`'s losses stand now.
    pub(super) fn mark(&self, source: u16) -> FaultMark {
        FaultMark { overflows: self.overflows, dropped: self.dropped_by_source.get(&source).copied().unwrap_or(0) }
    }

    /// The most recent faults, oldest first.
    pub(super) fn recent(&self) -> Vec<IommuFault> {
        self.recent.iter().copied().collect()
    }

    /// Lines about the faults: counts, then each recent fault.
    pub(super) fn report(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.recent.len() + 1);
        lines.push(format!(
            "faults: {} recorded, {} not taken by a domain, {} dropped unread, {} overflow(s) (faults never recorded)",
            self.seen,
            self.pending.len(),
            self.dropped,
            self.overflows
        ));
        lines.extend(self.recent.iter().map(|fault| format!("  {fault}")));
        lines
    }
}
