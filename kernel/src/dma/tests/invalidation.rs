//! Commands behind a VT-d unit (the fake register block) whose IOTLB
//! invalidation does not finish: complete cannot know that the device lost its
//! access, so nothing the device could still reach is freed or handed out
//! again, and the completion says why with a cause the caller can match.

use alloc::sync::Arc;
use core::panic::Location;

use super::*;
use crate::dma::{
    Cause, DmaBuffer, DmaTransfer, IoReturn, MappedPlatform, Misuse, Specification, SyncOptions, TransferOptions,
};
use crate::iommu::fake::{FakeUnit, QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY, Stall};
use crate::iommu::{Unit, VtdDomain};
use crate::memory::Constraints;

/// Requester ID of the device: 00:04.0.
const SOURCE: u16 = 0x0020;

struct Machine {
    memory: &'static SimulatedPlatform,
    platform: &'static dyn DmaPlatform,
    fake: Arc<FakeUnit>,
    domain: Arc<VtdDomain<Arc<FakeUnit>>>,
}

/// A machine whose device sits behind a VT-d unit like QEMU's.
fn vtd_machine() -> Machine {
    let memory = machine();
    let fake = Arc::new(FakeUnit::new(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY));
    let unit = Unit::start(0, 0xfed9_0000, Arc::clone(&fake), memory).unwrap();
    let domain = unit.attach(SOURCE).unwrap();
    let platform: &'static dyn DmaPlatform = MappedPlatform::leak(memory, domain.clone());
    Machine { memory, platform, fake, domain }
}

#[test]
fn a_timed_out_invalidation_leaks_the_bounce_pages_and_never_reuses_the_iovas() {
    let machine = vtd_machine();
    let buffer = IoMemoryDescriptor::allocate(machine.platform, 8192, IoDirection::In, Constraints::NONE).unwrap();
    let before = contents(&buffer);
    let mut command = IoDmaCommand::new(machine.platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    // Bounce pages behind the IOMMU: the buffer's own pages are unmapped again.
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    let range = command.mapped_range().unwrap();
    let bounce = command.bounce_buffers()[0];
    let stats = machine.memory.accounting().stats();
    let frames = machine.memory.free_frames_count();
    machine.fake.stall(Stall::IotlbInvalidation);

    let failure = command
        .complete_moved(8192, Location::caller())
        .expect_err("the IOMMU never confirmed the unmap: complete must not report success");
    assert_eq!(failure.cause(), Cause::InvalidationFailed { iova: range.iova, pages: range.pages });
    assert_eq!(failure.code(), IoReturn::Timeout);
    assert!(!command.is_prepared());
    let after = machine.memory.accounting().stats();
    assert_eq!(after.pages_in_use, stats.pages_in_use, "the bounce pages stay allocated");
    assert_eq!((after.leaked_pages, after.leaked_transfers), (bounce.pages, 1), "and are counted as leaked");
    assert_eq!(machine.memory.free_frames_count(), frames, "no frame went back to the allocator");
    assert!(machine.memory.is_allocated(bounce.address.as_u64()));
    let report = machine.memory.accounting().misuse_log().last().copied().unwrap();
    assert_eq!((report.misuse, report.command), (Misuse::InvalidationFailed, Some(command.id())));
    // The buffer's pages were not mapped any more: it is the caller's again,
    // untouched (nothing came back from bounce memory the device may still write).
    assert!(!buffer.is_abandoned());
    assert_eq!(contents(&buffer), before);

    // The unit answers again: the next transfer gets other IOVAs.
    machine.fake.recover();
    assert_eq!(machine.domain.quarantined_pages(), range.pages as u64);
    let free = machine.domain.free_iova_pages();
    let next = IoMemoryDescriptor::allocate(machine.platform, 8192, IoDirection::In, Constraints::NONE).unwrap();
    command.set_memory_descriptor(next, false).unwrap();
    command.prepare(0, 0).unwrap();
    let again = command.mapped_range().unwrap();
    assert!(
        again.iova >= range.iova + range.pages as u64 * 4096 || again.iova + again.pages as u64 * 4096 <= range.iova,
        "IOVA {:#x} was handed out again behind a stale IOTLB entry",
        range.iova
    );
    command.complete().unwrap();
    assert_eq!(machine.domain.free_iova_pages(), free, "only the quarantined IOVAs stay taken");
}

#[test]
fn a_timed_out_invalidation_abandons_a_buffer_whose_pages_were_mapped() {
    let machine = vtd_machine();
    let mut buffer = DmaBuffer::allocate(machine.platform, 3 * 4096, IoDirection::In, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(machine.platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    assert!(transfer.command().bounce_buffers().is_empty(), "the IOMMU maps the buffer itself");
    let range = transfer.command().mapped_range().unwrap();
    machine.fake.stall(Stall::IotlbInvalidation);

    let completed = transfer.complete(3 * 4096);
    let failure = completed.result.expect_err("the IOMMU never confirmed the unmap: the transfer failed");
    assert_eq!(failure.cause(), Cause::InvalidationFailed { iova: range.iova, pages: range.pages });
    let stats = machine.memory.accounting().stats();
    assert_eq!((stats.leaked_transfers, stats.prepared_commands), (1, 0));
    // The device may still write the buffer: the CPU may not read it, and its
    // frames are never freed, even when the buffer is dropped.
    let refused = buffer.to_vec(0, 16).unwrap_err();
    assert_eq!(refused.cause(), Cause::MemoryAbandoned);
    assert!(buffer.descriptor().is_abandoned() && buffer.descriptor().prepare_count() > 0);
    let frames = machine.memory.free_frames_count();
    drop(buffer);
    assert_eq!(machine.memory.free_frames_count(), frames, "the buffer's frames stay allocated");
    machine.fake.recover();
    assert_eq!(machine.domain.quarantined_pages(), range.pages as u64);
    assert_eq!(machine.domain.free_iova_pages(), (1 << 27) - 1 - range.pages as u64, "the IOVAs stay taken");
}

#[test]
fn a_half_made_mapping_undone_without_confirmation_fails_the_prepare_and_leaks_its_memory() {
    let machine = vtd_machine();
    let buffer = IoMemoryDescriptor::allocate(machine.platform, 8192, IoDirection::Out, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(machine.platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    // The experiment unmaps the pages as soon as they are mapped; that
    // invalidation is not confirmed, so the map fails as an unmap would.
    machine.domain.set_experiment(crate::iommu::Experiment::UnmapBeforeTheDevice);
    machine.fake.stall(Stall::IotlbInvalidation);
    let failure =
        command.prepare_for(0, 0, crate::dma::command::Completion::WholeRange, Location::caller()).unwrap_err();
    assert!(matches!(failure.cause(), Cause::InvalidationFailed { pages: 2, .. }), "{failure}");
    assert!(!command.is_prepared());
    assert!(buffer.is_abandoned() && buffer.prepare_count() > 0, "the buffer's pages were mapped: never reused");
    assert_eq!(machine.memory.accounting().stats().leaked_transfers, 1);
    machine.fake.recover();
    assert_eq!(machine.domain.quarantined_pages(), 2);
}

#[test]
fn a_forced_move_whose_old_mapping_is_not_forgotten_keeps_the_old_memory() {
    let machine = vtd_machine();
    let buffer = IoMemoryDescriptor::allocate(machine.platform, 8192, IoDirection::In, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(machine.platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    let old = command.mapped_range().unwrap();
    machine.fake.stall(Stall::IotlbInvalidation);
    assert_eq!(command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER), Err(IoReturn::Timeout));
    assert!(command.is_wholly_double_buffered(), "the move itself happened");
    assert!(buffer.is_abandoned(), "the buffer's own pages were mapped and may still be reached");
    machine.fake.recover();
    assert_eq!(machine.domain.quarantined_pages(), old.pages as u64);
    command.complete().unwrap();
    assert!(buffer.prepare_count() > 0, "the abandoned buffer stays prepared");
    assert_eq!(machine.memory.accounting().stats().pages_in_use, 0, "the new bounce buffer went back");
}

#[test]
fn shared_memory_released_without_a_confirmed_unmap_says_so() {
    let machine = vtd_machine();
    let shared = crate::dma::CoherentMemory::allocate(machine.platform, 4096, Specification::UNLIMITED_32).unwrap();
    let iova = shared.device_address().as_u64();
    machine.fake.stall(Stall::IotlbInvalidation);
    // The command's own failure comes up whole: not "the shared memory was
    // not prepared", but the unmap the IOMMU never confirmed.
    let failure = shared.release().expect_err("the IOMMU never confirmed the unmap");
    assert_eq!(failure.cause(), Cause::InvalidationFailed { iova, pages: 1 }, "{failure}");
    assert_eq!(failure.code(), IoReturn::Timeout);
    machine.fake.recover();
    assert_eq!(machine.domain.quarantined_pages(), 1);
}
