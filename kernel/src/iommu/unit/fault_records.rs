//! A unit's fault records where the capability register puts them, and what
//! they hold, generated: records outside the register page, over the fixed
//! registers or the IOTLB's, and records naming any reason, source and
//! address. A unit is refused with a typed cause or runs; the fake unit
//! fails the test on any register access outside the page.

use alloc::format;

use proptest::prelude::*;

use super::super::fake::{FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY};
use super::super::faults::{FaultRecords, fixed_registers_end};
use super::super::registers::ExtendedCapability;
use super::*;
use crate::dma::simulated::SimulatedPlatform;
use crate::test_support::generated_input_config;

/// CAP with its fault-record fields replaced: FRO in 16-byte units, NFR minus one.
fn with_records(offset_units: u64, count_minus_one: u64) -> u64 {
    (QEMU_CAPABILITY & !(0x3ff << 24) & !(0xff << 40)) | (offset_units << 24) | (count_minus_one << 40)
}

/// ECAP with IRO (in 16-byte units) replaced.
fn with_iotlb(units: u64) -> u64 {
    (QEMU_EXTENDED_CAPABILITY & !(0x3ff << 8)) | (units << 8)
}

fn refusal(capability: u64, extended: u64) -> IommuCause {
    let error = Unit::start(0, 0, Arc::new(FakeUnit::new(capability, extended)), SimulatedPlatform::leak(0))
        .err()
        .expect("refused");
    match error.cause() {
        Cause::Iommu(cause) => cause,
        other => panic!("refused for {other:?}"),
    }
}

#[test]
fn records_outside_the_page_over_registers_or_the_iotlb_are_refused_by_name() {
    // FRO 0x3ff0: past the page; 0xff0 with two records: the second straddles its end.
    assert_eq!(
        refusal(with_records(0x3ff, 0), QEMU_EXTENDED_CAPABILITY),
        IommuCause::FaultRecordsMisplaced { offset: 0x3ff0, count: 1 }
    );
    assert_eq!(
        refusal(with_records(0xff, 1), QEMU_EXTENDED_CAPABILITY),
        IommuCause::FaultRecordsMisplaced { offset: 0xff0, count: 2 }
    );
    // FRO 0x20: record 0's last dword is CCMD's upper half, whose bit 31 starts an invalidation.
    let over_commands = refusal(with_records(0x2, 0), QEMU_EXTENDED_CAPABILITY);
    assert_eq!(over_commands, IommuCause::FaultRecordsMisplaced { offset: 0x20, count: 1 });
    assert_eq!(
        over_commands.to_string(),
        "VT-d: 1 fault record(s) at 0x20 (CAP.FRO, CAP.NFR) do not lie in the mapped register page clear of the \
         other registers"
    );
    // IOTLB registers at 0x300, inside records 0x220..0x420.
    assert_eq!(
        refusal(with_records(0x22, 31), with_iotlb(0x30)),
        IommuCause::FaultRecordsMisplaced { offset: 0x220, count: 32 }
    );
    // A unit with memory-type range registers has them up to 0x21f: records
    // at 0x200 (where much hardware without them puts its records) would lie over them.
    let with_mtrrs = QEMU_EXTENDED_CAPABILITY | 1 << 25;
    assert_eq!(
        refusal(with_records(0x20, 7), with_mtrrs),
        IommuCause::FaultRecordsMisplaced { offset: 0x200, count: 8 }
    );
    for (offset_units, extended) in [(0x20, QEMU_EXTENDED_CAPABILITY), (0x22, with_mtrrs)] {
        let capability = with_records(offset_units, 7);
        let platform = SimulatedPlatform::leak(0);
        assert!(
            Unit::start(0, 0, Arc::new(FakeUnit::new(capability, extended)), platform).is_ok(),
            "{offset_units:#x}"
        );
    }
    // The last record ending exactly at the page's end is fine.
    let platform = SimulatedPlatform::leak(0);
    assert!(
        Unit::start(0, 0, Arc::new(FakeUnit::new(with_records(0xfe, 1), QEMU_EXTENDED_CAPABILITY)), platform).is_ok()
    );
}

#[test]
fn a_record_naming_what_cannot_occur_is_reported_not_trusted() {
    let platform = SimulatedPlatform::leak(0);
    let fake = Arc::new(FakeUnit::qemu());
    let unit = Unit::start(0, 0, Arc::clone(&fake), platform).unwrap();
    // Reason 0xff (reserved), source ff:1f.7 (no device), an address past any
    // width, reserved bits set everywhere.
    fake.plant_record(0, u64::MAX, u64::MAX, PRIMARY_PENDING_FAULT);
    let faults = unit.recent_faults();
    assert_eq!(faults.len(), 1);
    let fault = faults[0];
    assert_eq!((fault.reason, fault.source, fault.address), (0xff, 0xffff, !0xfff));
    assert_eq!(fault.meaning, "a fault reason this kernel does not decode");
    assert!(format!("{fault}").contains("ff:1f.7"), "{fault}");
    assert_eq!(unit.take_fault(0x0018, &|_| true), None, "another device's transfer is not blamed");
    assert_eq!(fake.register(FAULT_STATUS) & PRIMARY_PENDING_FAULT, 0, "the record was cleared");
}

proptest! {
    #![proptest_config(generated_input_config())]

    /// Wherever CAP and ECAP put them, located records lie in the page,
    /// after the fixed registers, clear of the IOTLB's; refused ones do not.
    #[test]
    fn located_records_lie_where_they_may(offset_units in 0u64..0x400, count_minus_one in 0u64..0x100, iotlb_units in 0u64..0x400, mtrrs in any::<bool>()) {
        let capability = Capability(with_records(offset_units, count_minus_one));
        let extended = ExtendedCapability(with_iotlb(iotlb_units) | u64::from(mtrrs) << 25);
        let iotlb = (iotlb_units * 16) as u16;
        let (first, end) = (offset_units * 16, (offset_units + count_minus_one + 1) * 16);
        let fixed_end: u16 = if mtrrs { 0x220 } else { 0x100 };
        prop_assert_eq!(fixed_registers_end(extended), fixed_end);
        let allowed = first >= u64::from(fixed_end)
            && end <= u64::from(REGISTER_PAGE)
            && (end <= u64::from(iotlb) || u64::from(iotlb) + 16 <= first);
        match FaultRecords::locate(capability, extended, REGISTER_PAGE) {
            Ok(records) => {
                prop_assert!(allowed);
                prop_assert!(records.offsets().eq((first..end).step_by(16).map(|offset| offset as u16)));
            }
            Err(cause) => {
                prop_assert!(!allowed);
                prop_assert_eq!(cause, IommuCause::FaultRecordsMisplaced { offset: first as u16, count: count_minus_one as u16 + 1 });
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Units with generated record placements start or are refused by name;
    /// generated record contents (any bits, the status bits either way) are
    /// read, kept within the log's bound and reported, never out of the page.
    #[test]
    fn generated_records_are_read_inside_the_page(
        offset_units in prop_oneof![0x22u64..0x100, 0u64..0x400],
        count_minus_one in prop_oneof![0u64..4, 0u64..0x100],
        records in prop::collection::vec((any::<u64>(), any::<u64>(), 0u32..4), 1..8),
        source in any::<u16>(),
    ) {
        let fake = Arc::new(FakeUnit::new(with_records(offset_units, count_minus_one), QEMU_EXTENDED_CAPABILITY));
        let unit = match Unit::start(0, 0, Arc::clone(&fake), SimulatedPlatform::leak(0)) {
            Ok(unit) => unit,
            Err(error) => {
                prop_assert!(matches!(error.cause(), Cause::Iommu(IommuCause::FaultRecordsMisplaced { .. })), "{}", error);
                return Ok(());
            }
        };
        for (index, &(low, high, status)) in records.iter().enumerate() {
            fake.plant_record(index as u16 % (count_minus_one as u16 + 1), low, high, status);
            let taken = unit.take_fault(source, &|_| true);
            prop_assert!(taken.is_none_or(|fault| fault.source == source && fault.address & 0xfff == 0));
        }
        prop_assert!(unit.recent_faults().len() <= FAULT_LOG_LENGTH);
        prop_assert!(unit.fault_report().len() <= FAULT_LOG_LENGTH + 1);
    }
}
