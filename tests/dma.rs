//! Test kernel: the DMA layer on the real machine (-m 6G), with a "device" that
//! reads and writes physical memory only through the segments it is given.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{
    DmaBuffer, DmaPlatform, DmaTransfer, IoDirection, IoDmaCommand, IoMemoryDescriptor, IoReturn, Segment,
    Specification, SyncOptions, TransferOptions,
};
use dmakit::memory::{Constraints, paging, physical};
use x86_64::structures::paging::{Page, PageTableFlags, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

dmakit::test_kernel!(
    a_buffer_above_4_gib_bounces_for_a_32_bit_device,
    the_same_buffer_is_not_bounced_for_a_64_bit_device,
    a_heap_buffer_spanning_pages_works,
    physically_scattered_pages_become_separate_segments,
    forced_double_buffering_moves_to_one_page_aligned_buffer,
    a_bounced_transfer_returns_all_it_took_and_copies_only_what_the_device_wrote,
);

const FOUR_GIB: u64 = 1 << 32;

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

/// What a bus-master device does: read or write memory at the segments' addresses.
fn device_write(segments: &[Segment], data: &[u8]) {
    let mut done = 0;
    for segment in segments {
        let target = physical::to_virtual(PhysAddr::new(segment.address.as_u64())).as_mut_ptr::<u8>();
        let length = segment.length as usize;
        // SAFETY: the segment belongs to a prepared command of this test; the test
        // plays the device, the only writer while the command is prepared.
        unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), target, length) };
        done += length;
    }
    assert_eq!(done, data.len());
}

fn device_read(segments: &[Segment]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for segment in segments {
        let source = physical::to_virtual(PhysAddr::new(segment.address.as_u64())).as_ptr::<u8>();
        // SAFETY: as in device_write; reading the prepared memory.
        bytes.extend_from_slice(unsafe { core::slice::from_raw_parts(source, segment.length as usize) });
    }
    bytes
}

fn high_buffer(length: u64, direction: IoDirection) -> alloc::sync::Arc<IoMemoryDescriptor> {
    let buffer = IoMemoryDescriptor::allocate(platform(), length, direction, Constraints::NONE).expect("buffer");
    let (address, _) = buffer.physical_segment(0).expect("mapped");
    assert!(address.as_u64() >= FOUR_GIB, "the buffer lies above 4 GiB: {:#x}", address.as_u64());
    buffer
}

fn a_buffer_above_4_gib_bounces_for_a_32_bit_device() {
    let buffer = high_buffer(64 * 1024, IoDirection::InOut);
    let original = pattern(64 * 1024, 1);
    buffer.write_bytes(0, &original).expect("write");
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).expect("command");
    command.set_memory_descriptor(buffer.clone(), true).expect("prepare");
    assert_eq!(command.bounced_bytes(), 64 * 1024);
    for segment in command.segments() {
        assert!(segment.end() <= FOUR_GIB, "segment {segment:?} is reachable by a 32-bit device");
    }
    assert_eq!(device_read(command.segments()), original, "the device reads the right bytes");
    let from_device = pattern(64 * 1024, 2);
    device_write(command.segments(), &from_device);
    command.complete().expect("complete");
    let mut back = vec![0; 64 * 1024];
    buffer.read_bytes(0, &mut back).expect("read");
    assert_eq!(back, from_device, "byte-exact round trip");
}

fn the_same_buffer_is_not_bounced_for_a_64_bit_device() {
    let buffer = high_buffer(64 * 1024, IoDirection::In);
    let before = platform().accounting().stats();
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_64).expect("command");
    command.set_memory_descriptor(buffer.clone(), true).expect("prepare");
    assert_eq!(command.bounced_bytes(), 0);
    assert_eq!(command.segments()[0].address.as_u64(), buffer.physical_segment(0).expect("mapped").0.as_u64());
    let from_device = pattern(64 * 1024, 3);
    device_write(command.segments(), &from_device);
    command.complete().expect("complete");
    let after = platform().accounting().stats();
    assert_eq!(after.bytes_to_bounce, before.bytes_to_bounce, "zero copies");
    assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce);
    let mut back = vec![0; 64 * 1024];
    buffer.read_bytes(0, &mut back).expect("read");
    assert_eq!(back, from_device);
}

fn a_heap_buffer_spanning_pages_works() {
    let heap_buffer = pattern(3 * 4096 + 100, 4).into_boxed_slice();
    let descriptor = IoMemoryDescriptor::from_boxed(platform(), heap_buffer, IoDirection::In).expect("descriptor");
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).expect("command");
    command.set_memory_descriptor(descriptor.clone(), true).expect("prepare");
    let from_device = pattern(3 * 4096 + 100, 5);
    device_write(command.segments(), &from_device);
    command.complete().expect("complete");
    let mut back = vec![0; from_device.len()];
    descriptor.read_bytes(0, &mut back).expect("read");
    assert_eq!(back, from_device);
}

fn physically_scattered_pages_become_separate_segments() {
    // Two virtual pages in a row, backed by frames that are not neighbours.
    let first = physical::allocate_frame().expect("frame");
    let gap = physical::allocate_frame().expect("frame");
    let second = physical::allocate_frame().expect("frame");
    assert_ne!(second.start_address(), first.start_address() + 4096u64);
    let base = VirtAddr::new(0xffff_d100_0000_0000);
    let page = Page::<Size4KiB>::containing_address(base);
    // SAFETY: fresh frames at an unused kernel address.
    unsafe {
        paging::map(page, first, PageTableFlags::WRITABLE).expect("map");
        paging::map(page + 1, second, PageTableFlags::WRITABLE).expect("map");
    }
    // SAFETY: the two pages were just mapped for this test alone and stay mapped
    // until after the descriptor is gone.
    let descriptor =
        unsafe { IoMemoryDescriptor::with_virtual_ranges(platform(), &[(base + 1000u64, 6000)], IoDirection::In) }
            .expect("descriptor");
    assert_eq!(descriptor.physical_segment(0).expect("segment"), (first.start_address() + 1000u64, 3096));
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_64).expect("command");
    command.set_memory_descriptor(descriptor.clone(), true).expect("prepare");
    assert_eq!(command.segments().len(), 2, "one segment per physical run");
    let from_device = pattern(6000, 6);
    device_write(command.segments(), &from_device);
    command.complete().expect("complete");
    let mut back = vec![0; 6000];
    descriptor.read_bytes(0, &mut back).expect("read");
    assert_eq!(back, from_device);
    drop(command);
    drop(descriptor);
    for (index, frame) in [first, second].into_iter().enumerate() {
        assert_eq!(paging::unmap(page + index as u64), Ok(frame));
        physical::free_frame(frame).expect("free");
    }
    physical::free_frame(gap).expect("free");
}

fn forced_double_buffering_moves_to_one_page_aligned_buffer() {
    let buffer = high_buffer(5 * 4096, IoDirection::In);
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_64).expect("command");
    command.set_memory_descriptor(buffer.clone(), true).expect("prepare");
    command.synchronize(SyncOptions::FORCE_DOUBLE_BUFFER | SyncOptions::OUT).expect("force");
    let bounce = command.bounce_buffers()[0];
    assert_eq!(command.bounce_buffers().len(), 1);
    assert_eq!(bounce.address.as_u64() % 4096, 0);
    assert_eq!(command.segments()[0].address.as_u64(), bounce.address.as_u64());
    let from_device = pattern(5 * 4096, 7);
    device_write(command.segments(), &from_device);
    command.complete().expect("complete");
    let mut back = vec![0; 5 * 4096];
    buffer.read_bytes(0, &mut back).expect("read");
    assert_eq!(back, from_device);
}

fn a_bounced_transfer_returns_all_it_took_and_copies_only_what_the_device_wrote() {
    let accounting = platform().accounting();
    let before = accounting.stats();
    let log_before = accounting.misuse_log().len();
    let mut buffer = DmaBuffer::from_descriptor(high_buffer(3 * 4096, IoDirection::In)).expect("buffer");
    let original = pattern(3 * 4096, 8);
    buffer.write_bytes(0, &original).expect("write");
    let mut command = IoDmaCommand::new(platform(), Specification::UNLIMITED_32).expect("command");
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .expect("prepare");
    let during = accounting.stats();
    assert_eq!(during.pages_in_use - before.pages_in_use, 3, "three bounce pages below 4 GiB");
    assert_eq!(during.bytes_to_bounce, before.bytes_to_bounce, "a read is not filled first");
    let segments = transfer.segments().to_vec();
    assert!(segments.iter().all(|segment| segment.end() <= FOUR_GIB), "{segments:?}");
    // The device writes 5000 bytes and stops short.
    let from_device = pattern(5000, 9);
    let mut written = 0;
    for segment in &segments {
        let length = (segment.length as usize).min(from_device.len() - written);
        device_write(
            &[Segment { address: segment.address, length: length as u64 }],
            &from_device[written..written + length],
        );
        written += length;
        if written == from_device.len() {
            break;
        }
    }
    let completed = transfer.complete(5000);
    assert_eq!(completed.result.map_err(|failure| failure.code()), Err(IoReturn::Underrun));
    let back = buffer.to_vec(0, 3 * 4096).expect("read");
    assert_eq!(back[..5000], from_device[..], "the device's bytes came back");
    assert_eq!(back[5000..], original[5000..], "bytes the device did not write are the buffer's own");
    let after = accounting.stats();
    assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 5000, "exactly what the device moved");
    assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
    assert_eq!(accounting.misuse_log().len(), log_before, "{:?}", accounting.misuse_log());
}
