//! Host tests of the frame allocator: a model (a set of allocated frames) checked
//! against random allocate/free sequences.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const MIB: u64 = 1 << 20;

fn address(value: u64) -> PhysAddr {
    PhysAddr::new(value)
}

fn usable_frames(usable: &[(PhysAddr, PhysAddr)]) -> BTreeSet<u64> {
    let mut frames = BTreeSet::new();
    for &(start, end) in usable {
        let first = start.as_u64().div_ceil(FRAME_SIZE);
        frames.extend(first..end.as_u64() / FRAME_SIZE);
    }
    frames
}

fn build(usable: &[(PhysAddr, PhysAddr)]) -> (Vec<u64>, usize) {
    (vec![0; FrameAllocator::storage_words(usable)], usable_frames(usable).len())
}

fn run_ok(free: &BTreeSet<u64>, start: u64, count: u64, c: &Constraints) -> bool {
    let limit = c.below.map_or(u64::MAX, |a| a.as_u64());
    let boundary_ok =
        c.boundary == 0 || (start * FRAME_SIZE) / c.boundary == ((start + count) * FRAME_SIZE - 1) / c.boundary;
    (start * FRAME_SIZE).is_multiple_of(c.alignment.max(FRAME_SIZE))
        && (start + count) * FRAME_SIZE <= limit
        && boundary_ok
        && (start..start + count).all(|f| free.contains(&f))
}

#[test]
fn qemu_like_layout_has_three_zones_and_prefers_high_memory() {
    let usable = [
        (address(0x1000), address(0x9f000)),
        (address(MIB), address(3 * 1024 * MIB)),
        (address(4 * 1024 * MIB), address(4 * 1024 * MIB + 64 * MIB)),
    ];
    let (mut storage, total) = build(&usable);
    let mut allocator = FrameAllocator::new(&usable, &mut storage).unwrap();
    let kinds: Vec<_> = allocator.stats().map(|s| s.kind).collect();
    assert_eq!(kinds, ZoneKind::ALL);
    assert_eq!(allocator.free_frames(), total);
    let frame = allocator.allocate(None).unwrap();
    assert!(frame.start_address().as_u64() >= 1 << 32, "unconstrained frames come from Normal");
    let low = allocator.allocate(Some(address(16 * MIB))).unwrap();
    assert!(low.start_address().as_u64() < 16 * MIB);
    assert_eq!(allocator.free(frame), Ok(()));
    assert_eq!(allocator.free(frame), Err(MemoryError::NotAllocated), "double free is caught");
    assert_eq!(allocator.free(frame_at(0)), Err(MemoryError::NotUsable), "page 0 was never usable");
    assert_eq!(allocator.free(frame_at(0xa0)), Err(MemoryError::NotUsable), "a hole is not usable");
    allocator.free(low).unwrap();
    assert_eq!(allocator.free_frames(), total);
}

#[test]
fn contiguous_runs_honour_boundary_alignment_and_limit() {
    let usable = [(address(MIB), address(64 * MIB))];
    let (mut storage, _) = build(&usable);
    let mut allocator = FrameAllocator::new(&usable, &mut storage).unwrap();
    // Make the first 64 KiB window unusable for a 16-frame run by taking one frame in it.
    allocator.reserve(frame_at(MIB / FRAME_SIZE + 3)).unwrap();
    // Below 16 MiB, so the run must come from the DMA zone (else Dma32 is tried first).
    let constraints = Constraints { below: Some(address(16 * MIB)), alignment: FRAME_SIZE, boundary: 64 * 1024 };
    let run = allocator.allocate_contiguous(16, constraints).unwrap();
    let start = run.start_address().as_u64();
    assert_eq!(start / (64 * 1024), (start + 16 * FRAME_SIZE - 1) / (64 * 1024));
    assert_eq!(start, MIB + 64 * 1024, "the first window that fits");
    let aligned =
        allocator.allocate_contiguous(3, Constraints { below: None, alignment: 2 * MIB, boundary: 0 }).unwrap();
    assert_eq!(aligned.start_address().as_u64() % (2 * MIB), 0);
    assert_eq!(
        allocator.allocate_contiguous(32, Constraints { boundary: 64 * 1024, ..Constraints::NONE }),
        Err(MemoryError::BadRequest),
        "a run larger than its boundary can never fit"
    );
    assert_eq!(allocator.allocate_contiguous(0, Constraints::NONE), Err(MemoryError::BadRequest));
    assert_eq!(allocator.allocate_contiguous(1, Constraints::below(address(MIB))), Err(MemoryError::NoContiguousRun));
}

#[test]
fn exhaustion_is_an_error_not_a_panic() {
    let usable = [(address(0x1000), address(0x5000))];
    let (mut storage, _) = build(&usable);
    let mut allocator = FrameAllocator::new(&usable, &mut storage).unwrap();
    for _ in 0..4 {
        allocator.allocate(None).unwrap();
    }
    assert_eq!(allocator.allocate(None), Err(MemoryError::OutOfMemory));
    assert_eq!(allocator.allocate_contiguous(1, Constraints::NONE), Err(MemoryError::NoContiguousRun));
}

#[test]
fn a_run_with_one_free_frame_in_it_is_not_freed_at_all() {
    let usable = [(address(0x10_0000), address(0x20_0000))];
    let (mut storage, total) = build(&usable);
    let mut allocator = FrameAllocator::new(&usable, &mut storage).unwrap();
    let first = allocator.allocate_contiguous(8, Constraints::NONE).unwrap();
    allocator.free(first + 7).unwrap();
    assert_eq!(allocator.free_contiguous(first, 8), Err(MemoryError::NotAllocated));
    assert_eq!(allocator.free_frames(), total - 7, "nothing was freed");
    assert!(!allocator.is_free(first), "the run's first frame is still allocated");
    allocator.free_contiguous(first, 7).unwrap();
    assert_eq!(allocator.free_frames(), total);
}

#[derive(Clone, Debug)]
enum Operation {
    Single { below: Option<u64> },
    Run { count: u64, alignment_shift: u32, boundary_shift: Option<u32>, below: Option<u64> },
    Free { pick: usize },
}

fn operation() -> impl Strategy<Value = Operation> {
    let below = prop::option::of(prop_oneof![Just(16 * MIB), Just(1u64 << 32), 1u64..(6u64 << 30)]);
    prop_oneof![
        below.clone().prop_map(|below| Operation::Single { below }),
        (1u64..40, 0u32..6, prop::option::of(4u32..9), below).prop_map(
            |(count, alignment_shift, boundary_shift, below)| Operation::Run {
                count,
                alignment_shift,
                boundary_shift,
                below
            }
        ),
        any::<usize>().prop_map(|pick| Operation::Free { pick }),
    ]
}

fn layout() -> impl Strategy<Value = Vec<(PhysAddr, PhysAddr)>> {
    // Ranges scattered over 6 GiB (so all three zones appear), each at most 1 MiB.
    prop::collection::vec((0u64..(6u64 << 30), 1u64..(MIB)), 1..8).prop_map(|ranges| {
        ranges.into_iter().map(|(start, length)| (address(start), address(start + length))).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_sequences_keep_every_promise(usable in layout(), operations in prop::collection::vec(operation(), 1..200)) {
        let (mut storage, total) = build(&usable);
        let usable_set = usable_frames(&usable);
        let mut allocator = FrameAllocator::new(&usable, &mut storage).unwrap();
        prop_assert_eq!(allocator.free_frames(), total);
        let mut free: BTreeSet<u64> = usable_set.clone();
        let mut held: Vec<(u64, u64)> = Vec::new();
        for operation in operations {
            match operation {
                Operation::Single { below } => {
                    let limit = below.map(address);
                    match allocator.allocate(limit) {
                        Ok(frame) => {
                            let number = frame.start_address().as_u64() / FRAME_SIZE;
                            prop_assert!(free.remove(&number), "frame handed out twice or never usable");
                            prop_assert!(below.is_none_or(|b| (number + 1) * FRAME_SIZE <= b));
                            held.push((number, 1));
                        }
                        Err(error) => {
                            prop_assert_eq!(error, MemoryError::OutOfMemory);
                            let limit = below.unwrap_or(u64::MAX);
                            prop_assert!(free.iter().all(|&f| (f + 1) * FRAME_SIZE > limit), "a frame was free");
                        }
                    }
                }
                Operation::Run { count, alignment_shift, boundary_shift, below } => {
                    let constraints = Constraints {
                        below: below.map(address),
                        alignment: FRAME_SIZE << alignment_shift,
                        boundary: boundary_shift.map_or(0, |s| FRAME_SIZE << s),
                    };
                    match allocator.allocate_contiguous(count as usize, constraints) {
                        Ok(first) => {
                            let start = first.start_address().as_u64() / FRAME_SIZE;
                            prop_assert!(run_ok(&free, start, count, &constraints), "bad run at {start:#x}");
                            for f in start..start + count { free.remove(&f); }
                            held.push((start, count));
                        }
                        Err(MemoryError::BadRequest) => {
                            prop_assert!(constraints.boundary != 0 && constraints.boundary < count * FRAME_SIZE);
                        }
                        Err(error) => {
                            prop_assert_eq!(error, MemoryError::NoContiguousRun);
                            prop_assert!(!free.iter().any(|&s| run_ok(&free, s, count, &constraints)), "a run existed");
                        }
                    }
                }
                Operation::Free { pick } => {
                    if !held.is_empty() {
                        let (start, count) = held.swap_remove(pick % held.len());
                        prop_assert_eq!(allocator.free_contiguous(frame_at(start), count as usize), Ok(()));
                        free.extend(start..start + count);
                        prop_assert_eq!(allocator.free(frame_at(start)), Err(MemoryError::NotAllocated));
                    }
                }
            }
            prop_assert_eq!(allocator.free_frames(), free.len());
        }
        for (start, count) in held.drain(..) {
            allocator.free_contiguous(frame_at(start), count as usize).unwrap();
        }
        prop_assert_eq!(allocator.free_frames(), total, "free count restored");
        let per_zone: usize = allocator.stats().map(|s| s.total).sum();
        prop_assert_eq!(per_zone, usable_set.len());
    }
}
