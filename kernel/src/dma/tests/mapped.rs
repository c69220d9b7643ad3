//! Commands behind a simulated IOMMU: the device sees IOVAs below its limit, a
//! high buffer is never bounced, scattered pages become one segment, complete
//! takes the device's access away, and a refused DMA fails the transfer.

use alloc::sync::Arc;

use super::*;
use crate::dma::simulated_mapper::{FAULT_WRITE_DENIED, Invalidation, SimulatedMapper};
use crate::dma::{Cause, FaultAccess, IoReturn, MappedPlatform, Mapping, Specification, SyncOptions};

/// Requester ID of the simulated device: 00:04.0.
const SOURCE: u16 = 0x0020;

/// A machine whose device sits behind a simulated IOMMU with `iova_pages` pages of IOVA space.
pub(super) fn mapped_machine(
    iova_pages: u64,
) -> (&'static SimulatedPlatform, &'static dyn DmaPlatform, Arc<SimulatedMapper>) {
    let memory = machine();
    let mapper = Arc::new(SimulatedMapper::new(SOURCE, iova_pages));
    let platform: &'static dyn DmaPlatform = MappedPlatform::leak(memory, mapper.clone());
    (memory, platform, mapper)
}

/// The device writes `data` through the segments; each address goes through the IOMMU.
pub(super) fn device_writes_through(
    memory: &SimulatedPlatform,
    mapper: &SimulatedMapper,
    segments: &[Segment],
    data: &[u8],
) -> Result<(), crate::dma::IommuFault> {
    let mut done = 0;
    for segment in segments {
        let mut address = segment.address.as_u64();
        let end = address + segment.length;
        while address < end {
            let run = (4096 - address % 4096).min(end - address) as usize;
            let physical = mapper.device_address(address, FaultAccess::Write)?;
            memory.device_write(physical, &data[done..done + run]);
            done += run;
            address += run as u64;
        }
    }
    Ok(())
}

#[test]
pub(super) fn a_32_bit_device_reads_high_memory_without_a_bounce() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    let buffer =
        IoMemoryDescriptor::allocate(platform, 3 * 4096, IoDirection::In, crate::memory::Constraints::NONE).unwrap();
    assert!(buffer.physical_segment(0).unwrap().0.as_u64() >= FOUR_GIB, "the buffer is above 4 GiB");
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    assert_eq!(command.bounced_bytes(), 0, "the IOMMU gives reach: nothing is bounced");
    assert_eq!(command.segments().len(), 1);
    let segment = command.segments()[0];
    assert!(segment.end() <= FOUR_GIB, "the device gets an IOVA it can drive");
    for page in 0..3 {
        let iova = segment.address.as_u64() + page * 4096;
        assert_eq!(mapper.translate_for_test(iova), Some(buffer.physical_segment(page * 4096).unwrap().0.as_u64()));
    }

    let data = pattern(3 * 4096, 91);
    device_writes_through(memory, &mapper, command.segments(), &data).unwrap();
    command.complete().unwrap();
    assert_eq!(contents(&buffer), data);
    assert_eq!(mapper.mapped_pages(), 0, "complete unmaps");
    let fault = mapper.device_address(segment.address.as_u64(), FaultAccess::Write).unwrap_err();
    assert_eq!(
        (fault.reason, fault.source),
        (FAULT_WRITE_DENIED, SOURCE),
        "after complete the device cannot reach the buffer"
    );
    assert_eq!(memory.accounting().stats().pages_in_use, 0);
}

#[test]
pub(super) fn scattered_pages_become_one_segment() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    // Pieces from alternating zones: no two are physical neighbours.
    let high = crate::memory::Constraints::NONE;
    let low = crate::memory::Constraints::below(x86_64::PhysAddr::new(FOUR_GIB));
    let pieces = [(4096, high), (4096, low), (4096, high), (4096, low)];
    let buffer = IoMemoryDescriptor::allocate_scattered(platform, &pieces, IoDirection::In).unwrap();
    let mut bare = IoDmaCommand::new(memory, Specification::UNLIMITED_64).unwrap();
    bare.set_memory_descriptor(buffer.clone(), false).unwrap();
    bare.prepare(0, 0).unwrap();
    let physical_segments = bare.segments().len();
    bare.complete().unwrap();

    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    assert_eq!(command.segments().len(), 1, "{physical_segments} physical segments");
    assert!(physical_segments > 1, "the test needs a scattered buffer");
    let data = pattern(4 * 4096, 3);
    device_writes_through(memory, &mapper, command.segments(), &data).unwrap();
    command.complete().unwrap();
    assert_eq!(contents(&buffer), data);
    assert_eq!(mapper.mapped_pages(), 0);
}

#[test]
pub(super) fn a_refused_dma_fails_the_transfer_and_leaves_memory_unchanged() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    let buffer =
        IoMemoryDescriptor::allocate(platform, 8192, IoDirection::In, crate::memory::Constraints::NONE).unwrap();
    let before = pattern(8192, 5);
    buffer.write_bytes(0, &before).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    // A device that was given the wrong address: one page past the mapping.
    let wrong = Segment { address: command.segments()[0].address + 0x10_0000, length: 4096 };
    let fault = device_writes_through(memory, &mapper, &[wrong], &[0xaa; 4096]).unwrap_err();
    assert_eq!(fault.access, FaultAccess::Write);
    let failure = command.complete_moved(8192, core::panic::Location::caller()).unwrap_err();
    assert_eq!(failure.code(), IoReturn::DmaError);
    assert_eq!(failure.cause(), Cause::IommuFault(fault), "the fault is named");
    assert_eq!(contents(&buffer), before, "nothing was copied back");
    assert!(!command.is_prepared());
    assert_eq!(mapper.mapped_pages(), 0);
}

#[test]
fn iova_space_exhaustion_is_a_clear_error_and_leaves_nothing_behind() {
    let (_, platform, mapper) = mapped_machine(4);
    let buffer =
        IoMemoryDescriptor::allocate(platform, 8 * 4096, IoDirection::Out, crate::memory::Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer, false).unwrap();
    let failure = command
        .prepare_for(0, 0, super::super::command::Completion::WholeRange, core::panic::Location::caller())
        .unwrap_err();
    assert_eq!(failure.code(), IoReturn::NoResources);
    assert!(matches!(failure.cause(), Cause::IovaSpaceExhausted { pages: 8, .. }), "{failure}");
    assert!(!command.is_prepared());
    assert_eq!((mapper.mapped_pages(), mapper.free_iova_pages()), (0, 3));
    assert_eq!(platform.accounting().stats().prepared_commands, 0);
}

#[test]
fn bypassed_and_pass_through_commands_use_physical_addresses() {
    let (_, platform, mapper) = mapped_machine(1 << 30);
    let buffer =
        IoMemoryDescriptor::allocate(platform, 4096, IoDirection::In, crate::memory::Constraints::NONE).unwrap();
    let physical = buffer.physical_segment(0).unwrap().0.as_u64();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    command.set_mapping(Mapping::Bypassed).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    assert_eq!(command.segments()[0].address.as_u64(), physical, "bypassed: the physical address");
    assert_eq!(command.set_mapping(Mapping::Mapped), Err(IoReturn::Busy));
    command.complete().unwrap();
    assert_eq!(mapper.mapped_pages(), 0, "nothing was mapped");

    command.set_mapping(Mapping::Mapped).unwrap();
    mapper.set_translating(false);
    command.prepare(0, 0).unwrap();
    assert_eq!(command.segments()[0].address.as_u64(), physical, "pass-through: the physical address");
    command.complete().unwrap();
}

#[test]
pub(super) fn force_double_buffer_still_bounces_and_remaps() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    let buffer =
        IoMemoryDescriptor::allocate(platform, 2 * 4096, IoDirection::In, crate::memory::Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(buffer.clone(), false).unwrap();
    command.prepare(0, 0).unwrap();
    let first = command.segments()[0];
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert_eq!(command.bounced_bytes(), 2 * 4096);
    assert_eq!(mapper.mapped_pages(), 2, "the old mapping went, the bounce buffer is mapped");
    let bounce = command.bounce_buffers()[0].address.as_u64();
    assert_eq!(mapper.translate_for_test(command.segments()[0].address.as_u64()), Some(bounce));
    let physical = buffer.physical_segment(0).unwrap().0.as_u64();
    assert_ne!(mapper.translate_for_test(first.address.as_u64()), Some(physical), "the buffer itself is unmapped");
    let data = pattern(2 * 4096, 17);
    device_writes_through(memory, &mapper, command.segments(), &data).unwrap();
    command.complete().unwrap();
    assert_eq!(contents(&buffer), data);
    assert_eq!(mapper.mapped_pages(), 0);
}

#[test]
fn an_unconfirmed_unmap_leaves_the_device_its_reach_and_the_transfer_leaked() {
    let (memory, platform, mapper) = mapped_machine(1 << 30);
    let mut buffer =
        crate::dma::DmaBuffer::allocate(platform, 4096, IoDirection::In, crate::memory::Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let options = crate::dma::TransferOptions::default();
    let transfer = crate::dma::DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &options).unwrap();
    let segments = transfer.segments().to_vec();
    mapper.set_invalidation(Invalidation::TimesOut);
    let failure = transfer.complete(4096).result.unwrap_err();
    assert!(matches!(failure.cause(), Cause::InvalidationFailed { pages: 1, .. }), "{failure}");
    assert_eq!(mapper.quarantined_pages(), 1);
    // A stale IOTLB entry: the device still writes the buffer's page.
    device_writes_through(memory, &mapper, &segments, &[0x5a; 4096]).unwrap();
    assert_eq!(buffer.to_vec(0, 1).unwrap_err().cause(), Cause::MemoryAbandoned);
}
