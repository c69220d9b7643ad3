//! Faults behind a VT-d unit (the fake register block, two fault records) go to
//! the transfer that caused them and to no other: not to a later transfer that
//! got the same IOVAs, and a transfer whose fault may have been lost (the
//! unit's overflow, or the pending queue full) does not end `Ok`.

use alloc::sync::Arc;
use core::panic::Location;

use super::*;
use crate::dma::{Cause, FaultLoss, IoFailure, IoMapper, IoReturn, MappedPlatform, Specification};
use crate::iommu::fake::{FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY};
use crate::iommu::{Unit, VtdDomain};
use crate::memory::Constraints;

/// Requester ID of the device: 00:04.0.
const SOURCE: u16 = 0x0020;
/// Another device on the same unit: 00:01.0.
const OTHER: u16 = 0x0008;
/// Fault reason 5: a write the page table does not allow.
const WRITE_DENIED: u8 = 0x05;

struct Machine {
    memory: &'static SimulatedPlatform,
    platform: &'static dyn DmaPlatform,
    fake: Arc<FakeUnit>,
    unit: Arc<Unit<Arc<FakeUnit>>>,
    domain: Arc<VtdDomain<Arc<FakeUnit>>>,
}

/// A machine whose device sits behind a VT-d unit like QEMU's, with two fault records.
fn vtd_machine() -> Machine {
    let memory = machine();
    let fake = Arc::new(FakeUnit::new(QEMU_CAPABILITY | (1 << 40), QEMU_EXTENDED_CAPABILITY));
    let unit = Unit::start(0, 0xfed9_0000, Arc::clone(&fake), memory).unwrap();
    let domain = unit.attach(SOURCE).unwrap();
    let platform: &'static dyn DmaPlatform = MappedPlatform::leak(memory, domain.clone());
    Machine { memory, platform, fake, unit, domain }
}

/// A command prepared on a fresh one-page `In` buffer.
fn prepared(platform: &'static dyn DmaPlatform) -> IoDmaCommand {
    let buffer = IoMemoryDescriptor::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_memory_descriptor(buffer, true).unwrap();
    command
}

/// Completes `command` with the whole page moved.
#[track_caller]
fn complete(command: &mut IoDmaCommand) -> Result<(), IoFailure> {
    command.complete_moved(4096, Location::caller())
}

#[test]
fn a_second_fault_of_a_transfer_is_not_blamed_on_the_next_one_at_its_iova() {
    let machine = vtd_machine();
    let mut first = prepared(machine.platform);
    let iova = first.mapped_range().unwrap().iova;
    // The device's DMA through `first` fails twice.
    machine.fake.plant_fault(0, SOURCE, iova, WRITE_DENIED, false);
    machine.fake.plant_fault(1, SOURCE, iova + 0x800, WRITE_DENIED, false);
    let failure = complete(&mut first).expect_err("the transfer's DMA faulted");
    assert!(matches!(failure.cause(), Cause::IommuFault(_)), "{failure:?}");
    // The next transfer's DMA is fine, wherever its IOVAs are.
    let mut second = prepared(machine.platform);
    assert_eq!(complete(&mut second), Ok(()), "the earlier transfer's fault is not this one's");
}

#[test]
fn a_fault_recorded_late_is_not_blamed_on_the_next_transfer() {
    let machine = vtd_machine();
    let mut first = prepared(machine.platform);
    let iova = first.mapped_range().unwrap().iova;
    assert_eq!(complete(&mut first), Ok(()));
    // The unit records a fault of the finished transfer only now.
    machine.fake.plant_fault(0, SOURCE, iova, WRITE_DENIED, false);
    let mut second = prepared(machine.platform);
    assert_ne!(second.mapped_range().unwrap().iova, iova, "an IOVA just unmapped waits before it is reused");
    assert_eq!(complete(&mut second), Ok(()), "the finished transfer's fault is not this one's");
    assert_eq!(machine.domain.free_iova_pages(), (1 << 27) - 1, "waiting IOVAs count as not in use");
}

#[test]
fn a_fault_lost_to_the_units_overflow_fails_the_transfers_in_flight() {
    let machine = vtd_machine();
    let mut command = prepared(machine.platform);
    let iova = command.mapped_range().unwrap().iova;
    // A third device on the unit, with a transfer in flight too.
    let third = machine.unit.attach(0x0010).unwrap();
    let third_platform: &'static dyn DmaPlatform = MappedPlatform::leak(machine.memory, third);
    let mut bystander = prepared(third_platform);
    // Both records hold another device's faults: the unit cannot record this
    // transfer's, and says only that it overflowed.
    machine.fake.plant_fault(0, OTHER, 0x9000, WRITE_DENIED, false);
    machine.fake.plant_fault(1, OTHER, 0xa000, WRITE_DENIED, false);
    machine.fake.plant_fault(0, SOURCE, iova, WRITE_DENIED, false);
    let failure = complete(&mut command).expect_err("a fault of this transfer may have been lost");
    assert_eq!(failure.code(), IoReturn::DmaError);
    assert_eq!(failure.cause(), Cause::IommuFaultsLost(FaultLoss::UnitOverflow));
    // The overflow says nothing of whose faults were lost: every transfer in
    // flight on the unit fails so.
    let failure = complete(&mut bystander).expect_err("any device's fault may have been lost");
    assert_eq!(failure.cause(), Cause::IommuFaultsLost(FaultLoss::UnitOverflow));
    // A transfer started after the loss was seen has nothing to fear.
    let mut later = prepared(machine.platform);
    assert_eq!(complete(&mut later), Ok(()));
}

#[test]
fn a_fault_dropped_from_the_full_pending_queue_fails_its_transfer() {
    let machine = vtd_machine();
    let mut command = prepared(machine.platform);
    let iova = command.mapped_range().unwrap().iova;
    machine.fake.plant_fault(0, SOURCE, iova, WRITE_DENIED, false);
    let _ = machine.unit.recent_faults();
    // Another device, whose faults nobody takes, fills the pending queue: the
    // oldest, this transfer's, is dropped.
    for index in 0..crate::iommu::unit::FAULT_LOG_LENGTH as u64 {
        machine.fake.plant_fault(0, OTHER, 0x10_0000 + index * 0x1000, WRITE_DENIED, false);
        let _ = machine.unit.recent_faults();
    }
    let failure = complete(&mut command).expect_err("this transfer's fault was dropped");
    assert_eq!(failure.code(), IoReturn::DmaError);
    assert_eq!(failure.cause(), Cause::IommuFaultsLost(FaultLoss::PendingQueueFull));
}

#[test]
fn an_abandoned_transfer_keeps_its_iovas_and_its_pages_for_ever() {
    let machine = vtd_machine();
    let buffer = crate::dma::DmaBuffer::allocate(machine.platform, 8192, IoDirection::In, Constraints::NONE).unwrap();
    let descriptor = buffer.descriptor().physical_segment(0).unwrap().0;
    let mut command = IoDmaCommand::new(machine.platform, Specification::UNLIMITED_64).unwrap();
    let options = crate::dma::TransferOptions::default();
    let transfer = crate::dma::DmaTransfer::prepare(&mut command, buffer, 0, 0, &options).unwrap();
    let abandoned = transfer.command().mapped_range().unwrap();
    let _ = transfer.segments();
    let frames = machine.memory.free_frames_count();
    let _ = transfer.abandon();
    assert_eq!(machine.domain.translate(abandoned.iova), Some(descriptor), "still mapped: the device may still write");
    assert_eq!(machine.memory.free_frames_count(), frames, "no page freed");
    // However many transfers come after, none is given those IOVAs.
    for _ in 0..3 * crate::iommu::domain::REUSE_DELAY {
        let mut later = prepared(machine.platform);
        let range = later.mapped_range().unwrap();
        let overlaps = range.iova < abandoned.iova + abandoned.pages as u64 * 4096
            && abandoned.iova < range.iova + range.pages as u64 * 4096;
        assert!(!overlaps, "{range:?} reuses the abandoned {abandoned:?}");
        assert_eq!(complete(&mut later), Ok(()));
    }
    assert_eq!(machine.domain.translate(abandoned.iova), Some(descriptor));
}

#[test]
fn a_fault_through_the_mapping_a_forced_double_buffer_left_is_still_the_transfers() {
    let machine = vtd_machine();
    let mut command = prepared(machine.platform);
    let old = command.mapped_range().unwrap();
    // The device faults through the first mapping, then the transfer moves.
    machine.fake.plant_fault(0, SOURCE, old.iova, WRITE_DENIED, false);
    command.synchronize(crate::dma::SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert_ne!(command.mapped_range(), Some(old), "moved to a new mapping");
    let failure = complete(&mut command).expect_err("the fault is this transfer's, whichever mapping it came through");
    assert!(matches!(failure.cause(), Cause::IommuFault(fault) if fault.address == old.iova), "{failure:?}");
}
