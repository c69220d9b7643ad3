//! virtio-blk against generated hostile devices (proptest, 100,000 cases or
//! more, both transports): each case is a device with configuration edges
//! (queue size, `seg_max`, capacity, notify offset, `FEATURES_OK`, a
//! configuration or a reset that never settles) and a short script of
//! requests and lies (used ids and lengths it makes up, copies, elements for
//! chains never made available, a used index that jumps, garbage status
//! bytes, chains dropped unrun). Whatever the device says: no panic, no hang,
//! no write outside the memory prepared for it (the fake is fenced in), each
//! request finishes once with its buffer (unless the device never confirmed
//! its reset: then the buffer stays the device's), never while the device
//! holds it, a success only for a chain the device ran with status OK and a
//! used length no longer than its writable bytes, every failure a typed
//! cause, and no misuse.

use super::*;
use crate::virtio::fake::{HeldWork, RunChain, StatusByte};
use crate::virtio::hostile::{
    Edges, IdLie, LengthLie, ResetLie, check_left_behind, check_refused_bring_up, edges, id_lie, jump, length_lie,
    run_hostile, typed,
};

/// Sectors of the cases' disk image: small, so that a case stays cheap.
const IMAGE_SECTORS: u64 = 64;
/// Queue sizes a case's device usually offers: one slot, two, eight, 32.
const USUAL_QUEUE_SIZES: &[u16] = &[8, 16, 64, 256];

/// virtio-blk's own configuration edges.
#[derive(Clone, Copy, Debug)]
struct DiskEdges {
    seg_max: u32,
    /// `None`: the image's.
    capacity: Option<u64>,
}

/// Where a request starts, from the capacity the disk says it has.
#[derive(Clone, Copy, Debug)]
enum Place {
    Start,
    /// So many sectors before the end (a request may run past it).
    NearEnd(u64),
    Anywhere(u64),
}

/// One step of a case's script.
#[derive(Clone, Copy, Debug)]
enum Step {
    Submit {
        operation: BlockOperation,
        sectors: u64,
        place: Place,
    },
    /// The device ends one chain it holds (`work`), then publishes `copies`
    /// elements naming `id` with `length`.
    Complete {
        pick: usize,
        work: HeldWork,
        id: IdLie,
        length: LengthLie,
        copies: usize,
    },
    /// An element for whatever `id` names, no chain run for it.
    Spurious {
        id: IdLie,
        length: u32,
    },
    /// The used index moves past slots the device never wrote.
    Jump(u16),
    /// The block layer looks at the device.
    Poll,
}

/// What the device said about a request's chain in the first element
/// naming it.
#[derive(Clone, Copy, Debug)]
struct Told {
    /// Whether it ran and left OK in the status byte.
    status_ok: bool,
    length: u32,
    writable: u64,
}

/// A request submitted, and what it must come back as.
struct Tracked {
    handle: RequestHandle,
    operation: BlockOperation,
    lba: u64,
    count: u64,
    /// Where its blocks lie, as the device must see them (not bounced).
    blocks: (u64, u64),
    told: Option<Told>,
}

fn disk_edges() -> impl Strategy<Value = DiskEdges> {
    let seg_max = prop_oneof![8 => Just(16u32), 1 => proptest::sample::select(&[0u32, 1, 2, u32::MAX][..])];
    const CAPACITIES: &[u64] = &[0, 1, IMAGE_SECTORS + 1, 1 << 32, u64::MAX / 512, u64::MAX];
    let capacity = prop_oneof![8 => Just(None), 1 => proptest::sample::select(CAPACITIES).prop_map(Some)];
    (seg_max, capacity).prop_map(|(seg_max, capacity)| DiskEdges { seg_max, capacity })
}

fn step() -> impl Strategy<Value = Step> {
    let operation = prop_oneof![Just(BlockOperation::Read), Just(BlockOperation::Write)];
    let place =
        prop_oneof![Just(Place::Start), (0u64..4).prop_map(Place::NearEnd), any::<u64>().prop_map(Place::Anywhere)];
    let status = prop_oneof![
        8 => Just(StatusByte::AsRun),
        1 => Just(StatusByte::Unwritten),
        2 => any::<u8>().prop_map(StatusByte::Written),
    ];
    let work = prop_oneof![8 => status.prop_map(HeldWork::Run), 1 => Just(HeldWork::Skip)];
    let id = prop_oneof![6 => Just(IdLie::Own), 1 => id_lie()];
    prop_oneof![
        4 => (operation, 1u64..=16, place).prop_map(|(operation, sectors, place)| Step::Submit { operation, sectors, place }),
        4 => (any::<usize>(), work, id, length_lie(), prop_oneof![6 => Just(1usize), 1 => Just(2)])
            .prop_map(|(pick, work, id, length, copies)| Step::Complete { pick, work, id, length, copies }),
        1 => (id_lie(), any::<u32>()).prop_map(|(id, length)| Step::Spurious { id, length }),
        1 => jump().prop_map(Step::Jump),
        1 => Just(Step::Poll),
    ]
}

/// The fake of one case.
fn hostile_fake(platform: &'static SimulatedPlatform, edges: &Edges, disk: &DiskEdges) -> Arc<FakeVirtio> {
    let mut image = vec![0; (IMAGE_SECTORS * 512) as usize];
    pattern::fill(0, b'V', &mut image);
    let mut fake = FakeVirtio::new(platform, image, Medium::Writable, edges.interface);
    let device = Arc::get_mut(&mut fake).expect("not shared yet");
    edges.apply(device);
    device.seg_max = disk.seg_max;
    device.capacity = disk.capacity;
    fake.set_answer(Answer::Held);
    fake
}

#[test]
fn hostile_devices_never_break_the_drivers_promises() {
    let strategy = (edges(USUAL_QUEUE_SIZES), disk_edges(), prop::collection::vec(step(), 1..10));
    run_hostile(strategy, |platform, (edges, disk_edges, steps)| {
        let free_before = platform.free_frames_count();
        let fake = hostile_fake(platform, &edges, &disk_edges);
        let abandoned = match start(&fake, platforms(platform), &WAITER) {
            Ok(disk) => run_script(platform, &fake, disk, &steps)?,
            Err(failure) => check_refused_bring_up(&fake, failure, &edges)?,
        };
        drop(fake);
        check_left_behind(platform, free_before, abandoned, edges.reset == ResetLie::Confirms)
    });
}

/// Runs `steps` against a started disk, then waits for every request and
/// checks each; returns how many buffers stayed the device's.
fn run_script(
    platform: &'static SimulatedPlatform,
    fake: &Arc<FakeVirtio>,
    disk: Disk,
    steps: &[Step],
) -> Result<usize, TestCaseError> {
    let layout = disk.hardware().slot_layout();
    let mut fence = vec![disk.hardware().request_area().expect("running")];
    fence.push(fake.ring(0).expect("a queue").parts()[2]);
    fake.fence_writes(Some(fence.clone()));
    let mut tracked: Vec<Tracked> = Vec::new();
    for step in steps {
        match *step {
            Step::Submit { operation, sectors, place } => {
                let capacity = disk.block_count();
                let lba = match place {
                    Place::Start => 0,
                    Place::NearEnd(back) => capacity.saturating_sub(sectors + back),
                    Place::Anywhere(at) => at % capacity.max(1),
                };
                let bytes = sectors * 512;
                let mut memory = buffer(platform, bytes, operation.memory_direction());
                if operation == BlockOperation::Write {
                    // The image's own bytes: the image never changes, so any
                    // read that succeeds must bring the pattern.
                    memory.write_bytes(0, &sector_pattern(lba, sectors)).unwrap();
                }
                let blocks = (memory.descriptor().physical_segment(0).unwrap().0.as_u64(), bytes);
                match disk.submit(BlockRequest::new(operation, lba, sectors, memory, 0)) {
                    Ok(handle) => {
                        if operation == BlockOperation::Read {
                            fence.push(blocks);
                            fake.fence_writes(Some(fence.clone()));
                        }
                        tracked.push(Tracked { handle, operation, lba, count: sectors, blocks, told: None });
                    }
                    Err(rejected) => prop_assert!(typed(rejected.failure.cause()), "{:?}", rejected.failure),
                }
            }
            Step::Complete { pick, work, id, length, copies } => {
                let Some(chain) = fake.end_held(pick, work) else { continue };
                let RunChain { head, written, writable, first_data } = chain;
                let length = length.length(written, writable);
                let id = id.id(head, layout.descriptors_per_slot, layout.depth);
                if id == u32::from(head) {
                    let request = tracked.iter_mut().find(|request| contains(request.blocks, first_data));
                    let request = request.expect("every chain carries a request's blocks");
                    let status_ok = match work {
                        HeldWork::Run(StatusByte::AsRun) => request.lba + request.count <= IMAGE_SECTORS,
                        HeldWork::Run(StatusByte::Written(byte)) => byte == STATUS_OK,
                        HeldWork::Run(StatusByte::Unwritten) | HeldWork::Skip => false,
                    };
                    request.told = Some(Told { status_ok, length, writable });
                }
                fake.with_queue(0, |queue| queue.publish(&vec![(id, length); copies], 0));
            }
            Step::Spurious { id, length } => {
                let id = id.id(0, layout.descriptors_per_slot, layout.depth);
                fake.with_queue(0, |queue| queue.publish(&[(id, length)], 0));
            }
            Step::Jump(skipped) => {
                fake.with_queue(0, |queue| queue.publish(&[], skipped));
                // An index moved back hides elements the driver has not
                // read yet, and a later one may name the same chain with
                // another length: what a request was told is known no more.
                tracked
                    .iter_mut()
                    .filter(|request| !request.handle.is_finished())
                    .for_each(|request| request.told = None);
            }
            Step::Poll => disk.run_work_loop(),
        }
    }
    let mut abandoned = 0;
    for request in tracked {
        abandoned += check_finished(fake, &disk, request)?;
    }
    drop(disk);
    // A device that never confirmed its reset wakes up and runs what it
    // kept: only into memory never freed, inside its fence.
    fake.finish_held(FinishOrder::AsTaken);
    Ok(abandoned)
}

/// Waits for `request` and checks what came back; returns 1 if its buffer
/// stayed the device's.
fn check_finished(fake: &FakeVirtio, disk: &Disk, request: Tracked) -> Result<usize, TestCaseError> {
    let Tracked { handle, operation, lba, count, blocks, told } = request;
    let Finished { buffer, result } = disk.wait(handle);
    if let Err(failure) = result {
        prop_assert!(typed(failure.cause()), "{:?} of {} at {}: untyped {:?}", operation, count, lba, failure);
    }
    let Some(memory) = buffer else {
        prop_assert_ne!(fake.device_status(), 0, "a buffer stays the device's only if it never confirmed a reset");
        return Ok(1);
    };
    let held = fake.held_data();
    prop_assert!(!held.iter().any(|&data| overlap(data, blocks)), "buffer back while the device holds it: {held:?}");
    if result.is_ok() {
        if let Some(told) = told {
            // The first element naming the chain decides how the request
            // ends: a success needs it to say a length within the chain, and
            // the chain to have run with status OK.
            let believable = told.status_ok && u64::from(told.length) <= told.writable;
            prop_assert!(believable, "a success the device's first element for it did not give: {told:?}");
        }
        if operation == BlockOperation::Read {
            let bytes = memory.to_vec(0, (count * 512) as usize).unwrap();
            prop_assert!(
                bytes == sector_pattern(lba, count),
                "a read of {} at {} succeeded with wrong bytes",
                count,
                lba
            );
        }
    }
    Ok(0)
}

/// The image's bytes for `count` sectors from `lba`.
fn sector_pattern(lba: u64, count: u64) -> Vec<u8> {
    let mut bytes = vec![0; (count * 512) as usize];
    pattern::fill(lba, b'V', &mut bytes);
    bytes
}

fn contains((start, bytes): (u64, u64), address: u64) -> bool {
    address >= start && address < start + bytes
}

fn overlap((a, a_bytes): (u64, u64), (b, b_bytes): (u64, u64)) -> bool {
    a < b + b_bytes && b < a + a_bytes
}
