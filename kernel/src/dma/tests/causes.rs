//! Causes a caller can match: each refusal of the DMA contract's objects
//! (pool, buffer, command, transfer) comes with its typed cause, and each
//! cause still reads as the words the shell printed before it was typed.

use alloc::string::ToString;
use alloc::sync::Arc;

use super::*;
use crate::dma::{
    Cause, DmaBuffer, DmaTransfer, IoFailure, IoReturn, Specification, SyncOptions, TransferOptions, TransferSlots,
};

#[test]
fn transfer_slots_say_which_slot_and_why() {
    let platform = machine();
    let refused = TransferSlots::new(platform, Specification::UNLIMITED_32, 0).expect_err("no commands");
    assert_eq!(refused, IoFailure::new(IoReturn::BadArgument, Cause::EmptyCommandPool));
    let mut slots = TransferSlots::new(platform, Specification::UNLIMITED_32, 2).unwrap();
    let buffer = || DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let options = TransferOptions::default();
    let past = slots.prepare(5, buffer(), (0, 4096), IoDirection::In, &options).expect_err("past the depth");
    assert_eq!(past.failure, IoFailure::new(IoReturn::BadArgument, Cause::NoSuchSlot { slot: 5, depth: 2 }));
    slots.prepare(0, buffer(), (0, 4096), IoDirection::In, &options).unwrap();
    let taken = slots.prepare(0, buffer(), (0, 4096), IoDirection::In, &options).expect_err("slot 0 is busy");
    assert_eq!(taken.failure, IoFailure::new(IoReturn::Busy, Cause::SlotTaken { slot: 0 }));
    assert_eq!(taken.buffer.length(), 4096, "the refused buffer comes back");
    assert!(slots.complete(0, 4096).unwrap().result.is_ok());
    slots.prepare(0, buffer(), (0, 4096), IoDirection::In, &options).expect("the command is idle again");
    assert!(slots.complete(0, 4096).is_some());
}

#[test]
fn a_buffer_says_why_it_cannot_be_made() {
    let platform = machine();
    let empty = DmaBuffer::allocate(platform, 0, IoDirection::In, Constraints::NONE).unwrap_err();
    assert_eq!(empty, IoFailure::new(IoReturn::BadArgument, Cause::EmptyBuffer));
    let descriptor = IoMemoryDescriptor::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let other_handle = Arc::clone(&descriptor);
    assert_eq!(DmaBuffer::from_descriptor(descriptor).unwrap_err().cause(), Cause::DescriptorShared);
    drop(other_handle);
}

#[test]
fn a_command_and_a_transfer_say_which_state_refused() {
    let platform = machine();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let unprepared = crate::dma::experiment::device_writes(&command, &[1]).unwrap_err();
    assert_eq!(unprepared, IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
    let options = SyncOptions::IN | SyncOptions::OUT;
    let both = command.synchronize_for(options, core::panic::Location::caller()).unwrap_err();
    assert_eq!(both, IoFailure::new(IoReturn::BadArgument, Cause::InvalidSyncOptions));

    let buffer = DmaBuffer::allocate(platform, 8192, IoDirection::In, Constraints::NONE).unwrap();
    let transfer = DmaTransfer::prepare(&mut command, buffer, 0, 0, &TransferOptions::default()).unwrap();
    let mut one_byte = [0u8; 1];
    let failure = transfer.write_segments(0, &mut one_byte).unwrap_err();
    assert_eq!(failure.cause(), Cause::OutputTooSmall { bytes: 1, record: 8 });
    let mut records = [0u8; 64];
    let past = transfer.write_segments(8192, &mut records).unwrap_err();
    assert_eq!(past.cause(), Cause::OutOfRange { offset: 8192, length: 0, size: 8192 });
    transfer.complete(8192).result.unwrap();

    let mut bound = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let held = IoMemoryDescriptor::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    bound.set_memory_descriptor(held, false).unwrap();
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let refused = DmaTransfer::prepare(&mut bound, buffer, 0, 0, &TransferOptions::default()).err().unwrap();
    assert_eq!(refused.failure, IoFailure::new(IoReturn::Busy, Cause::CommandInUse));
}

#[test]
fn the_contract_and_block_states_read_as_before_with_their_numbers() {
    // The words the shell printed when these were free text (docs and the
    // QEMU shell test show some of them): kept, numbers added where known.
    let said = |code, cause| IoFailure::new(code, cause).to_string();
    assert_eq!(
        said(IoReturn::NotPermitted, Cause::DriverStoppedAlready),
        "kIOReturnNotPermitted (0xe00002e2): the driver is stopped already"
    );
    assert_eq!(
        said(IoReturn::Busy, Cause::DriverRunningAlready),
        "kIOReturnBusy (0xe00002d5): the driver is running already"
    );
    assert_eq!(Cause::ZeroBlocks.to_string(), "a request moves at least one block");
    assert_eq!(Cause::NotPrepared.to_string(), "the command is not prepared");
    assert_eq!(Cause::CommandInUse.to_string(), "the command is serving another transfer");
    assert_eq!(Cause::NothingToWaitFor.to_string(), "no request to wait for");
    assert_eq!(
        Cause::ByteCountOverflows { count: u64::MAX, block_size: 512 }.to_string(),
        "the request's byte count overflows (18446744073709551615 blocks of 512 bytes)"
    );
    assert_eq!(
        Cause::NoSuchSlot { slot: 4, depth: 2 }.to_string(),
        "no such slot in the command pool (slot 4, 2 slots)"
    );
    assert_eq!(
        Cause::NestedPrepareMismatch { offset: 512, length: 1024 }.to_string(),
        "a nested prepare must name the range already prepared (bytes 512..1536)"
    );
    assert_eq!(
        Cause::PageNotMapped { offset: 8192 }.to_string(),
        "a page of the memory descriptor is not mapped (byte 8192)"
    );
    assert_eq!(
        Cause::BounceRequestRefused(crate::memory::MemoryError::BadRequest).to_string(),
        alloc::format!(
            "the frame allocator refused the bounce buffer request: {}",
            crate::memory::MemoryError::BadRequest
        )
    );
    assert_eq!(
        Cause::RegistersNotMapped { physical: 0xfed9_0000, size: 0x1000 }.to_string(),
        "registers at 0xfed90000+0x1000 could not be mapped"
    );
    assert_eq!(
        Cause::Iommu(crate::dma::IommuCause::DomainPassesThrough).to_string(),
        "the domain passes DMA through untranslated: nothing is mapped"
    );
}

#[test]
fn the_device_families_say_their_numbers() {
    use crate::dma::{AhciCause, VirtioCause};
    assert_eq!(
        Cause::Virtio(VirtioCause::QueueSizeInvalid { size: 300, max: 256 }).to_string(),
        "a split virtqueue's size is a power of two no larger than the device's (asked 300, the device takes 256)"
    );
    assert_eq!(
        Cause::Virtio(VirtioCause::LegacyQueueSize { size: 64, device: 256 }).to_string(),
        "a legacy virtio queue has the size the device says (256, not 64)"
    );
    assert_eq!(
        Cause::Virtio(VirtioCause::ChainOutsideTable { head: 6, length: 3, size: 8 }).to_string(),
        "a chain must be non-empty and lie inside the descriptor table (3 from entry 6, 8 entries)"
    );
    assert_eq!(Cause::Virtio(VirtioCause::NotStopped).to_string(), "the virtio device was not stopped");
    assert_eq!(Cause::Ahci(AhciCause::PortRunning).to_string(), "the port is running already");
    assert_eq!(Cause::SlotNotFree { slot: 3 }.to_string(), "no such free slot (slot 3): past the depth or in use");
    // Ports someone else has are not a controller in the wrong mode.
    assert_eq!(
        Cause::Pci(crate::dma::PciCause::LegacyPortsClaimed { channel: 1 }).to_string(),
        "PCI: IDE channel 1's fixed ports were claimed by another driver (or the kernel)"
    );
}

/// A read of 64 KiB for a device that takes 6 segments, none crossing a 4 KiB
/// line (`dma read vda 0 128 --boundary 4K`): 16 segments wherever the memory
/// lies, so it can never start. That is the cause, with a bounce budget of any
/// size: the check for "can it ever fit" comes before "is there bounce memory".
#[test]
fn a_transfer_that_can_never_fit_the_device_says_so_whatever_the_bounce_budget() {
    let lined = Specification { max_segments: 6, boundary: 4096, ..Specification::UNLIMITED_64 };
    let narrow_lined = Specification { num_address_bits: 32, ..lined };
    let never = IoFailure::new(IoReturn::NoResources, Cause::TooManySegments { needed: 16, allowed: 6 });
    for budget in [1024, 8, 0] {
        let platform = SimulatedPlatform::leak(budget);
        let below_4_gib = Constraints::below(PhysAddr::new(FOUR_GIB));
        // Memory the device reaches (the plan bounces nothing), and memory
        // above 4 GiB for a 32-bit device (the plan bounces all of it).
        for (specification, placement) in [(lined, below_4_gib), (narrow_lined, Constraints::NONE)] {
            let mut buffer = DmaBuffer::allocate(platform, 64 * 1024, IoDirection::In, placement).unwrap();
            let mut command = IoDmaCommand::new(platform, specification).unwrap();
            let options = TransferOptions::default();
            let failure = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &options).unwrap_err().failure;
            assert_eq!(failure, never, "budget {budget} pages, {placement:?}: {failure}");
            assert_eq!(platform.accounting().stats().pages_in_use, 0, "nothing kept");
        }
    }
}
