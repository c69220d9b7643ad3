//! Host tests of a VT-d unit against the fake register block: bring-up order,
//! timeouts, global commands, fault records.

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
    assert_eq!(error.cause(), Cause::Iommu(IommuCause::UnitTimedOut(UnitStep::RootTablePointer)), "{error}");
    assert!(error.to_string().contains("RTPS"), "{error}");
}

#[test]
fn a_unit_without_usable_table_depths_is_refused() {
    let platform = SimulatedPlatform::leak(0);
    let only_five_levels = (QEMU_CAPABILITY & !(0x1f << 8)) | (0b01000 << 8);
    let fake = Arc::new(FakeUnit::new(only_five_levels, QEMU_EXTENDED_CAPABILITY));
    let error = Unit::start(0, 0, fake, platform).err().expect("refused");
    assert_eq!((error.code(), error.cause()), (IoReturn::IoError, Cause::Iommu(IommuCause::NoSupportedDepth)));
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

#[test]
fn asking_for_faults_when_none_is_pending_is_one_register_read() {
    let platform = SimulatedPlatform::leak(0);
    let fake = Arc::new(FakeUnit::qemu());
    let unit = Unit::start(0, 0, Arc::clone(&fake), platform).unwrap();
    let before = fake.reads();
    assert_eq!(unit.take_fault(0x0018, EVERYWHERE), None);
    assert_eq!(fake.reads() - before, 1, "the fault status only");
    fake.plant_fault(0, 0x0018, 0x1000, 0x06, true);
    let before = fake.reads();
    assert!(unit.take_fault(0x0018, EVERYWHERE).is_some());
    assert!(fake.reads() - before > 1, "with a fault pending, its record is read too");
}
