//! Test kernel: frame allocation (below and above 4 GiB, contiguous with
//! constraints), the heap, and paging.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use dmakit::memory::{Constraints, FRAME_SIZE, MemoryError, paging, physical};
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

dmakit::test_kernel!(
    frames_below_4_gib_can_be_written,
    frames_above_4_gib_can_be_written,
    contiguous_runs_never_cross_a_64_kib_boundary,
    contiguous_runs_below_16_mib_are_aligned,
    impossible_requests_fail_cleanly,
    double_free_is_refused,
    heap_holds_a_large_vector,
    heap_holds_many_small_boxes,
    map_translate_unmap_round_trip,
    low_memory_is_unmapped_after_boot,
);

const FOUR_GIB: u64 = 1 << 32;

/// A small deterministic generator: tests must be reproducible.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn write_and_check(frame: PhysFrame<Size4KiB>, seed: u64) {
    let words = physical::to_virtual(frame.start_address()).as_mut_ptr::<u64>();
    for index in 0..512 {
        // SAFETY: the frame was just allocated to this test and is mapped.
        unsafe { words.add(index).write_volatile(seed ^ index as u64) };
    }
    for index in 0..512 {
        // SAFETY: as above.
        let value = unsafe { words.add(index).read_volatile() };
        assert_eq!(value, seed ^ index as u64);
    }
}

fn frames_below_4_gib_can_be_written() {
    let frame = physical::allocate_frame_below(PhysAddr::new(FOUR_GIB)).expect("a low frame");
    assert!(frame.start_address().as_u64() + FRAME_SIZE <= FOUR_GIB);
    write_and_check(frame, 0x1234_5678);
    physical::free_frame(frame).expect("free");
}

fn frames_above_4_gib_can_be_written() {
    let frame = physical::allocate_frame().expect("a frame");
    assert!(frame.start_address().as_u64() >= FOUR_GIB, "unconstrained frames come from the Normal zone");
    write_and_check(frame, 0xfeed_beef);
    physical::free_frame(frame).expect("free");
}

fn contiguous_runs_never_cross_a_64_kib_boundary() {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let constraints = Constraints { below: Some(PhysAddr::new(FOUR_GIB)), alignment: FRAME_SIZE, boundary: 64 * 1024 };
    let mut held = Vec::new();
    for _ in 0..200 {
        let count = 1 + (random.next() % 16) as usize;
        let first = physical::allocate_contiguous(count, constraints).expect("a run");
        let start = first.start_address().as_u64();
        let last = start + count as u64 * FRAME_SIZE - 1;
        assert_eq!(start >> 16, last >> 16, "run {start:#x}..={last:#x} crosses 64 KiB");
        assert!(last < FOUR_GIB);
        held.push((first, count));
    }
    for (first, count) in held {
        physical::free_contiguous(first, count).expect("free");
    }
}

fn contiguous_runs_below_16_mib_are_aligned() {
    let before = physical::zone_stats();
    let constraints = Constraints { below: Some(PhysAddr::new(16 << 20)), alignment: 64 * 1024, boundary: 0 };
    let first = physical::allocate_contiguous(8, constraints).expect("a run below 16 MiB");
    let start = first.start_address().as_u64();
    assert_eq!(start % (64 * 1024), 0);
    assert!(start + 8 * FRAME_SIZE <= 16 << 20);
    physical::free_contiguous(first, 8).expect("free");
    assert_eq!(physical::zone_stats(), before, "free counts restored");
}

fn impossible_requests_fail_cleanly() {
    let huge = physical::allocate_contiguous(1 << 30, Constraints::NONE);
    assert_eq!(huge, Err(MemoryError::NoContiguousRun));
    let bad = Constraints { below: None, alignment: 3 * FRAME_SIZE, boundary: 0 };
    assert_eq!(physical::allocate_contiguous(1, bad), Err(MemoryError::BadRequest));
    assert_eq!(physical::allocate_frame_below(PhysAddr::new(FRAME_SIZE)), Err(MemoryError::OutOfMemory));
}

fn double_free_is_refused() {
    let frame = physical::allocate_frame().expect("a frame");
    physical::free_frame(frame).expect("first free");
    assert_eq!(physical::free_frame(frame), Err(MemoryError::NotAllocated));
    let page_zero = PhysFrame::containing_address(PhysAddr::new(0));
    assert_eq!(physical::free_frame(page_zero), Err(MemoryError::NotUsable));
}

fn heap_holds_a_large_vector() {
    let mut large: Vec<u64> = Vec::with_capacity(512 * 1024);
    large.extend(0..512 * 1024);
    let sum: u64 = large.iter().sum();
    assert_eq!(sum, (512 * 1024 - 1) * (512 * 1024) / 2);
}

fn heap_holds_many_small_boxes() {
    let (used_before, _) = dmakit::memory::heap::usage();
    let boxes: Vec<Box<u32>> = (0..10_000).map(Box::new).collect();
    assert!(boxes.iter().enumerate().all(|(index, value)| **value == index as u32));
    drop(boxes);
    assert_eq!(dmakit::memory::heap::usage().0, used_before, "everything was freed");
}

fn map_translate_unmap_round_trip() {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0xffff_d000_0000_0000));
    let frame = physical::allocate_frame().expect("a frame");
    // SAFETY: a fresh frame at an address nothing else uses.
    unsafe { paging::map(page, frame, PageTableFlags::WRITABLE).expect("map") };
    assert_eq!(paging::translate(page.start_address() + 0x123), Some(frame.start_address() + 0x123));
    let pointer = page.start_address().as_mut_ptr::<u64>();
    // SAFETY: just mapped, writable, ours.
    unsafe { pointer.write_volatile(0x0dda_0dda) };
    // The same frame read through the physical map sees the write.
    // SAFETY: the frame is mapped there too, and still ours.
    let alias = unsafe { physical::to_virtual(frame.start_address()).as_ptr::<u64>().read_volatile() };
    assert_eq!(alias, 0x0dda_0dda);
    // SAFETY: as above; mapping it twice must fail cleanly.
    let again = unsafe { paging::map(page, frame, PageTableFlags::WRITABLE) };
    assert_eq!(again, Err(MemoryError::AlreadyMapped));
    assert_eq!(paging::unmap(page), Ok(frame));
    assert_eq!(paging::translate(page.start_address()), None);
    assert_eq!(paging::unmap(page), Err(MemoryError::NotMapped));
    physical::free_frame(frame).expect("free");
}

fn low_memory_is_unmapped_after_boot() {
    assert_eq!(paging::translate(VirtAddr::new(0)), None, "null is unmapped");
    assert_eq!(paging::translate(VirtAddr::new(0x10_0000)), None, "the boot identity map is gone");
}
