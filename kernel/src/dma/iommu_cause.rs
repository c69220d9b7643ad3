//! `IommuCause`: why the IOMMU layer (a VT-d unit, a device's domain, the
//! registry of units, or the [`super::IoMapper`] a command maps through) said
//! no, as a value a caller can match: a unit that timed out is not a unit that
//! refused, and neither is a domain that passes DMA through.
//!
//! The IOMMU's own reports that concern one transfer stay [`super::Cause`]
//! variants of their own: a refused DMA (`IommuFault`), faults lost while it
//! was in flight (`IommuFaultsLost`), an unconfirmed
//! invalidation (`InvalidationFailed`), IOVA space spent (`IovaSpaceExhausted`).

use core::fmt;

/// A register handshake of a VT-d unit: a command written, then a status bit
/// waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitStep {
    /// Turning translation off (GSTS.TES clears).
    TranslationOff,
    /// Latching the root table pointer (GSTS.RTPS).
    RootTablePointer,
    /// Turning translation on (GSTS.TES sets).
    TranslationOn,
    /// Draining the write buffer (GSTS.WBFS clears).
    WriteBufferFlush,
    /// A context-cache invalidation (CCMD.ICC clears).
    ContextInvalidation,
    /// An IOTLB invalidation left running by an earlier timeout (IOTLB.IVT
    /// clears before a new one may be written).
    EarlierIotlbInvalidation,
    /// An IOTLB invalidation (IOTLB.IVT clears).
    IotlbInvalidation,
}

impl fmt::Display for UnitStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitStep::TranslationOff => "translation did not switch off (GSTS.TES)",
            UnitStep::RootTablePointer => "the root table pointer was not latched (GSTS.RTPS)",
            UnitStep::TranslationOn => "translation did not switch on (GSTS.TES)",
            UnitStep::WriteBufferFlush => "the write buffer flush did not finish (GSTS.WBFS)",
            UnitStep::ContextInvalidation => "the context-cache invalidation did not finish (CCMD.ICC)",
            UnitStep::EarlierIotlbInvalidation => "an earlier IOTLB invalidation is still in progress (IOTLB.IVT)",
            UnitStep::IotlbInvalidation => "the IOTLB invalidation did not finish (IOTLB.IVT)",
        })
    }
}

/// A table the IOMMU walks, which lives in frames of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuTable {
    /// The unit's root table (one per unit).
    Root,
    /// A bus's context table.
    Context,
    /// A domain's page table (its top level).
    PageTable,
    /// A lower level of a domain's page table, made when a mapping needs it.
    PageTableLevel,
}

/// Why the IOMMU layer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuCause {
    /// The unit walks neither 3- nor 4-level tables (CAP.SAGAW).
    NoSupportedDepth,
    /// The unit's IOTLB registers lie beyond the register page dmakit maps.
    IotlbRegistersUnreachable,
    /// The unit's fault records (CAP.FRO, CAP.NFR) do not all lie in the
    /// register page dmakit maps, clear of its other registers: faults there
    /// could not be read, and clearing one would write another register.
    FaultRecordsMisplaced {
        /// CAP.FRO: where the first record lies (bytes).
        offset: u16,
        /// CAP.NFR: how many records there are.
        count: u16,
    },
    /// Firmware left queued invalidation on; dmakit invalidates through registers.
    QueuedInvalidationOn,
    /// No frame (below the unit's address width) for one of its tables.
    NoTableFrame(IommuTable),
    /// A register handshake did not finish within the polls allowed: the unit
    /// may still be doing it.
    UnitTimedOut(UnitStep),
    /// The unit finished a context-cache invalidation without doing it (CCMD.CAIG 0).
    ContextInvalidationRefused,
    /// The unit finished an IOTLB invalidation without doing it (IOTLB.IAIG 0).
    IotlbInvalidationRefused,
    /// The device has a domain already (one domain per requester).
    DeviceHasDomain,
    /// Every domain id the unit has (CAP.ND) is given out.
    DomainIdsExhausted,
    /// The unit cannot pass DMA through untranslated (ECAP.PT is 0).
    PassThroughUnsupported,
    /// The domain still has pages mapped (besides its identity-mapped shared
    /// memory), so its mode may not change.
    DomainHasMappings,
    /// The domain passes DMA through untranslated: nothing is mapped in it.
    DomainPassesThrough,
    /// Nothing to map: no pages, or no direction.
    NothingToMap,
    /// IOMMU pages are mapped whole: a page address was not page-aligned.
    PageNotAligned,
    /// An identity mapping takes one contiguous run of pages (and a direction).
    IdentityNotContiguous,
    /// The IOVAs equal to these pages are taken (or the domain passes through).
    IdentityIovasTaken,
    /// This mapper does not map IOVA = physical.
    IdentityUnsupported,
    /// An IOVA lies beyond the domain's address width.
    IovaBeyondWidth,
    /// A free IOVA was mapped already: the IOMMU's bookkeeping is wrong.
    IovaMappedAlready,
    /// The page table refused a page address.
    UnmappablePage,
    /// `init` ran before: the units are up already.
    AlreadyInitialized,
    /// No VT-d unit that is on covers the device.
    DeviceNotCovered,
}

impl fmt::Display for IommuCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IommuCause::NoSupportedDepth => {
                f.write_str("VT-d: the unit walks neither 3- nor 4-level tables (CAP.SAGAW)")
            }
            IommuCause::IotlbRegistersUnreachable => {
                f.write_str("VT-d: the IOTLB registers lie beyond the mapped register page")
            }
            IommuCause::FaultRecordsMisplaced { offset, count } => write!(
                f,
                "VT-d: {count} fault record(s) at {offset:#x} (CAP.FRO, CAP.NFR) do not lie in the mapped register page \
                 clear of the other registers"
            ),
            IommuCause::QueuedInvalidationOn => {
                f.write_str("VT-d: queued invalidation was left on; dmakit invalidates through registers only")
            }
            IommuCause::NoTableFrame(IommuTable::Root) => f.write_str("VT-d: no frame for the root table"),
            IommuCause::NoTableFrame(IommuTable::Context) => f.write_str("VT-d: no frame for a context table"),
            IommuCause::NoTableFrame(IommuTable::PageTable) => f.write_str("VT-d: no frame for a page table"),
            IommuCause::NoTableFrame(IommuTable::PageTableLevel) => {
                f.write_str("no frame for an IOMMU page-table page")
            }
            IommuCause::UnitTimedOut(step) => write!(f, "VT-d: {step}"),
            IommuCause::ContextInvalidationRefused => {
                f.write_str("VT-d: the unit refused a context-cache invalidation (CCMD.CAIG 0)")
            }
            IommuCause::IotlbInvalidationRefused => {
                f.write_str("VT-d: the unit refused an IOTLB invalidation (IOTLB.IAIG 0)")
            }
            IommuCause::DeviceHasDomain => f.write_str("VT-d: the device has a domain already"),
            IommuCause::DomainIdsExhausted => f.write_str("VT-d: no domain id is left (CAP.ND)"),
            IommuCause::PassThroughUnsupported => f.write_str("this IOMMU cannot pass DMA through (ECAP.PT is 0)"),
            IommuCause::DomainHasMappings => f.write_str("the domain still has pages mapped"),
            IommuCause::DomainPassesThrough => {
                f.write_str("the domain passes DMA through untranslated: nothing is mapped")
            }
            IommuCause::NothingToMap => f.write_str("nothing to map"),
            IommuCause::PageNotAligned => f.write_str("IOMMU pages are mapped whole: page-aligned addresses"),
            IommuCause::IdentityNotContiguous => f.write_str("identity maps one contiguous run of pages"),
            IommuCause::IdentityIovasTaken => f.write_str("the IOVAs equal to these pages are taken"),
            IommuCause::IdentityUnsupported => f.write_str("this IOMMU domain does not map IOVA = physical"),
            IommuCause::IovaBeyondWidth => f.write_str("an IOVA beyond the domain's address width"),
            IommuCause::IovaMappedAlready => f.write_str("a free IOVA was mapped already (IOMMU bookkeeping bug)"),
            IommuCause::UnmappablePage => f.write_str("an unmappable page address"),
            IommuCause::AlreadyInitialized => f.write_str("the IOMMU is initialized already"),
            IommuCause::DeviceNotCovered => f.write_str("no VT-d unit that is on covers this device"),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn a_timeout_names_its_handshake_and_a_refusal_its_register() {
        assert_eq!(
            IommuCause::UnitTimedOut(UnitStep::RootTablePointer).to_string(),
            "VT-d: the root table pointer was not latched (GSTS.RTPS)"
        );
        assert_eq!(
            IommuCause::IotlbInvalidationRefused.to_string(),
            "VT-d: the unit refused an IOTLB invalidation (IOTLB.IAIG 0)"
        );
        assert_eq!(IommuCause::NoTableFrame(IommuTable::Context).to_string(), "VT-d: no frame for a context table");
        assert_eq!(IommuCause::DeviceNotCovered.to_string(), "no VT-d unit that is on covers this device");
    }
}
