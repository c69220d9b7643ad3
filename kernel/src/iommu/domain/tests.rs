//! Host tests of VT-d domains against the fake register block: context
//! entries, map and unmap as the hardware walks them, invalidation, IOVA limits,
//! faults, pass-through, unconfirmed unmaps, the lock order and the experiment.

use super::super::experiment::Experiment;
use super::super::fake::{Event, FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY, Stall};
use super::super::page_table::tests::hardware_walk;
use super::super::tables::{self, ENTRY_SIZE};
use super::*;
use crate::dma::FaultAccess;
use crate::dma::simulated::SimulatedPlatform;

const IDE: u16 = 0x0008; // 00:01.0
const DISK: u16 = (1 << 8) | (4 << 3); // 01:04.0

fn start(capability: u64, extended: u64) -> (&'static SimulatedPlatform, Arc<FakeUnit>, Arc<Unit<Arc<FakeUnit>>>) {
    let platform = SimulatedPlatform::leak(0);
    let fake = Arc::new(FakeUnit::new(capability, extended));
    let unit = Unit::start(0, 0xfed9_0000, Arc::clone(&fake), platform).unwrap();
    fake.clear_events();
    (platform, fake, unit)
}

fn read_quad(platform: &SimulatedPlatform, address: u64) -> u64 {
    let mut bytes = [0; 8];
    platform.device_read(address, &mut bytes);
    u64::from_le_bytes(bytes)
}

/// The context entry of `source`, found as the hardware finds it: RTADDR,
/// root entry, context entry.
fn context_entry(platform: &SimulatedPlatform, fake: &FakeUnit, source: u16) -> ContextEntry {
    let root = u64::from(fake.register(0x20)) | (u64::from(fake.register(0x24)) << 32);
    let root_low = read_quad(platform, root + u64::from(tables::bus(source)) * ENTRY_SIZE);
    assert_eq!(root_low & 1, 1, "the bus's root entry is present");
    let address = (root_low & !0xfff) + u64::from(tables::context_index(source)) * ENTRY_SIZE;
    ContextEntry { low: read_quad(platform, address), high: read_quad(platform, address + 8) }
}

#[test]
fn identity_mappings_stay_across_pass_through_and_transfers_do_not() {
    let (_, _, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let ide = unit.attach(IDE).unwrap();
    let ring = [PhysAddr::new(0x20_0000), PhysAddr::new(0x20_1000)];
    assert_eq!(ide.map_identity(&ring, IoDirection::InOut).unwrap(), 0x20_0000, "IOVA = physical");
    assert!(ide.map_identity(&ring, IoDirection::InOut).is_err(), "those IOVAs are taken now");
    let transfer = ide.map(&[PhysAddr::new(0x30_0000)], IoDirection::In, u64::from(u32::MAX)).unwrap();
    let busy = ide.set_passthrough(true).unwrap_err();
    assert_eq!(busy.code(), IoReturn::Busy, "a transfer is still mapped");
    ide.unmap(transfer, 1).unwrap();
    ide.set_passthrough(true).unwrap();
    assert!(!ide.translating());
    ide.set_passthrough(false).unwrap();
    assert_eq!(ide.translate(0x20_1234), Some(PhysAddr::new(0x20_1234)), "the ring kept its address");
}

#[test]
fn attaching_writes_a_context_entry_and_invalidates_for_that_device() {
    let (platform, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let ide = unit.attach(IDE).unwrap();
    let disk = unit.attach(DISK).unwrap();
    assert_eq!((ide.id(), disk.id()), (1, 2), "domain ids from 1");
    assert_eq!(ide.name(), "VT-d unit 0, domain 1 (00:01.0)");
    let entry = context_entry(platform, &fake, DISK);
    assert!(entry.is_present());
    assert_eq!(entry.translation(), Some(tables::TranslationType::Translated));
    assert_eq!((entry.domain(), entry.address_width()), (2, 1), "domain 2, 39-bit");
    assert_eq!(
        fake.events(),
        [
            Event::ContextInvalidation { granularity: 3, source: IDE },
            Event::IotlbInvalidation { granularity: 2, domain: 1, address: 0 },
            Event::ContextInvalidation { granularity: 3, source: DISK },
            Event::IotlbInvalidation { granularity: 2, domain: 2, address: 0 },
        ]
    );
    assert_eq!(unit.attach(IDE).err().map(|error| error.code()), Some(IoReturn::Busy));
}

#[test]
fn map_and_unmap_reach_the_hardware_and_invalidate_page_selectively() {
    let (platform, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let root = context_entry(platform, &fake, IDE).page_table();
    let pages = [PhysAddr::new(0x1_0400_3000), PhysAddr::new(0x20_0000), PhysAddr::new(0x1_0400_9000)];
    fake.clear_events();
    let iova = domain.map(&pages, IoDirection::In, 0xffff_ffff).unwrap();
    assert!(iova + 3 * FRAME_SIZE <= 1 << 32, "below the 32-bit limit");
    assert!(fake.events().is_empty(), "no caching mode: a new mapping needs no invalidation");
    for (index, page) in pages.iter().enumerate() {
        let walked = hardware_walk(platform, root, 3, iova + index as u64 * FRAME_SIZE);
        assert_eq!(walked, Some((page.as_u64(), false, true)), "device-writable only");
    }
    assert_eq!(domain.translate(iova + 0x1234), Some(PhysAddr::new(0x20_0234)));
    assert_eq!(domain.mapped_pages(), 3);

    domain.unmap(iova, 3).unwrap();
    assert_eq!(domain.mapped_pages(), 0);
    assert_eq!(hardware_walk(platform, root, 3, iova), None);
    let first = iova / FRAME_SIZE;
    let mask = super::super::unit::covering_mask(first, 3);
    assert_eq!(
        fake.events(),
        [Event::IotlbInvalidation {
            granularity: 3,
            domain: 1,
            address: (((first >> mask) << mask) * FRAME_SIZE) | u64::from(mask)
        }]
    );
    assert_eq!(domain.free_iova_pages(), (1 << 27) - 1, "every IOVA page back");
}

#[test]
fn without_psi_unmap_invalidates_the_domain() {
    let (_, fake, unit) = start(QEMU_CAPABILITY & !(1 << 39), QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::Out, u64::MAX).unwrap();
    fake.clear_events();
    domain.unmap(iova, 1).unwrap();
    assert_eq!(fake.events(), [Event::IotlbInvalidation { granularity: 2, domain: 1, address: 0 }]);
}

#[test]
fn a_range_beyond_mamv_falls_back_to_the_domain() {
    // MAMV 1: at most 2 pages per page-selective invalidation.
    let capability = (QEMU_CAPABILITY & !(0x3f << 48)) | (1 << 48);
    let (_, fake, unit) = start(capability, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let pages: alloc::vec::Vec<PhysAddr> = (0..4).map(|page| PhysAddr::new(0x10_0000 + page * FRAME_SIZE)).collect();
    let iova = domain.map(&pages, IoDirection::InOut, u64::MAX).unwrap();
    fake.clear_events();
    domain.unmap(iova, 4).unwrap();
    assert_eq!(fake.events(), [Event::IotlbInvalidation { granularity: 2, domain: 1, address: 0 }]);
}

#[test]
fn a_refused_page_selective_invalidation_falls_back_to_the_domain() {
    let (_, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::Out, u64::MAX).unwrap();
    fake.clear_events();
    fake.refuse_page_selective();
    domain.unmap(iova, 1).unwrap();
    // Page-selective (3), refused; then domain-selective (2), which ignores
    // the address register.
    let granularities: alloc::vec::Vec<(u64, u16)> = fake
        .events()
        .iter()
        .map(|event| match *event {
            Event::IotlbInvalidation { granularity, domain, .. } => (granularity, domain),
            ref other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(granularities, [(3, 1), (2, 1)]);
    assert_eq!(domain.quarantined_pages(), 0, "the domain-wide invalidation was confirmed");
}

#[test]
fn iovas_stay_below_the_device_limit_and_run_out_cleanly() {
    let (platform, _, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let frames_before = platform.free_frames_count();
    // A 16-bit device: IOVA pages 1..16 (page 0 is never handed out).
    let pages: alloc::vec::Vec<PhysAddr> =
        (0..15).map(|page| PhysAddr::new(0x1_0400_0000 + page * FRAME_SIZE)).collect();
    let iova = domain.map(&pages, IoDirection::In, 0xffff).unwrap();
    assert_eq!(iova, FRAME_SIZE);
    let failure = domain.map(&pages[..1], IoDirection::In, 0xffff).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert_eq!(failure.cause(), Cause::IovaSpaceExhausted { pages: 1, highest_address: 0xffff });
    assert_eq!(domain.mapped_pages(), 15, "the refused map left nothing behind");
    domain.unmap(iova, 15).unwrap();
    assert_eq!(domain.mapped_pages(), 0);
    assert!(platform.free_frames_count() <= frames_before, "table pages are kept, never double-freed");
    // The 48-bit bound: a domain never hands out IOVAs past its 39 bits.
    let iova = domain.map(&pages[..1], IoDirection::In, u64::MAX).unwrap();
    assert!(iova < 1 << 39);
}

#[test]
fn faults_reach_the_domain_of_their_device() {
    let (_, fake, unit) = start(QEMU_CAPABILITY | (1 << 40), QEMU_EXTENDED_CAPABILITY);
    let ide = unit.attach(IDE).unwrap();
    let disk = unit.attach(DISK).unwrap();
    fake.plant_fault(0, DISK, 0x5000, 0x05, false);
    fake.plant_fault(1, IDE, 0x9000, 0x06, true);
    // 0x9000 is mapped by nobody: any transfer of the IDE's may take it.
    let elsewhere = MappedRange { iova: 0x20_0000, pages: 4 };
    let fault = ide.take_fault(elsewhere).expect("the IDE's fault");
    assert_eq!((fault.source, fault.access, fault.address), (IDE, FaultAccess::Read, 0x9000));
    assert_eq!(ide.take_fault(elsewhere), None);
    // 0x5000 is a live transfer's page: the fault waits for that transfer.
    disk.map_identity(&[PhysAddr::new(0x5000)], IoDirection::InOut).unwrap();
    assert_eq!(disk.take_fault(elsewhere), None, "the fault at 0x5000 belongs to the transfer mapped there");
    let its_own = MappedRange { iova: 0x4000, pages: 2 };
    assert_eq!(disk.take_fault(its_own).map(|fault| fault.access), Some(FaultAccess::Write));
}

#[test]
fn pass_through_needs_ecap_pt_and_an_empty_domain() {
    let (platform, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    assert_eq!(domain.set_passthrough(true).err().map(|error| error.code()), Some(IoReturn::Busy));
    domain.unmap(iova, 1).unwrap();
    fake.clear_events();
    domain.set_passthrough(true).unwrap();
    assert!(!domain.translating());
    let entry = context_entry(platform, &fake, IDE);
    assert_eq!(entry.translation(), Some(tables::TranslationType::PassThrough));
    assert_eq!(entry.domain(), 1);
    assert!(fake.events().contains(&Event::ContextInvalidation { granularity: 3, source: IDE }));
    assert_eq!(
        domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).err().map(|error| error.code()),
        Some(IoReturn::NotPermitted)
    );
    domain.set_passthrough(false).unwrap();
    assert_eq!(context_entry(platform, &fake, IDE).translation(), Some(tables::TranslationType::Translated));

    let (_, _, without) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY & !(1 << 6));
    let domain = without.attach(IDE).unwrap();
    assert_eq!(domain.set_passthrough(true).err().map(|error| error.code()), Some(IoReturn::NotPermitted));
}

#[test]
fn a_map_that_runs_out_of_table_pages_leaves_nothing_mapped() {
    // Root table, one context table, the domain's top table, and one level-2
    // table: the leaf table a map needs is one frame too many.
    let stingy = crate::dma::watched_platform::WatchedPlatform::leak(4);
    let fake = Arc::new(FakeUnit::qemu());
    let unit = Unit::start(0, 0, Arc::clone(&fake), stingy).unwrap();
    let domain = unit.attach(IDE).unwrap();
    let failure = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoMemory);
    assert_eq!(domain.mapped_pages(), 0);
    assert_eq!(domain.free_iova_pages(), (1 << 27) - 1, "the IOVAs went back");
    assert_eq!(domain.translate(FRAME_SIZE), None);
}

#[test]
fn the_unmap_early_experiment_leaves_a_hole_for_one_transfer() {
    let (platform, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let root = context_entry(platform, &fake, IDE).page_table();
    domain.set_experiment(Experiment::UnmapBeforeTheDevice);
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    assert_eq!(hardware_walk(platform, root, 3, iova), None, "the device finds a hole");
    assert_eq!(domain.mapped_pages(), 0);
    domain.unmap(iova, 1).unwrap();
    assert_eq!(domain.free_iova_pages(), (1 << 27) - 1);
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    assert!(hardware_walk(platform, root, 3, iova).is_some(), "one transfer long");
}

#[test]
fn the_skip_invalidation_experiment_leaves_a_stale_translation_until_it_is_invalidated() {
    let (_, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(DISK).unwrap();
    let old = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    domain.set_experiment(Experiment::UnmapWithoutInvalidation);
    fake.clear_events();
    domain.unmap(old, 1).unwrap();
    assert!(fake.events().is_empty(), "the unit was not told: its IOTLB may still hold {old:#x}");
    assert_eq!(domain.translate(old), None, "the leaf is gone");
    assert_eq!(domain.stale_pages(), 1);
    assert_eq!(domain.free_iova_pages(), (1 << 27) - 1, "the IOVA went back, as a careless driver would");
    let busy = domain.set_passthrough(true).unwrap_err();
    assert_eq!(busy.code(), IoReturn::Busy, "not while the unit may hold a stale translation");
    // The next mapping reuses the IOVA; one unmap long: its unmap invalidates.
    let new = domain.map(&[PhysAddr::new(0x20_0000)], IoDirection::In, u64::MAX).unwrap();
    assert_eq!(new, old, "first fit hands the same IOVA out again");
    domain.unmap(new, 1).unwrap();
    assert_eq!(fake.events().len(), 1, "invalidated: {:?}", fake.events());
    fake.clear_events();
    assert_eq!(domain.invalidate_stale().unwrap(), 1);
    assert_eq!(fake.events().len(), 1, "the stale range invalidated for real: {:?}", fake.events());
    assert_eq!(domain.stale_pages(), 0);
    assert_eq!(domain.invalidate_stale().unwrap(), 0, "nothing left to invalidate");
    domain.set_passthrough(true).unwrap();
}

#[test]
fn a_stale_range_the_unit_does_not_confirm_stays_on_record() {
    let (_, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(DISK).unwrap();
    let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    domain.set_experiment(Experiment::UnmapWithoutInvalidation);
    domain.unmap(iova, 1).unwrap();
    fake.stall(Stall::IotlbInvalidation);
    let failure = domain.invalidate_stale().unwrap_err();
    assert_eq!(failure.cause(), Cause::InvalidationFailed { iova, pages: 1 });
    assert_eq!(domain.stale_pages(), 1, "still possibly cached: the caller must keep the old page");
}

#[test]
fn an_unmap_the_unit_does_not_confirm_keeps_its_iovas_out_of_use() {
    // A timed-out IOTLB invalidation, and (on a CAP.RWBF unit) a timed-out
    // write-buffer flush before it: either way the unit may still hold the
    // old translation.
    let rwbf = QEMU_CAPABILITY | (1 << 4);
    for (capability, stall) in [(QEMU_CAPABILITY, Stall::IotlbInvalidation), (rwbf, Stall::WriteBufferFlush)] {
        let (_, fake, unit) = start(capability, QEMU_EXTENDED_CAPABILITY);
        let domain = unit.attach(IDE).unwrap();
        let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
        let free = domain.free_iova_pages();
        fake.stall(stall);
        let failure = domain.unmap(iova, 1).unwrap_err();
        assert_eq!(failure.cause(), Cause::InvalidationFailed { iova, pages: 1 }, "{stall:?}");
        assert_eq!(failure.code(), IoReturn::Timeout, "{stall:?}");
        assert_eq!(domain.mapped_pages(), 0, "{stall:?}: the leaf is cleared all the same");
        assert_eq!(domain.quarantined_pages(), 1, "{stall:?}");
        assert_eq!(domain.free_iova_pages(), free, "{stall:?}: an IOVA the IOTLB may still hold went back");
        fake.recover();
        let next = domain.map(&[PhysAddr::new(0x20_0000)], IoDirection::In, u64::MAX).unwrap();
        assert_ne!(next, iova, "{stall:?}: the IOVA was handed out again");
    }
}

#[test]
fn unmap_and_take_fault_on_two_cpus_take_the_locks_in_one_order() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    // Both sides run for a while: the crossing is a matter of timing.
    let until = Instant::now() + Duration::from_secs(2);
    let (_, fake, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    // A fault inside a live transfer's page stays pending, so every
    // `take_fault` for another range asks the domain about its address.
    let live = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
    fake.plant_fault(0, IDE, live, 0x05, false);
    let elsewhere = MappedRange { iova: 0x40_0000_0000, pages: 1 };
    let (done, finished) = mpsc::channel();
    let faults = {
        let (domain, done) = (Arc::clone(&domain), done.clone());
        std::thread::spawn(move || {
            while Instant::now() < until {
                assert_eq!(domain.take_fault(elsewhere), None);
            }
            done.send("take_fault").unwrap();
        })
    };
    let unmaps = {
        let domain = Arc::clone(&domain);
        std::thread::spawn(move || {
            while Instant::now() < until {
                let iova = domain.map(&[PhysAddr::new(0x20_0000)], IoDirection::In, u64::MAX).unwrap();
                domain.unmap(iova, 1).unwrap();
            }
            done.send("map and unmap").unwrap();
        })
    };
    for _ in 0..2 {
        let who = finished.recv_timeout(Duration::from_secs(30));
        assert!(who.is_ok(), "deadlock: unmap holds the domain and waits for the unit, take_fault the reverse");
    }
    faults.join().unwrap();
    unmaps.join().unwrap();
}

#[test]
fn a_map_that_runs_out_of_table_pages_on_a_stalled_unit_is_still_out_of_memory() {
    // As above, with the unit's IOTLB invalidation stalled: nothing was ever
    // present, so there is nothing to invalidate and nothing to quarantine.
    let stingy = crate::dma::watched_platform::WatchedPlatform::leak(4);
    let fake = Arc::new(FakeUnit::qemu());
    let unit = Unit::start(0, 0, Arc::clone(&fake), stingy).unwrap();
    let domain = unit.attach(IDE).unwrap();
    fake.stall(Stall::IotlbInvalidation);
    let failure = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoMemory, "{failure}");
    assert_eq!(domain.quarantined_pages(), 0);
    assert_eq!(domain.free_iova_pages(), (1 << 27) - 1, "the IOVAs went back");
}

#[test]
fn what_a_new_mapping_needs_follows_the_capabilities() {
    // No caching mode, no RWBF (QEMU's defaults): the unit is told nothing.
    // RWBF: the buffered table writes are flushed. Caching mode: the unit may
    // have cached the IOVA as not present, so it is invalidated (RWBF or not).
    let rwbf = 1 << 4;
    let caching_mode = 1 << 7;
    let cases = [
        (0, alloc::vec![]),
        (rwbf, alloc::vec![Event::WriteBufferFlush]),
        (caching_mode, alloc::vec![Event::IotlbInvalidation { granularity: 3, domain: 1, address: FRAME_SIZE }]),
        (
            caching_mode | rwbf,
            alloc::vec![
                Event::WriteBufferFlush,
                Event::IotlbInvalidation { granularity: 3, domain: 1, address: FRAME_SIZE }
            ],
        ),
    ];
    for (bits, expected) in cases {
        let (_, fake, unit) = start(QEMU_CAPABILITY | bits, QEMU_EXTENDED_CAPABILITY);
        let domain = unit.attach(IDE).unwrap();
        fake.clear_events();
        let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
        assert_eq!(iova, FRAME_SIZE);
        let events: alloc::vec::Vec<Event> =
            fake.events().into_iter().filter(|event| !matches!(event, Event::GlobalCommand(_))).collect();
        assert_eq!(events, expected, "CAP bits {bits:#x}");
    }
}

#[test]
fn iotlb_invalidations_drain_what_the_unit_can_drain() {
    // DR is bit 49 and DW bit 48 of the IOTLB invalidate register (IRO 0xf0:
    // it lies at 0xf8, its high half at 0xfc), asked for where CAP.DRD/DWD say
    // the unit can drain.
    let drains = 0b11 << 54;
    for (capability, expected) in
        [(QEMU_CAPABILITY, 0b11), (QEMU_CAPABILITY & !drains, 0), (QEMU_CAPABILITY & !(1 << 55), 0b01)]
    {
        let (_, fake, unit) = start(capability, QEMU_EXTENDED_CAPABILITY);
        let domain = unit.attach(IDE).unwrap();
        let iova = domain.map(&[PhysAddr::new(0x10_0000)], IoDirection::In, u64::MAX).unwrap();
        domain.unmap(iova, 1).unwrap();
        assert_eq!((fake.register(0xfc) >> 16) & 0b11, expected, "CAP {capability:#x}");
    }
}

#[test]
fn an_unmapped_range_waits_before_its_iovas_are_handed_out_again() {
    let (_, _, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    let page = [PhysAddr::new(0x1_0400_0000)];
    let first = domain.map(&page, IoDirection::In, u64::MAX).unwrap();
    domain.unmap(first, 1).unwrap();
    for _ in 0..REUSE_DELAY {
        let iova = domain.map(&page, IoDirection::In, u64::MAX).unwrap();
        assert_ne!(iova, first, "reused before {REUSE_DELAY} later unmaps");
        domain.unmap(iova, 1).unwrap();
    }
    assert_eq!(domain.map(&page, IoDirection::In, u64::MAX).unwrap(), first, "back in use after the delay");
}

#[test]
fn a_map_that_finds_only_waiting_iovas_takes_them_at_once() {
    let (_, _, unit) = start(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY);
    let domain = unit.attach(IDE).unwrap();
    // A 16-bit device: IOVA pages 1..16 (page 0 is never handed out).
    let pages: alloc::vec::Vec<PhysAddr> =
        (0..15).map(|page| PhysAddr::new(0x1_0400_0000 + page * FRAME_SIZE)).collect();
    let iova = domain.map(&pages, IoDirection::In, 0xffff).unwrap();
    domain.unmap(iova, 15).unwrap();
    assert_eq!(domain.map(&pages, IoDirection::In, 0xffff), Ok(iova), "a delay must not make a map fail");
}
