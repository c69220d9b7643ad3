//! The simulated non-coherent machine: the CPU sees memory through a cache the
//! device does not snoop, so bytes move between the two only where the DMA layer
//! cleans or invalidates. One test per cell of the rule table as dmakit maps it
//! (map = prepare, for_device = `synchronize(Out)`, for_cpu = `synchronize(In)`,
//! unmap = complete), each showing what a missing maintenance does, with memory
//! used in place: no bounce buffer in play. Then shared memory, which needs
//! none, and existing contract tests run again on this machine.

use x86_64::PhysAddr;

use super::*;
use crate::dma::bounce::Maintenance;
use crate::dma::watched_platform::WatchedPlatform;
use crate::dma::{
    CoherentMemory, DmaBuffer, DmaTransfer, FrameFill, IoReturn, Specification, SyncOptions, TransferOptions,
};

fn noncoherent() -> &'static SimulatedPlatform {
    SimulatedPlatform::leak_noncoherent(1024)
}

/// A command any page reaches in place: nothing is bounced.
fn in_place(platform: &'static dyn DmaPlatform) -> IoDmaCommand {
    IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap()
}

/// What RAM (the device's view) holds at `address`.
fn ram(platform: &SimulatedPlatform, address: PhysAddr, length: usize) -> Vec<u8> {
    let mut bytes = alloc::vec![0; length];
    platform.device_read(address.as_u64(), &mut bytes);
    bytes
}

/// The CPU writes `bytes` at `address`, through its cache.
fn cpu_write(platform: &SimulatedPlatform, address: PhysAddr, bytes: &[u8]) {
    // SAFETY: the tests pass frames they allocated and still own.
    unsafe { platform.write_physical(address, bytes) }
}

/// What the CPU reads at `address`, through its cache.
fn cpu_read(platform: &SimulatedPlatform, address: PhysAddr, length: usize) -> Vec<u8> {
    let mut bytes = alloc::vec![0; length];
    // SAFETY: as in `cpu_write`.
    unsafe { platform.read_physical(address, &mut bytes) };
    bytes
}

#[test]
fn the_cpu_sees_memory_through_a_cache_the_device_does_not_snoop() {
    let platform = noncoherent();
    assert_eq!(platform.coherence(), Coherence::NonCoherent);
    assert_eq!(SimulatedPlatform::leak(1).coherence(), Coherence::Coherent, "`leak` stays coherent");
    let frame = platform.allocate_frames(1, Constraints::NONE, FrameFill::Zeroed).unwrap();
    cpu_write(platform, frame, &[1; 16]);
    assert!(platform.is_cached(frame.as_u64()));
    assert_eq!(ram(platform, frame, 16), [0; 16], "the CPU's write sits in its cache");
    platform.clean_for_device(frame, 16);
    assert_eq!(ram(platform, frame, 16), [1; 16], "a clean writes it back");
    platform.device_write(frame.as_u64(), &[2; 16]);
    assert_eq!(cpu_read(platform, frame, 16), [1; 16], "the CPU reads its stale copy");
    cpu_write(platform, frame, &[3; 4]);
    platform.invalidate_for_cpu(frame, 16);
    assert_eq!(
        cpu_read(platform, frame, 16),
        [2; 16],
        "an invalidate reloads from RAM and drops the CPU's unwritten bytes"
    );
    cpu_write(platform, frame, &[4; 16]);
    platform.flush_for_device(frame, 16);
    assert_eq!(ram(platform, frame, 16), [4; 16], "flush_for_device writes back too (IOMMU tables)");
    platform.free_frames(frame, 1);
    assert!(!platform.is_cached(frame.as_u64()), "freed frames have no cached copy");
}

// Map (prepare): clean, whatever the direction.

#[test]
fn prepare_cleans_so_the_device_reads_what_the_cpu_wrote() {
    let platform = noncoherent();
    let buffer = low_buffer(platform, 8192, IoDirection::Out);
    let (address, _) = buffer.physical_segment(0).unwrap();
    assert_eq!(ram(platform, address, 8192), [0; 8192], "the pattern is still in the CPU's cache");
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer, true).unwrap();
    assert_eq!(command.bounced_bytes(), 0, "used in place");
    assert_eq!(device_reads(platform, &command), pattern(8192, 7), "prepare wrote the cache back");
    command.complete().unwrap();
}

#[test]
fn prepare_cleans_a_read_so_bytes_the_device_does_not_write_stay_the_callers() {
    // Linux invalidates at map for a device-to-memory transfer; dmakit cleans:
    // `complete()` reads the whole range from memory, so the half the device
    // does not write must hold the caller's bytes there, not what RAM held.
    let platform = noncoherent();
    let buffer = low_buffer(platform, 8192, IoDirection::In);
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let written = pattern(4096, 55);
    platform.device_write(command.segments()[0].address.as_u64(), &written);
    command.complete().unwrap();
    let after = contents(&buffer);
    assert_eq!(after[..4096], written[..], "the device's half");
    assert_eq!(after[4096..], pattern(8192, 7)[4096..], "the caller's half survived the read");
}

// Unmap (complete): invalidate for `In` and `InOut`, nothing for `Out`.

#[test]
fn complete_invalidates_so_the_cpu_reads_what_the_device_wrote() {
    let platform = noncoherent();
    for direction in [IoDirection::In, IoDirection::InOut] {
        let buffer = low_buffer(platform, 8192, direction);
        let mut command = in_place(platform);
        command.set_memory_descriptor(buffer.clone(), true).unwrap();
        let written = pattern(8192, 66);
        device_writes(platform, command.segments(), &written);
        command.complete().unwrap();
        assert_eq!(contents(&buffer), written, "{direction:?}: not the CPU's stale cache");
    }
}

#[test]
fn a_short_read_in_place_gives_the_device_bytes_and_keeps_the_rest() {
    let platform = noncoherent();
    let mut buffer = DmaBuffer::from_descriptor(low_buffer(platform, 3 * 4096, IoDirection::In)).unwrap();
    let mut command = in_place(platform);
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default()).unwrap();
    let written = pattern(5000, 99);
    platform.device_write(transfer.segments()[0].address.as_u64(), &written);
    assert_eq!(transfer.complete(5000).result.unwrap_err().code(), IoReturn::Underrun);
    let after = buffer.to_vec(0, 3 * 4096).unwrap();
    assert_eq!(after[..5000], written[..], "the moved bytes, invalidated");
    assert_eq!(after[5000..], pattern(3 * 4096, 7)[5000..], "the rest as the caller left it");
}

// for_cpu (`synchronize(In)`): invalidate the window.

#[test]
fn without_synchronize_in_the_cpu_reads_its_stale_cache() {
    let platform = noncoherent();
    // The debugging mode would refuse the look below; a release build does not.
    platform.accounting().set_debug(false);
    let buffer = low_buffer(platform, 4096, IoDirection::In);
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let written = pattern(4096, 21);
    device_writes(platform, command.segments(), &written);
    assert_eq!(contents(&buffer), pattern(4096, 7), "no synchronize: the old bytes, as on ARM");
    command.synchronize_range(SyncOptions::IN, 0, 1000).unwrap();
    let seen = contents(&buffer);
    assert_eq!(seen[..1000], written[..1000], "synchronize_range(In) invalidated its window");
    assert_eq!(seen[1000..], pattern(4096, 7)[1000..], "and only its window");
    command.synchronize(SyncOptions::IN).unwrap();
    assert_eq!(contents(&buffer), written, "synchronize(In) invalidated the rest");
    command.complete().unwrap();
}

// for_device (`synchronize(Out)`): clean the window.

#[test]
fn without_synchronize_out_the_device_reads_the_old_bytes() {
    let platform = noncoherent();
    platform.accounting().set_debug(false);
    let buffer = low_buffer(platform, 4096, IoDirection::Out);
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    buffer.write_bytes(0, &pattern(4096, 9)).unwrap();
    assert_eq!(device_reads(platform, &command), pattern(4096, 7), "no synchronize: the device reads the old bytes");
    command.synchronize_range(SyncOptions::OUT, 0, 100).unwrap();
    let seen = device_reads(platform, &command);
    assert_eq!(seen[..100], pattern(4096, 9)[..100], "synchronize_range(Out) cleaned its window");
    assert_eq!(seen[100..], pattern(4096, 7)[100..], "and only its window");
    command.synchronize(SyncOptions::OUT).unwrap();
    assert_eq!(device_reads(platform, &command), pattern(4096, 9), "synchronize(Out) cleaned the rest");
    command.complete().unwrap();
}

// ForceDoubleBuffer: the old memory's unmap, the new buffer's map.

#[test]
fn a_forced_double_buffer_is_cleaned_after_its_fill() {
    let platform = noncoherent();
    let buffer = low_buffer(platform, 4096, IoDirection::Out);
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer, true).unwrap();
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert!(command.is_wholly_double_buffered());
    assert_eq!(device_reads(platform, &command), pattern(4096, 7), "not the bounce frames' stale bytes");
    command.complete().unwrap();
}

#[test]
fn a_forced_double_buffer_keeps_what_the_device_wrote_in_place() {
    let platform = noncoherent();
    let buffer = low_buffer(platform, 4096, IoDirection::In);
    let mut command = in_place(platform);
    command.set_memory_descriptor(buffer.clone(), true).unwrap();
    let written = pattern(4096, 33);
    device_writes(platform, command.segments(), &written);
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER).unwrap();
    assert_eq!(device_reads(platform, &command), written, "the move read the old memory, not the cache");
    command.complete().unwrap();
    assert_eq!(contents(&buffer), written);
}

#[test]
fn a_bounced_transfer_works_on_the_noncoherent_machine() {
    let platform = noncoherent();
    let out = high_buffer(platform, 8192, IoDirection::Out);
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(out, true).unwrap();
    assert_eq!(command.bounced_bytes(), 8192);
    assert_eq!(device_reads(platform, &command), pattern(8192, 7), "the filled bounce buffer, cleaned");
    command.complete().unwrap();
    command.clear_memory_descriptor(false).unwrap();
    let read = high_buffer(platform, 8192, IoDirection::In);
    command.set_memory_descriptor(read.clone(), true).unwrap();
    let written = pattern(8192, 44);
    device_writes(platform, command.segments(), &written);
    command.complete().unwrap();
    assert_eq!(contents(&read), written, "the bounce buffer invalidated before the copy back");
}

#[test]
fn shared_memory_needs_no_maintenance() {
    let platform = noncoherent();
    let ring = CoherentMemory::allocate(platform, 4096, Specification::UNLIMITED_64).unwrap();
    let address = ring.device_address().as_u64();
    ring.write_bytes(0, &[1, 2, 3]).unwrap();
    assert_eq!(ram(platform, PhysAddr::new(address), 3), [1, 2, 3], "the device sees the CPU's write at once");
    platform.device_write(address + 16, &[9, 8, 7]);
    let mut seen = [0u8; 3];
    ring.read_bytes(16, &mut seen).unwrap();
    assert_eq!(seen, [9, 8, 7], "the CPU sees the device's write at once");
    assert!(!platform.is_cached(address), "mapped uncached");
    ring.release().unwrap();
}

/// A simulated machine that writes down every cache maintenance asked of it.
fn recorder(memory: &'static SimulatedPlatform) -> &'static WatchedPlatform {
    WatchedPlatform::over(memory, usize::MAX)
}

#[test]
fn the_rule_table_cell_by_cell() {
    use Maintenance::{Clean, Invalidate};
    let recorder = recorder(noncoherent());
    for direction in [IoDirection::Out, IoDirection::In, IoDirection::InOut] {
        let buffer = IoMemoryDescriptor::allocate(recorder, 8192, direction, Constraints::NONE).unwrap();
        let address = buffer.physical_segment(0).unwrap().0.as_u64();
        let whole = |which| alloc::vec![(which, address, 8192)];
        let mut command = in_place(recorder);
        command.set_memory_descriptor(buffer, false).unwrap();
        command.prepare(0, 0).unwrap();
        assert_eq!(recorder.take_maintained(), whole(Clean), "{direction:?}: map");
        command.synchronize(SyncOptions::OUT).unwrap();
        assert_eq!(recorder.take_maintained(), whole(Clean), "{direction:?}: for_device");
        command.synchronize(SyncOptions::IN).unwrap();
        assert_eq!(recorder.take_maintained(), whole(Invalidate), "{direction:?}: for_cpu");
        command.synchronize_range(SyncOptions::IN, 100, 200).unwrap();
        assert_eq!(
            recorder.take_maintained(),
            alloc::vec![(Invalidate, address + 100, 200)],
            "{direction:?}: a window"
        );
        command.synchronize_range(SyncOptions::OUT, 0, 0).unwrap();
        assert_eq!(recorder.take_maintained(), alloc::vec![], "{direction:?}: an empty window");
        command.complete().unwrap();
        let unmap = if direction == IoDirection::Out { alloc::vec![] } else { whole(Invalidate) };
        assert_eq!(recorder.take_maintained(), unmap, "{direction:?}: unmap");
    }
}

#[test]
fn each_piece_is_maintained_where_the_device_uses_it() {
    let recorder = recorder(noncoherent());
    let low =
        IoMemoryDescriptor::allocate(recorder, 4096, IoDirection::Out, Constraints::below(PhysAddr::new(FOUR_GIB)))
            .unwrap();
    let high = IoMemoryDescriptor::allocate(recorder, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    let ranges = [(low.physical_segment(0).unwrap().0, 4096), (high.physical_segment(0).unwrap().0, 4096)];
    // SAFETY: both ranges are buffers this test keeps alive.
    let both = unsafe { IoMemoryDescriptor::with_physical_ranges(recorder, &ranges, IoDirection::Out) }.unwrap();
    let mut command = IoDmaCommand::new(recorder, Specification::UNLIMITED_32).unwrap();
    command.set_memory_descriptor(both, true).unwrap();
    let bounce = command.bounce_buffers()[0].address.as_u64();
    let in_place = ranges[0].0.as_u64();
    assert_eq!(
        recorder.take_maintained(),
        alloc::vec![(Maintenance::Clean, in_place, 4096), (Maintenance::Clean, bounce, 4096)],
        "the low page in place, the high page's bounce buffer (never the high page itself)"
    );
    command.complete().unwrap();
}

#[test]
fn coherent_machines_and_shared_memory_get_no_maintenance() {
    let coherent = recorder(SimulatedPlatform::leak(64));
    let buffer = IoMemoryDescriptor::allocate(coherent, 4096, IoDirection::InOut, Constraints::NONE).unwrap();
    let mut command = in_place(coherent);
    command.set_memory_descriptor(buffer, true).unwrap();
    command.synchronize(SyncOptions::IN).unwrap();
    command.complete().unwrap();
    assert_eq!(coherent.take_maintained(), alloc::vec![], "x86: nothing to clean or invalidate");

    let recorder = recorder(noncoherent());
    let ring = CoherentMemory::allocate(recorder, 4096, Specification::UNLIMITED_64).unwrap();
    ring.release().unwrap();
    assert_eq!(recorder.take_maintained(), alloc::vec![], "memory mapped uncached");
}

/// Existing tests of the contract, run again on non-coherent machines: each is
/// a test here of the same name.
macro_rules! again_on_noncoherent_machines {
    ($($module:ident::$test:ident),+ $(,)?) => {
        mod again {
            $(
                #[test]
                fn $test() {
                    super::super::on_noncoherent_machines(super::super::$module::$test);
                }
            )+
        }
    };
}

again_on_noncoherent_machines!(
    contract::synchronize_with_nothing_bounced_does_nothing,
    contract::explicit_synchronize_copies_whatever_the_direction,
    contract::prepare_fills_a_fresh_bounce_buffer_even_for_in,
    contract::coherent_memory_is_never_bounced_and_always_cpu_accessible,
    contract::with_transfer_restricts_one_transfer_and_cleans_up,
    ownership::a_bounced_read_copies_back_exactly_the_bytes_the_device_moved,
    ownership::a_write_fills_its_bounce_buffer_and_a_forced_double_buffer_copies_the_whole_range,
    ownership::an_unfilled_read_refuses_synchronize_in_and_a_filled_one_allows_it,
    synchronize_range::a_ranged_synchronize_in_gives_the_cpu_exactly_the_bytes_the_device_reported,
    synchronize_range::a_receive_buffer_is_recycled_thousands_of_times_with_one_prepare,
    synchronize_range::a_ranged_synchronize_out_moves_only_its_window,
    force_double_buffer::force_double_buffer_in_out,
    force_double_buffer::force_double_buffer_works_under_nested_prepares,
    force_double_buffer::force_double_buffer_keeps_device_written_data,
    mapped::a_32_bit_device_reads_high_memory_without_a_bounce,
    mapped::scattered_pages_become_one_segment,
    mapped::a_refused_dma_fails_the_transfer_and_leaves_memory_unchanged,
    mapped::force_double_buffer_still_bounces_and_remaps,
    slots::a_slot_is_completed_once_and_its_command_goes_back,
    virtual_boundary::a_middle_piece_that_starts_inside_a_page_is_bounced,
    virtual_boundary::a_piece_that_ends_inside_a_page_before_another_is_bounced,
    virtual_boundary::a_32_bit_device_with_the_rule_bounces_below_4_gib,
    virtual_boundary::a_forced_double_buffer_keeps_the_rule_with_a_segment_limit,
);
